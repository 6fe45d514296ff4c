"""`attnlab report` tables: what varies between runs, not the sweeper's bookkeeping."""

from __future__ import annotations

from mlflow import MlflowClient

from attnlab.commands.report import load_runs


def test_varying_params_leave_out_the_sweepers_bookkeeping(tracking_uri: str):
    client = MlflowClient(tracking_uri)
    experiment = client.create_experiment("overfitting")
    for number, dropout in enumerate(("0.1", "0.5")):
        run = client.create_run(experiment, run_name=f"trial-{number}")
        for key, value in {
            "model.dropout": dropout,
            "model.width": "64",  # the same in both runs
            "trial.number": str(number),
            "tags.optuna.trial_number": str(number),
            "callbacks.optuna_pruning.trial_id": str(10 + number),
        }.items():
            client.log_param(run.info.run_id, key, value)
        client.log_metric(run.info.run_id, "val/error", 0.1 * (number + 1))
        client.set_terminated(run.info.run_id)
    table = load_runs(client, "overfitting", None, ["val/error"])
    assert list(table.columns) == ["run", "status", "model.dropout", "val/error"]
