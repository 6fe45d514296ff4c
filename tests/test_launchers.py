"""Hydra launchers from submitit: the SLURM config composes for a DDP job, and the local
executor runs a multirun's jobs in processes of their own through the same launcher code."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from attnlab.core.config import register_schemas
from attnlab.core.paths import config_dir


def test_the_slurm_launcher_asks_for_one_task_per_gpu_on_every_node():
    register_schemas()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose(
            "train",
            ["hydra/launcher=slurm", "trainer.devices=4", "trainer.num_nodes=2"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)


@pytest.mark.slow
def test_the_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path, tracking_uri):
    args = ["-m", "hydra/launcher=local", "experiment=digits_mlp", "debug=limit"]
    done = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "train", *args, "optim.lr=0.001,0.003"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep_dir,) = tmp_path.glob("logs/digits_mlp/multiruns/*")
    assert sorted(d.name for d in sweep_dir.glob("[0-9]*")) == ["0", "1"]
    job_logs = list(sweep_dir.glob(".submitit/*/*_0_log.out"))
    assert len(job_logs) == 2  # one submitit job, with its own process and log, per Hydra job
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("digits_mlp")
    found = client.search_runs([experiment.experiment_id], max_results=10)
    assert sorted(r.data.params["optim.lr"] for r in found) == ["0.001", "0.003"]
    assert all(r.info.status == "FINISHED" for r in found)


@pytest.mark.slow
def test_a_submitit_job_sent_usr2_saves_is_requeued_and_resumes_into_its_run(
    tmp_path, tracking_uri
):
    """submitit's preemption signal (USR2) reaches a job of hydra/launcher=local, as SLURM's
    would: last.ckpt is written at the end of that step, the MLflow run ends KILLED, then
    submitit's own handler requeues the job, which resumes into the same run to FINISHED."""
    signalled = tmp_path / "signalled"
    args = [
        "-m", "hydra/launcher=local", "experiment=digits_mlp", "trainer.max_epochs=3",
        "callbacks.progress_bar=null",
        "+callbacks.crash._target_=helpers.crash_callback.CrashOnRank",
        "+callbacks.crash.rank=0", "+callbacks.crash.batch=5", "+callbacks.crash.how=SIGUSR2",
        f"+callbacks.crash.once={signalled}",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "train", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert signalled.exists()
    (sweep_dir,) = tmp_path.glob("logs/digits_mlp/multiruns/*")
    log = "".join(path.read_text() for path in sweep_dir.glob(".submitit/*/*_0_log.*"))
    assert "Caught signal SIGUSR2" in log and "Requeued job" in log, log[-3000:]
    train_log = (sweep_dir / "0" / "train.log").read_text()
    assert "resuming MLflow run" in train_log
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("digits_mlp")
    (run,) = client.search_runs([experiment.experiment_id], max_results=10)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    validations = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(validations) == 3  # one per epoch, the first cut by the signal, none twice
