"""``attnlab`` console entry: ``attnlab train ...`` and ``attnlab ui``."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.parse
from pathlib import Path

from attnlab.errors import ConfigError, report_config_errors

USAGE = """usage: attnlab <command> [args]

commands:
  train [overrides]   train and test one config (Hydra app: -m, --cfg job, key=value ...)
  report --experiment NAME [--sweep STUDY]
                      compare MLflow runs: varying params, metrics, train-test gap
  ui [--port N]       open the MLflow UI on this directory's runs (sqlite:///mlflow.db)
  ui --server --backend-store-uri URI [--artifacts-destination DIR] [mlflow server options]
                      start a team tracking server that also serves the artifacts
"""


DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")  # MLflow's SQL stores
BACKEND_STORES = (
    "a reachable database (sqlite:///FILE, postgresql+psycopg://USER@HOST:PORT/DB, "
    "mysql://..., mssql://...)"
)


def check_backend_store(uri: str) -> None:
    """Connect once to a database store: MLflow would retry a bad one for minutes instead."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme in ("http", "https"):
        server = f"{uri} is a tracking server: browse to it"
        raise ConfigError("--backend-store-uri", uri, f"{BACKEND_STORES}; {server}")
    if scheme.partition("+")[0] not in DATABASE_SCHEMES:
        return  # a folder or a plugin's store: MLflow checks those itself
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    shown = uri
    try:
        url = sqlalchemy.engine.make_url(uri)
        shown = url.render_as_string(hide_password=True)
        timeout = {"connect_timeout": 10} if scheme.startswith(("postgresql", "mysql")) else {}
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=timeout)
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except Exception as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        reason = reason.removeprefix("connection failed: ")  # psycopg's own prefix
        raise ConfigError(
            "--backend-store-uri", shown, f"{BACKEND_STORES}; connecting failed: {reason}"
        ) from None


def ui(args: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="attnlab ui",
        allow_abbrev=False,
        description="Start the MLflow UI, or with --server a team tracking server. "
        "Options not listed here (--workers, --allowed-hosts, ...) go to mlflow as they are.",
    )
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
    )
    parser.add_argument(
        "--server", action="store_true", help="run `mlflow server` and serve the artifacts"
    )
    parser.add_argument(
        "--artifacts-destination",
        help="with --server: where uploaded artifacts are stored (default ./mlartifacts)",
    )
    opts, passthrough = parser.parse_known_args(args)
    if opts.artifacts_destination and not opts.server:
        parser.error("--artifacts-destination needs --server")
    with report_config_errors():
        check_backend_store(opts.backend_store_uri)
    command = [
        sys.executable, "-m", "mlflow", "server" if opts.server else "ui",
        "--backend-store-uri", opts.backend_store_uri,
        "--host", opts.host, "--port", str(opts.port),
    ]  # fmt: skip
    if opts.server:
        destination = opts.artifacts_destination or "mlartifacts"
        if len(urllib.parse.urlparse(destination).scheme) < 2:  # a folder (or C:\...)
            destination = str(Path(destination).resolve())
        command += ["--serve-artifacts", "--artifacts-destination", destination]
    # exec: mlflow takes this process's place, so a supervisor's SIGTERM reaches it directly
    os.execv(sys.executable, command + passthrough)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        raise SystemExit(0 if argv else 2)
    command, rest = argv[0], argv[1:]
    if command == "train":
        from attnlab.train import main as train_main

        sys.argv = [f"{os.path.basename(sys.argv[0])} train", *rest]
        train_main(rest)
    elif command == "report":
        from attnlab.report import main as report_main

        raise SystemExit(report_main(rest))
    elif command == "ui":
        ui(rest)
    else:
        print(
            f"attnlab: unknown command {command!r}; one of train, report, ui\n\n{USAGE}",
            file=sys.stderr,
        )
        raise SystemExit(2)


if __name__ == "__main__":
    main()
