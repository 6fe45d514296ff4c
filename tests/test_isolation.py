"""Every run and every sweep worker owns its output folder, even when started in the same second
(folders were once named by the second alone, and two runs shared one checkpoints/ folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from attnlab.training.distributed import launch_token

TOKEN = "from attnlab.training.distributed import launch_token; print(launch_token())"


def _tokens(env: dict[str, str], count: int = 2) -> list[str]:
    """``launch_token()`` of ``count`` processes started together with ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))}
    clean.pop("RANK", None)
    command = [sys.executable, "-c", TOKEN]
    env = {**clean, **env}
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE) for _ in range(count)]
    return [p.communicate()[0].decode().strip() for p in procs]


def test_processes_started_together_get_different_tokens():
    first, second = _tokens({})
    assert first != second and len(first) == 8


def test_ranks_of_one_launch_share_a_token():
    """torchrun's and srun's processes write into one folder; separate launches do not."""
    torchrun = {"RANK": "1", "TORCHELASTIC_RUN_ID": "5c2a9e0f-77"}
    assert _tokens(torchrun) == ["5c2a9e0f", "5c2a9e0f"]
    assert _tokens({"RANK": "0", "MASTER_PORT": "29500"}) == ["port29500"] * 2
    srun = {"SLURM_JOB_ID": "812", "SLURM_STEP_ID": "3", "SLURM_PROCID": "1"}
    assert _tokens(srun) == ["slurm812.3"] * 2
    assert _tokens({**srun, "SLURM_JOB_ID": "813"}) != _tokens(srun)


def test_the_token_is_fixed_within_a_process():
    assert launch_token() == launch_token()


def _train(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "attnlab.cli", "train", *overrides],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # two processes on the machine's cores
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]


QUICK = [
    "experiment=digits_mlp",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "logger.log_model=false",
]


@pytest.mark.slow
def test_runs_started_in_the_same_second_own_their_folders_and_weights(tmp_path: Path):
    rates = ("0.001", "0.02")
    _wait([_train(tmp_path, *QUICK, f"optim.lr={lr}") for lr in rates])

    folders = sorted(tmp_path.glob("logs/digits_mlp/runs/*"))
    assert len(folders) == 2, folders
    seen = set()
    for folder in folders:
        log = (folder / "train.log").read_text()
        assert log.count("composed from overrides") == 1, log  # one run wrote this log
        (lr,) = [r for r in rates if f"optim.lr={r}" in log]
        checkpoints = sorted((folder / "checkpoints").glob("*.ckpt"))
        assert {c.name for c in checkpoints} >= {"last.ckpt"} and len(checkpoints) == 2
        for checkpoint in checkpoints:  # the weights tested are this run's own
            state = torch.load(checkpoint, map_location="cpu", weights_only=False)
            assert state["optimizer_states"][0]["param_groups"][0]["initial_lr"] == float(lr)
        seen.add(lr)
    assert seen == set(rates)

    # both logged to one SQLite store at once (conftest's MLFLOW_TRACKING_URI): both complete
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("digits_mlp")
    runs = client.search_runs([experiment.experiment_id], max_results=10)
    assert sorted(r.data.params["optim.lr"] for r in runs) == sorted(rates)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"test/acc", "val/acc", "train/loss_epoch"} <= set(run.data.metrics)
        history = client.get_metric_history(run.info.run_id, "val/acc")
        assert len(history) == 2  # one value per epoch, none lost to the other writer


@pytest.mark.slow
def test_sweep_workers_started_in_the_same_second_own_their_folders(tmp_path: Path):
    sweep = [*QUICK, "trainer.max_epochs=1", "optim.lr=0.001,0.002"]
    _wait([_train(tmp_path, "-m", *sweep) for _ in range(2)])
    sweeps = sorted(tmp_path.glob("logs/digits_mlp/multiruns/*"))
    assert len(sweeps) == 2, sweeps
    for sweep_dir in sweeps:
        jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
        assert jobs == ["0", "1"], jobs
        for job in jobs:
            log = (sweep_dir / job / "train.log").read_text()
            assert log.count("composed from overrides") == 1, log
