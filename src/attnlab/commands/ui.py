"""``attnlab ui``: the MLflow UI at the runs table of the latest (or named) experiment, with
``--server`` a team tracking server that also serves the artifacts, or with ``--optuna`` the
Optuna dashboard on the sweep storage.

The addresses and the saved view of the runs table come from attnlab.tracking.views.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.parse
from pathlib import Path

from attnlab.cli import command_parser
from attnlab.core.errors import ConfigError, report_config_errors

# Read by MLflow's basic-auth app: the first admin's password, and the key of its CSRF tokens.
AUTH_PASSWORD_ENV, SECRET_KEY_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"


def check_backend_store(uri: str) -> None:
    """The UI and server need a store they own, not another tracking server."""
    from attnlab.tracking.store import BACKEND_STORES, check_tracking_store

    if urllib.parse.urlparse(uri).scheme.lower() in ("http", "https"):
        server = f"{uri} is a tracking server: browse to it"
        raise ConfigError("--backend-store-uri", uri, f"{BACKEND_STORES}; {server}")
    check_database_scheme(uri)
    check_tracking_store("--backend-store-uri", uri)


def local_base(host: str, port: int) -> str:
    """The address a browser on this machine uses for a server bound to ``host``."""
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def runs_address(store: str, base: str, name: str | None) -> str:
    """The runs table of experiment ``name``, or of the one with the latest run."""
    from mlflow import MlflowClient

    from attnlab.tracking.views import VIEW_TAG, latest_experiment, runs_url

    new_sqlite = store.startswith("sqlite:///") and not Path(store[len("sqlite:///") :]).exists()
    client = None if new_sqlite else MlflowClient(store)
    if name is None:
        experiment = latest_experiment(client) if client else None
    else:
        experiment = client.get_experiment_by_name(name) if client else None
        if experiment is None:
            names = [e.name for e in client.search_experiments()] if client else []
            allowed = f"an experiment of {store}: {', '.join(names) or 'none yet, run first'}"
            raise ConfigError("--experiment", name, allowed)
    if experiment is None:
        return runs_url(base, None)
    return runs_url(base, experiment.experiment_id, view=VIEW_TAG in experiment.tags)


def study_address(storage: str, base: str, name: str | None) -> str:
    """optuna-dashboard's page of study ``name``, or of the newest study."""
    ids = study_ids(storage)
    if name is not None and name not in ids:
        raise ConfigError("--study", name, f"a study of {storage}: {', '.join(ids) or 'none'}")
    study = ids.get(name) if name else max(ids.values(), default=None)
    return f"{base}/dashboard/studies/{study}" if study is not None else f"{base}/dashboard"


def check_sweep_storage(storage: str) -> None:
    """A sweep storage the dashboard can open: an existing SQLite file or a reachable database."""
    from attnlab.tracking.store import check_tracking_store

    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        allowed = "an Optuna storage with a sweep in it (run `attnlab train -m sweep=...` here)"
        raise ConfigError("--storage", storage, allowed + ", or another --storage URL")
    check_tracking_store("--storage", storage)


def open_later(url: str, health: str) -> None:
    """Open ``url`` in a browser once the server answers; the helper outlives this process."""
    import subprocess

    helper = "import sys; from attnlab.commands.ui import open_when_up; open_when_up(*sys.argv[1:])"
    subprocess.Popen(
        [sys.executable, "-c", helper, url, health],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def check_database_scheme(uri: str) -> None:
    """A database URL, not a folder: MLflow 3 refuses folder stores with a traceback."""
    from attnlab.tracking.store import BACKEND_STORES, DATABASE_SCHEMES

    if urllib.parse.urlparse(uri).scheme.lower().partition("+")[0] not in DATABASE_SCHEMES:
        raise ConfigError("--backend-store-uri", uri, BACKEND_STORES)


def main(argv: list[str]) -> int:
    """Print the address, open a browser once the server answers, become the server."""
    parser = command_parser(
        "attnlab ui",
        __doc__.split("\n\n")[0] + " Options not listed here (--workers, --allowed-hosts, ...) "
        "go to the server as they are.",
        usage="attnlab ui [options] (attnlab ui -h lists them)",  # a mistake stays a few lines
        allow_abbrev=False,
    )
    parser.add_argument("--port", type=int, help="default 5000 (MLflow), 8080 (--optuna)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
    )
    parser.add_argument("--experiment", help="open this experiment (default: the latest run's)")
    parser.add_argument(
        "--server", action="store_true", help="run `mlflow server` and serve the artifacts"
    )
    parser.add_argument(
        "--artifacts-destination",
        help="with --server: where uploaded artifacts are stored (default ./mlartifacts)",
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help="with --server: let in only the team (MLflow's basic-auth app; users in "
        "./basic_auth.db, the first admin's password from MLFLOW_AUTH_ADMIN_PASSWORD)",
    )
    parser.add_argument(
        "--optuna", action="store_true", help="optuna-dashboard on the sweep storage instead"
    )
    parser.add_argument("--storage", default="sqlite:///optuna.db", help="with --optuna")
    parser.add_argument("--study", help="with --optuna: open this study (default: the newest)")
    parser.add_argument("--no-browser", action="store_true", help="only print the address")
    parser.add_argument("--print-url", action="store_true", help="print the address and exit")
    opts, passthrough = parser.parse_known_args(argv)
    if opts.artifacts_destination and not opts.server:
        parser.error("--artifacts-destination needs --server")
    if opts.optuna and opts.server:
        parser.error("--optuna and --server: one at a time")
    if opts.auth and not opts.server:
        parser.error("--auth needs --server")
    base = local_base(opts.host, opts.port or (8080 if opts.optuna else 5000))
    with report_config_errors():
        if opts.optuna:
            check_sweep_storage(opts.storage)
            url, health = study_address(opts.storage, base, opts.study), f"{base}/dashboard"
        else:
            check_backend_store(opts.backend_store_uri)
            if opts.auth:
                check_auth_setup()
            url = runs_address(opts.backend_store_uri, base, opts.experiment)
            health = f"{base}/health"
    print(f"{'Optuna dashboard' if opts.optuna else 'MLflow'}: {url}", flush=True)
    if opts.print_url:
        return 0
    if not opts.no_browser and browser_available():
        open_later(url, health)
    command = optuna_command(parser, opts) if opts.optuna else mlflow_command(opts)
    # exec: the server takes this process's place, so a supervisor's SIGTERM reaches it directly
    os.execv(command[0], command + passthrough)


def check_auth_setup() -> None:
    """MLflow's basic-auth app needs Flask-WTF, a first admin password for a new user store
    and a secret key; without them it refuses to start, after the address has been printed."""
    try:
        import flask_wtf  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--auth", True, "Flask-WTF installed: pip install 'attnlab[auth]'"
        ) from None
    if not (Path("basic_auth.db").is_file() or os.environ.get(AUTH_PASSWORD_ENV)):
        allowed = f"{AUTH_PASSWORD_ENV} set: the first admin's password of a new user store"
        raise ConfigError("--auth", True, allowed)
    if not os.environ.get(SECRET_KEY_ENV):
        allowed = f"{SECRET_KEY_ENV} set: a secret the server's workers share (CSRF)"
        raise ConfigError("--auth", True, allowed)


def mlflow_command(opts: argparse.Namespace) -> list[str]:
    command = [
        sys.executable, "-m", "mlflow", "server" if opts.server else "ui",
        "--backend-store-uri", opts.backend_store_uri,
        "--host", opts.host, "--port", str(opts.port or 5000),
    ]  # fmt: skip
    if opts.server:
        destination = opts.artifacts_destination or "mlartifacts"
        if len(urllib.parse.urlparse(destination).scheme) < 2:  # a folder (or C:\...)
            destination = str(Path(destination).resolve())
        command += ["--serve-artifacts", "--artifacts-destination", destination]
    if opts.auth:
        command += ["--app-name", "basic-auth"]
    return command


def optuna_command(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> list[str]:
    import shutil

    here = str(Path(sys.executable).parent)
    program = shutil.which("optuna-dashboard", path=here) or shutil.which("optuna-dashboard")
    if program is None:
        parser.error("optuna-dashboard is not installed: pip install optuna-dashboard")
    return [program, opts.storage, "--host", opts.host, "--port", str(opts.port or 8080)]


def browser_available() -> bool:
    """Whether a graphical browser can open (never a console one in this terminal)."""
    graphical = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    return sys.platform in ("darwin", "win32") or bool(graphical)


def open_when_up(url: str, health: str, timeout: float = 180.0) -> None:
    """Open ``url`` in the browser once ``health`` answers (run detached, beside the server)."""
    import urllib.request
    import webbrowser

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(health, timeout=5):
                webbrowser.open(url)
                return
        except OSError:
            time.sleep(1)


def study_ids(storage: str) -> dict[str, int]:
    """Each study's name -> the id optuna-dashboard addresses it by."""
    import optuna

    store = optuna.storages.get_storage(storage)
    names = [study.study_name for study in store.get_all_studies()]
    return {name: store.get_study_id_from_name(name) for name in names}
