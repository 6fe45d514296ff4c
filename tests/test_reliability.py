"""Reliability guarantees (README, "Reliability"): divergence, stale runs, secrets, loading."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from attnlab.cli import main
from attnlab.errors import Diverged
from attnlab.tasks.classify import ClassifyTask
from attnlab.train import run

DIGITS = [
    "experiment=digits_mlp",
    "debug=limit",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def runs_of(tracking_uri: str, experiment: str = "digits_mlp") -> list:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=50) if found else []


# -- 4. Divergence -----------------------------------------------------------------------------


def test_a_diverging_lr_stops_the_run_at_that_step_failed(make_cfg, tracking_uri):
    """optim.lr=1e6 is finite (config checks let it through) and makes the loss NaN."""
    with pytest.raises(Diverged) as diverged:
        run(make_cfg(*DIGITS, "optim.lr=1e6", "logger.log_model=false"))
    (record,) = runs_of(tracking_uri)
    assert record.info.status == "FAILED"
    assert not math.isfinite(diverged.value.loss)
    history = MlflowClient(tracking_uri).get_metric_history(record.info.run_id, "train/loss_step")
    assert all(point.step <= diverged.value.step for point in history)  # stopped there
    assert "test/acc" not in record.data.metrics  # never tested


def test_a_loss_made_nan_names_the_step_in_one_line_and_exits_1(monkeypatch, capsys):
    real_step = ClassifyTask.training_step

    def nan_at_batch_2(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * math.nan if batch_idx == 2 else loss

    monkeypatch.setattr(ClassifyTask, "training_step", nan_at_batch_2)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *DIGITS, "logger=none"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "attnlab: training diverged: the training loss is nan at step 3; "
        "lower optim.lr or clip gradients (trainer.gradient_clip_val)"
    )
    assert "Traceback" not in "\n".join(err)


def test_a_diverged_trial_fails_and_the_sweep_goes_on(tracking_uri):
    import optuna
    from optuna.trial import TrialState

    # The random sampler seeded 2 (then 3: seed + trials so far) draws 1e6 first, then 1e-3.
    main(
        [
            "train", "-m", *DIGITS, "hydra/sweeper=optuna", "objective.metric=val/acc",
            "hydra.sweeper.sampler.name=random", "hydra.sweeper.sampler.seed=2",
            "optim.lr=choice(1e6,1e-3)",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=lr", "logger.log_model=false",
        ]
    )  # fmt: skip
    trials = optuna.load_study(study_name="lr", storage="sqlite:///optuna.db").trials
    states = [(t.params["optim.lr"], t.state) for t in trials]
    assert states == [(1e6, TrialState.FAIL), (1e-3, TrialState.COMPLETE)]
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert "training diverged" in failed.user_attrs["error"]
    trial_runs = [r for r in runs_of(tracking_uri) if "optuna.trial_number" in r.data.tags]
    status = {r.data.params["optim.lr"]: r.info.status for r in trial_runs}
    assert status == {"1000000.0": "FAILED", "0.001": "FINISHED"}
