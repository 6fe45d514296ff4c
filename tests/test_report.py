"""`attnlab report` tables: what varies between runs, not the sweeper's bookkeeping; which
swept param matters most over repeats of a sweep."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from attnlab.commands.report import load_runs, print_importances, swept_params
from attnlab.core.errors import ConfigError
from attnlab.sweeper.importance import best_over_repeats, importances, most_important


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


def test_a_sweeps_summary_ranks_what_was_swept_not_the_batch_sizes_derived_from_it():
    table = pd.DataFrame(
        columns=["run", "status", "data.batch_size", "distributed.batch_size_global", "val/error"]
    )
    assert swept_params(table, ["val/error"]) == ["data.batch_size"]


def repeat_of_a_sweep(storage: str, name: str, seed: int, signal: float) -> optuna.Study:
    """20 random trials over x and y of signal * x^2 + noise; y never enters the objective."""
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=seed)
    )
    rng = np.random.default_rng(seed)

    def objective(trial: optuna.Trial) -> float:
        x, _ = trial.suggest_float("x", -1, 1), trial.suggest_float("y", -1, 1)
        return signal * x**2 + 0.01 * rng.normal()

    study.optimize(objective, n_trials=20)
    return study


def test_importance_over_repeats_names_the_param_that_matters_and_no_winner_on_noise(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    signal = [repeat_of_a_sweep(storage, f"signal_r{k}", k, signal=2.0) for k in range(3)]
    found = importances(signal)
    assert [imp.param for imp in found] == ["x", "y"] and len(found[0].values) == 3
    assert found[0].low > 0.5 > found[1].high
    assert most_important(found) == "x"
    assert most_important(importances(signal[:1])) is None  # one repeat has no range
    noise = [repeat_of_a_sweep(storage, f"noise_r{k}", 10 + k, signal=0.0) for k in range(3)]
    assert most_important(importances(noise)) is None


def test_the_best_trial_over_repeats_is_the_lowest_of_all_and_printed_as_overrides(
    tmp_path, capsys
):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    repeats = [repeat_of_a_sweep(storage, f"signal_r{k}", k, signal=2.0) for k in range(3)]
    lowest = min(t.value for study in repeats for t in study.trials)
    study, trial = best_over_repeats(repeats)
    assert trial.value == lowest and trial in study.trials
    print_importances([s.study_name for s in repeats], storage)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    x, y = trial.params["x"], trial.params["y"]
    assert line == (f"best trial over the repeats: {study.study_name} #{trial.number}, "
                    f"objective {lowest:.4f}: x={x} y={y}")  # fmt: skip


def test_report_importance_of_an_unknown_study_or_storage_is_one_line(tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    repeat_of_a_sweep(storage, "signal_r0", 0, signal=2.0)
    with pytest.raises(ConfigError, match="--sweep='nowhere'"):
        print_importances(["signal_r0", "nowhere"], storage)
    optuna.create_study(study_name="empty", storage=storage)
    with pytest.raises(ConfigError, match="--sweep='empty'.*two complete trials"):
        print_importances(["signal_r0", "empty"], storage)
    with pytest.raises(ConfigError, match="--storage"):
        print_importances(["signal_r0", "signal_r1"], f"sqlite:///{tmp_path}/missing.db")
