"""The same command twice gives the same metrics on CPU (issue 11, item 1): for every model
family the claims compare, in one process (dropout, data order and initialisation all drawn
from the run's seed), under DDP, and for the sweeper's trials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from helpers.record_metrics import RecordMetrics
from mlflow import MlflowClient

from attnlab.training.train import run

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]
RECORD = "+callbacks.record._target_=helpers.record_metrics.RecordMetrics"
TOKENS = ["data.n_train=256", "data.n_val=64", "data.n_test=64", "data.batch_size=32"]
TRANSFORMER = ["model=transformer_classifier", "model.width=16", "model.heads=2",
               "model.ff_width=32", "model.depth=1", "model.dropout=0.1"]  # fmt: skip
RNN = ["model=rnn_classifier", "model.width=16", "model.emb_dim=8", "model.dropout=0.1"]
CONV = ["model=conv_classifier", "model.width=16", "model.dropout=0.1"]
SEQ2SEQ = ["experiment=reverse_attention", "data.n_train=128", "data.n_val=32", "data.n_test=32",
           "data.batch_size=32", "data.max_len=12", "task.length_buckets=[8]", "model.width=16",
           "model.emb_dim=8", "model.dropout=0.1", "scheduler.warmup_steps=2"]  # fmt: skip
RESNET = ["experiment=resnet_v1_v2", "model.depth=8", "model.groups=4", "data.batch_size=32",
          "trainer.check_val_every_n_epoch=1"]  # fmt: skip
# One case per model family that a claim compares, each with its source of randomness.
FAMILIES = {
    "agreement-transformer": ["experiment=agreement", *TOKENS, *TRANSFORMER],
    "agreement-rnn": ["experiment=agreement", *TOKENS, *RNN],
    "agreement-conv": ["experiment=agreement", *TOKENS, *CONV],
    # experiment=order_count presets a Transformer's keys: its data alone, with any family
    "order-transformer": ["experiment=agreement", "data=order_count", *TOKENS, *TRANSFORMER],
    "order-rnn": ["experiment=agreement", "data=order_count", *TOKENS, *RNN],
    "order-conv": ["experiment=agreement", "data=order_count", *TOKENS, *CONV],
    "seq2seq-attention": [*SEQ2SEQ, "model=attention_seq2seq"],
    "seq2seq-fixed-context": [*SEQ2SEQ, "model=rnn_seq2seq"],
    "resnet-v1-batchnorm": [*RESNET, "model.unit=v1", "model.norm=batch"],
    "resnet-v2-batchnorm": [*RESNET, "model.unit=v2", "model.norm=batch"],
    "resnet-v1-groupnorm": [*RESNET, "model.unit=v1", "model.norm=group"],
    "resnet-v2-groupnorm": [*RESNET, "model.unit=v2", "model.norm=group"],
    "digits-mlp-dropout": ["experiment=digits_mlp", "model.dropout=0.3"],
}


def assert_same_records(first: dict, second: dict) -> None:
    """Every logged metric of every epoch, and every final weight, equal bit for bit."""
    assert first["metrics"] and first["metrics"][-1], "the run logged nothing"
    assert first["metrics"] == second["metrics"]
    assert first["weights"].keys() == second["weights"].keys()
    for key, value in first["weights"].items():
        assert torch.equal(value, second["weights"][key]), key


@pytest.mark.parametrize("family", FAMILIES)
def test_a_run_repeats_bit_for_bit_in_one_process(family: str, make_cfg):
    RecordMetrics.runs.clear()
    overrides = [*FAMILIES[family], "debug=limit", "logger=none", *QUIET, RECORD]
    objectives = [run(make_cfg(*overrides)) for _ in range(2)]
    assert objectives[0] == objectives[1]
    first, second = RecordMetrics.runs
    assert_same_records(first, second)
    assert any(key.startswith("test/") for key in first["metrics"][-1])


def test_the_record_tells_runs_apart_at_another_seed(make_cfg):
    """The comparison above can fail: the same run at another seed differs."""
    RecordMetrics.runs.clear()
    overrides = [*FAMILIES["digits-mlp-dropout"], "debug=limit", "logger=none", *QUIET, RECORD]
    run(make_cfg(*overrides, "seed=1"))
    run(make_cfg(*overrides, "seed=2"))
    first, second = RecordMetrics.runs
    assert first["metrics"] != second["metrics"]


def test_the_model_summary_draws_no_random_numbers(make_cfg):
    """Its forward of the example input (sizes, FLOPs) leaves training as with no summary at
    all (Lightning adds its own unless told not to), here with augmentation, which the data
    module draws for training batches on the device."""
    RecordMetrics.runs.clear()
    augmented = ["data.hflip=true", "data.gaussian_noise=0.1", "data.random_crop_padding=1"]
    overrides = [*FAMILIES["digits-mlp-dropout"], *augmented, "debug=limit", "logger=none",
                 "callbacks.progress_bar=null", RECORD]  # fmt: skip
    no_summary = ["callbacks.model_summary=null", "+trainer.enable_model_summary=false"]
    run(make_cfg(*overrides, *no_summary))
    run(make_cfg(*overrides))
    assert_same_records(*RecordMetrics.runs)


@pytest.mark.parametrize(
    "family", ["agreement-transformer", "seq2seq-attention", "resnet-v2-groupnorm"]
)
def test_the_gpu_determinism_switch_turns_on_deterministic_kernels(
    family: str, make_cfg, monkeypatch: pytest.MonkeyPatch
):
    """``trainer.deterministic=true`` (what the README gives for GPUs) turns on torch's
    deterministic algorithms and cuBLAS's fixed workspace (Lightning 2.6), and the models run
    under it (on CPU: no GPU here to meet a kernel that has no deterministic version)."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    overrides = [*FAMILIES[family], "debug=limit", "logger=none", *QUIET]
    try:
        run(make_cfg(*overrides, "trainer.deterministic=true"))
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)


def attnlab(cwd: Path, *args: str) -> None:
    """``attnlab train ...`` as its own process, in ``cwd`` (its own MLflow store and study)."""
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "train", *args],
        cwd=cwd,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def logged(store: Path, experiment: str) -> dict[str, dict[str, list[float]]]:
    """{run name: {metric key: values in step order}} of every run of ``experiment``, the
    metrics a run writes (train/, val/, test/, baseline/) and not timings or system ones."""
    client = MlflowClient(f"sqlite:///{store}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=50)
    histories = {}
    for record in runs:
        keys = [k for k in record.data.metrics if k.split("/")[0] in ("train", "val", "test")]
        keys += [k for k in record.data.metrics if k.startswith("baseline/")]
        histories[record.info.run_name] = {
            key: [m.value for m in sorted(client.get_metric_history(record.info.run_id, key),
                                          key=lambda m: m.step)]
            for key in keys
        }  # fmt: skip
    return histories


@pytest.mark.slow
def test_a_ddp_run_repeats_bit_for_bit(tmp_path: Path):
    """Two processes (gloo): each rank's share of the data and its dropout masks repeat."""
    command = ["experiment=digits_mlp", "trainer=ddp_cpu", "debug=limit", "model.dropout=0.3",
               "logger.log_model=false", "hydra.run.dir=run", *QUIET]  # fmt: skip
    for name in ("first", "second"):
        attnlab(tmp_path / name, *command)
    first = logged(tmp_path / "first" / "mlflow.db", "digits_mlp")
    second = logged(tmp_path / "second" / "mlflow.db", "digits_mlp")
    (history,) = first.values()
    assert history["test/acc"] and history["train/loss_step"]
    assert history["baseline/test/acc/chance"] == [0.1]  # ten digits; logged once, at step 0
    assert "baseline/test/error/majority_class" in history
    assert list(first.values()) == list(second.values())


def trials(folder: Path) -> list[tuple]:
    """(params, value, intermediate values, state) of each trial of the study in ``folder``."""
    storage = f"sqlite:///{folder}/optuna.db"
    study = optuna.load_study(study_name="transformer_dates", storage=storage)
    return [(t.params, t.value, t.intermediate_values, t.state) for t in study.trials]


@pytest.mark.slow
def test_a_sweep_repeats_its_trials_bit_for_bit(tmp_path: Path, tiny: list[str]):
    """The seeded sampler proposes the same values; each trial then trains the same way."""
    command = ["-m", "sweep=transformer", "hydra.sweeper.n_trials=3", *tiny, "debug=limit",
               "logger.log_model=false", "callbacks.attention_maps=null"]  # fmt: skip
    for name in ("first", "second"):
        attnlab(tmp_path / name, *command)
    first_trials, second_trials = (trials(tmp_path / name) for name in ("first", "second"))
    assert len(first_trials) == 3 and first_trials == second_trials
    first = logged(tmp_path / "first" / "mlflow.db", "date_transformer")
    second = logged(tmp_path / "second" / "mlflow.db", "date_transformer")
    assert len(first) == 4 and first == second  # the parent run and its three trials
