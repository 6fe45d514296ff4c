"""Hydra launchers from submitit: the SLURM config composes for a DDP job, and the local
executor runs a multirun's jobs in processes of their own through the same launcher code."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from attnlab.config import register_schemas
from attnlab.paths import config_dir


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
