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
  runs [--fix-stale] [--experiment NAME]
                      list runs shown RUNNING; end FAILED those whose process is gone
  ui [--port N]       open the MLflow UI on this directory's runs (sqlite:///mlflow.db)
  ui --server --backend-store-uri URI [--artifacts-destination DIR] [mlflow server options]
                      start a team tracking server that also serves the artifacts
"""


def check_backend_store(uri: str) -> None:
    """The UI and server need a store they own, not another tracking server."""
    from attnlab.tracking import BACKEND_STORES, check_tracking_store

    if urllib.parse.urlparse(uri).scheme.lower() in ("http", "https"):
        server = f"{uri} is a tracking server: browse to it"
        raise ConfigError("--backend-store-uri", uri, f"{BACKEND_STORES}; {server}")
    check_database_scheme(uri)
    check_tracking_store("--backend-store-uri", uri)


def check_database_scheme(uri: str) -> None:
    """A database URL, not a folder: MLflow 3 refuses folder stores with a traceback."""
    from attnlab.tracking import BACKEND_STORES, DATABASE_SCHEMES

    if urllib.parse.urlparse(uri).scheme.lower().partition("+")[0] not in DATABASE_SCHEMES:
        raise ConfigError("--backend-store-uri", uri, BACKEND_STORES)


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
    elif command == "runs":
        from attnlab.runs import main as runs_main

        raise SystemExit(runs_main(rest))
    elif command == "ui":
        ui(rest)
    else:
        print(
            f"attnlab: unknown command {command!r}; one of train, report, runs, ui (attnlab -h)",
            file=sys.stderr,
        )
        raise SystemExit(2)


if __name__ == "__main__":
    main()
