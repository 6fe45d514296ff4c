"""``attnlab`` console entry: ``attnlab train ...`` and ``attnlab ui``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

USAGE = """usage: attnlab <command> [args]

commands:
  train [overrides]   train and test one config (Hydra app: -m, --cfg job, key=value ...)
  report --experiment NAME [--sweep STUDY]
                      compare MLflow runs: varying params, metrics, train-test gap
  ui [--port N]       open the MLflow UI on this directory's runs (sqlite:///mlflow.db)
"""


def ui(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="attnlab ui", description="Start the MLflow UI.")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--backend-store-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
    )
    opts = parser.parse_args(args)
    command = [
        sys.executable, "-m", "mlflow", "ui",
        "--backend-store-uri", opts.backend_store_uri,
        "--host", opts.host, "--port", str(opts.port),
    ]  # fmt: skip
    return subprocess.call(command)


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
        raise SystemExit(ui(rest))
    else:
        print(
            f"attnlab: unknown command {command!r}; one of train, report, ui\n\n{USAGE}",
            file=sys.stderr,
        )
        raise SystemExit(2)


if __name__ == "__main__":
    main()
