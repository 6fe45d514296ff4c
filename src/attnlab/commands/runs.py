"""``attnlab runs``: the MLflow runs shown RUNNING, whether their process still exists, and
with ``--fix-stale`` the dead ones ended FAILED (which can be told dead: attnlab.tracking.stale).
"""

from __future__ import annotations

import os

from mlflow import MlflowClient

from attnlab.cli import command_parser
from attnlab.core.errors import ConfigError, report_config_errors
from attnlab.tracking.stale import GONE, end_failed, owner, running_runs
from attnlab.tracking.store import check_existing_store


def main(args: list[str]) -> int:
    parser = command_parser(
        "attnlab runs", "List the MLflow runs shown RUNNING and whether their process still exists."
    )
    parser.add_argument(
        "--fix-stale",
        action="store_true",
        help="end FAILED the runs whose process is gone (runs of this host only)",
    )
    parser.add_argument("--experiment", help="only this experiment (default: all)")
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    opts = parser.parse_args(args)
    with report_config_errors():
        check_existing_store("--tracking-uri", opts.tracking_uri)
        client = MlflowClient(opts.tracking_uri)
        names = {e.experiment_id: e.name for e in client.search_experiments()}
        if opts.experiment:
            names = {i: name for i, name in names.items() if name == opts.experiment}
            if not names:
                raise ConfigError("--experiment", opts.experiment, "an existing MLflow experiment")
    runs = list(running_runs(client, list(names)))
    fixed = 0
    for run in runs:
        state = owner(run)
        if state == GONE and opts.fix_stale:
            end_failed(client, run)
            state, fixed = "gone: marked FAILED", fixed + 1
        print(f"{run.info.run_id}  {names[run.info.experiment_id]}/{run.info.run_name}  {state}")
    print(f"{len(runs)} RUNNING" + (f", {fixed} marked FAILED" if opts.fix_stale else ""))
    return 0
