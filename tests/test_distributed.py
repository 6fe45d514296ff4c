"""DDP under Hydra on CPU (gloo, 2 processes): one directory and one MLflow run per job, metrics
reduced over ranks, each rank composed from its own job's values, and DDP equal to one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as L
import optuna
import psutil
import pytest
import torch
from helpers.stand_ins import LogitsOnly
from mlflow import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState
from torchmetrics import Metric

from attnlab.data.images import DigitsDataModule
from attnlab.data.seq2seq import Seq2SeqBatch
from attnlab.models.mlp import MLP
from attnlab.tasks.build import build_model
from attnlab.tasks.seq2seq import Seq2SeqTask
from attnlab.training.distributed import is_global_zero, job_log_name, world_size
from attnlab.training.lightning_trainer import build_trainer, sync_batchnorm

# digits + MLP, no dropout, two short epochs. test_fraction 0.2005 leaves 1292 training and 144
# validation images: both even, so DistributedSampler pads no split with repeated images.
DIGITS = [
    "experiment=digits_mlp",
    "model.dropout=0.0",
    "data.test_fraction=0.2005",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "logger.log_model=false",
]
DDP = ["trainer=ddp_cpu"]


def attnlab(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``attnlab train ...`` as its own process (DDP re-runs the command line for rank 1).

    It runs in a session of its own, so that on a timeout every process it started (a rank
    left waiting included: ranks share its stderr, which would keep the pipe open) is killed
    and what they wrote until then is shown, not lost."""
    command = [sys.executable, "-m", "attnlab.cli", "train", *args]
    process = subprocess.Popen(
        command, cwd=tmp_path, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"attnlab train timed out after {timeout} s; its stderr ends:\n{err[-6000:]}")
    assert process.returncode == 0, err[-6000:]
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def processes_mentioning(text: str) -> list[str]:
    """The command lines of the processes still running that mention ``text``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        line = " ".join(process.info["cmdline"] or [])
        if text in line and process.pid != os.getpid():
            found.append(line)
    return found


def runs(tracking_uri: str, experiment: str):
    client = MlflowClient(tracking_uri)
    (found,) = [e for e in client.search_experiments() if e.name == experiment]
    return client, client.search_runs([found.experiment_id], max_results=50)


def rank_one_line(job_dir: Path) -> str:
    """What rank 1 of a job logged about the overrides it was composed from."""
    (line,) = [
        line
        for line in (job_dir / "train_ddp_process_1.log").read_text().splitlines()
        if "process 0/1 composed from overrides" in line
    ]
    return line


@pytest.mark.slow
def test_a_ddp_run_has_one_directory_one_mlflow_run_and_metrics_over_all_ranks(
    tmp_path, tracking_uri
):
    attnlab(tmp_path, *DIGITS, *DDP, "data.test_fraction=0.2")  # 360 test images: even
    (job_dir,) = tmp_path.glob("logs/digits_mlp/runs/*")
    assert (job_dir / ".hydra" / "config.yaml").is_file()
    assert (job_dir / "train_ddp_process_1.log").is_file()  # rank 1 wrote into the same folder
    client, (run,) = runs(tracking_uri, "digits_mlp")
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["distributed.world_size"] == "2"
    assert params["distributed.batch_size_global"] == str(2 * int(params["data.batch_size"]))

    # The logged test metrics cover the whole test split, not rank 0's half of it (with an odd
    # split, DistributedSampler would score one image twice).
    data = DigitsDataModule(test_fraction=0.2, batch_size=1000)
    data.setup("test")
    model = MLP(**vars(data.dims), width=256, depth=2)
    checkpoint = torch.load(next(job_dir.glob("checkpoints/epoch*.ckpt")), weights_only=False)
    model.load_state_dict({k[6:]: v for k, v in checkpoint["state_dict"].items()})
    model.eval()
    x, y = next(iter(data.test_dataloader()))[:2]
    with torch.no_grad():
        logits = model(x)
    accuracy = (logits.argmax(-1) == y).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    assert run.data.metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert run.data.metrics["test/loss"] == pytest.approx(loss, rel=1e-4)


@pytest.mark.slow
def test_a_ddp_multirun_gives_each_job_its_own_directory_run_and_values(tmp_path, tracking_uri):
    attnlab(tmp_path, "-m", *DIGITS, *DDP, "optim.lr=0.001,0.003")
    job_dirs = sorted(tmp_path.glob("logs/digits_mlp/multiruns/*/[0-9]*"))
    assert [d.name for d in job_dirs] == ["0", "1"]  # rank 1 did not start a sweep of its own
    for job_dir, lr in zip(job_dirs, ("0.001", "0.003"), strict=True):
        assert f"optim.lr={lr}" in rank_one_line(job_dir)
    _, found = runs(tracking_uri, "digits_mlp")
    assert sorted(r.data.params["optim.lr"] for r in found) == ["0.001", "0.003"]
    assert all(r.info.status == "FINISHED" for r in found)


@pytest.mark.slow
def test_an_optuna_sweep_with_ddp_trains_each_trial_with_its_values_on_every_rank(
    tmp_path, tracking_uri
):
    sweep = ["sweep=overfitting", "hydra.sweeper.n_trials=2", "debug=limit"]
    attnlab(tmp_path, "-m", *DIGITS, *DDP, *sweep)
    study = optuna.load_study(study_name="overfitting", storage="sqlite:///optuna.db")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    job_dirs = sorted(tmp_path.glob("logs/overfitting/multiruns/*/[0-9]*"))
    assert len(job_dirs) == 2
    for trial, job_dir in zip(study.trials, job_dirs, strict=True):
        line = rank_one_line(job_dir)
        assert f"trial.number={trial.number}" in line
        for name, value in trial.params.items():
            assert f"{name}={value}" in line, (name, value, line)
    _, found = runs(tracking_uri, "overfitting")
    children = [r for r in found if "optuna.trial_number" in r.data.tags]
    assert sorted(r.data.tags["optuna.trial_number"] for r in children) == ["0", "1"]


@pytest.mark.slow
def test_a_rank_killed_in_a_sweep_trial_fails_that_trial_and_the_sweep_goes_on(
    tmp_path, tracking_uri, monkeypatch
):
    """Rank 1 of trial 0 dies by SIGKILL (no Python code of its own runs) while rank 0 stalls
    as in an NCCL collective: trial 0 ends FAIL with its MLflow run FAILED, trial 1 completes,
    and no process of the sweep is left."""
    helpers = Path(__file__).parent / "helpers"
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(helpers), os.environ.get("PYTHONPATH", "")])
    )
    crash = [
        "+callbacks.crash._target_=crash_callback.CrashOnRank",
        "+callbacks.crash.rank=1",
        "+callbacks.crash.batch=0",  # a 10% training fraction gives a rank one batch
        "+callbacks.crash.how=SIGKILL",
        "+callbacks.crash.stall=300",  # longer than the sweep: only the watcher ends it
        f"+callbacks.crash.once={tmp_path / 'crashed'}",
    ]
    sweep = ["sweep=overfitting", "hydra.sweeper.n_trials=2", "debug=limit"]
    attnlab(tmp_path, "-m", *DIGITS, *DDP, *sweep, *crash, timeout=400)
    study = optuna.load_study(study_name="overfitting", storage="sqlite:///optuna.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "RankFailed" in study.trials[0].user_attrs["error"]
    first_job = next(tmp_path.glob("logs/overfitting/multiruns/*/0"))
    assert "died with signal SIGKILL" in (first_job / "train.log").read_text()
    _, found = runs(tracking_uri, "overfitting")
    status = {
        r.data.tags["optuna.trial_number"]: r.info.status
        for r in found
        if r.info.run_name != "sweep:overfitting"
    }
    assert status == {"0": "FAILED", "1": "FINISHED"}
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.slow
def test_two_processes_with_half_batches_follow_one_process_with_the_whole_batch(
    tmp_path, tracking_uri
):
    """Same seed, no dropout: DDP over 2 ranks of batch 32 = 1 process of batch 64.

    The single process runs the ddp strategy on one device so that both draw their batches
    from Lightning's DistributedSampler (same seeded permutation; rank r takes every other
    index, so the two half batches together are the whole batch). A plain single-device run
    shuffles with another generator: its trajectory would match only in distribution.
    """
    common = [*DIGITS, "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    attnlab(tmp_path, *common, "trainer.devices=1", "data.batch_size=64", "task_name=one")
    attnlab(tmp_path, *common, "trainer.devices=2", "data.batch_size=32", "task_name=two")
    histories, weights = [], []
    for name, processes in (("one", "1"), ("two", "2")):
        client, (run,) = runs(tracking_uri, name)
        assert run.data.params["distributed.world_size"] == processes
        history = client.get_metric_history(run.info.run_id, "val/loss")
        histories.append([m.value for m in sorted(history, key=lambda m: m.step)])
        (last,) = tmp_path.glob(f"logs/{name}/runs/*/checkpoints/last.ckpt")
        weights.append(torch.load(last, weights_only=False)["state_dict"])
    assert len(histories[0]) == 2
    assert histories[1] == pytest.approx(histories[0], rel=1e-4)
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_sigterm_mid_training_ends_the_mlflow_run_killed(tmp_path, tracking_uri):
    """torchrun, SLURM and ``docker stop`` end a job with SIGTERM; no run may stay RUNNING.
    A run stopped while training is KILLED: it saved its step and can be resumed."""
    args = [*DIGITS, "trainer.max_epochs=500", "callbacks.early_stopping=null"]
    process = subprocess.Popen(
        [sys.executable, "-m", "attnlab.cli", "train", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180
    while not list(tmp_path.glob("logs/digits_mlp/runs/*/checkpoints/*.ckpt")):  # training
        assert time.time() < deadline and process.poll() is None, "training never started"
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    _, (run,) = runs(tracking_uri, "digits_mlp")
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_torchrun_gives_one_folder_one_mlflow_run_and_a_log_per_rank(tmp_path, tracking_uri):
    """The README's torchrun recipe on one node: both ranks write into one folder."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*torchrun, "-m", "attnlab.training.train", *DIGITS, *DDP, "hydra.run.dir=runs/one"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("runs/*")] == ["one"]
    logs = {path.name: path.read_text() for path in (tmp_path / "runs" / "one").glob("*.log")}
    assert sorted(logs) == ["train.log", "train_rank_1.log"]
    assert "process 0/0 composed from overrides" in logs["train.log"]
    assert "process 0/1 composed from overrides" in logs["train_rank_1.log"]
    assert "process 0/0" not in logs["train_rank_1.log"]
    _, (run,) = runs(tracking_uri, "digits_mlp")
    assert run.info.status == "FINISHED"
    assert run.data.params["distributed.world_size"] == "2"


@pytest.mark.slow
def test_a_rank_that_fails_mid_training_ends_the_mlflow_run_failed(
    tmp_path, tracking_uri, monkeypatch
):
    """Lightning SIGKILLs rank 0 when a child process fails; the child ends the run itself."""
    helpers = Path(__file__).parent / "helpers"
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(helpers), os.environ.get("PYTHONPATH", "")])
    )
    crash = [
        "+callbacks.crash._target_=crash_callback.CrashOnRank",
        "+callbacks.crash.rank=1",
        "+callbacks.crash.stall=60",  # rank 0 is busy when Lightning's observer kills it
    ]
    done = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "train", *DIGITS, *DDP, *crash],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    assert "rank 1 fails at batch 2" in done.stderr  # the children share the parent's stderr
    _, (run,) = runs(tracking_uri, "digits_mlp")
    assert run.info.status == "FAILED"


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["experiment=digits_resnet", "trainer=ddp_cpu"], True),  # BatchNorm meets 2 processes
        (["experiment=digits_resnet"], False),  # one process: plain BatchNorm
        (["experiment=digits_mlp", "trainer=ddp_cpu"], False),  # no BatchNorm to convert
        (["experiment=digits_resnet", "trainer=ddp_cpu", "trainer.sync_batchnorm=false"], False),
    ],
)
def test_sync_batchnorm_auto_turns_on_when_batchnorm_meets_ddp(overrides, expected, make_cfg):
    cfg = make_cfg(*overrides)
    data = DigitsDataModule(batch_size=8)
    data.setup("fit")
    model = build_model(cfg, data.dims)
    assert sync_batchnorm(cfg, model) is expected
    trainer = build_trainer(cfg, model, callbacks=[], logger=False)
    assert trainer.world_size == world_size(cfg.trainer)


def test_world_size_counts_devices_in_every_form(make_cfg):
    cfg = make_cfg("trainer=ddp_cpu", "trainer.num_nodes=3")
    assert world_size(cfg.trainer) == 6
    for devices, count in (("[0,1,2]", 3), ("'0,1'", 2), ("1", 1)):
        assert world_size(make_cfg(f"trainer.devices={devices}").trainer) == count


@pytest.mark.parametrize(
    "env, zero",
    [
        ({}, True),
        ({"RANK": "1", "LOCAL_RANK": "1"}, False),  # torchrun
        ({"RANK": "0", "LOCAL_RANK": "0"}, True),
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, False),  # Lightning's child in a SLURM shell
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),  # second node
        ({"SLURM_PROCID": "3"}, False),  # srun task
    ],
)
def test_only_global_rank_zero_talks_to_mlflow(env, zero, monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_global_zero() is zero


@pytest.mark.parametrize(
    "env, name",
    [
        ({}, "train"),
        ({"RANK": "0", "LOCAL_RANK": "0"}, "train"),
        ({"RANK": "1", "LOCAL_RANK": "1"}, "train_rank_1"),  # torchrun
        ({"SLURM_PROCID": "3"}, "train_rank_3"),  # srun task
    ],
)
def test_every_rank_that_shares_the_folder_logs_to_its_own_file(env, name, monkeypatch):
    for variable in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert job_log_name("train") == name
    assert OmegaConf.create({"name": "${job_log_name:train}"}).name == name  # as Hydra reads it


class _PerRankData(Seq2SeqTask):
    """Rank 0 scores only short sources, rank 1 short and long ones; predictions are right."""

    def predict_ids(self, src):
        return self._targets[: src.size(0)]

    def test_step(self, batch, batch_idx):
        super().test_step(batch, batch_idx)
        states = [
            s for m in self.modules() if isinstance(m, Metric) for s in m.metric_state.values()
        ]
        shared = sum(s.is_shared() for s in states if isinstance(s, torch.Tensor))
        self.log("shared_metric_states", float(shared), reduce_fx="sum", sync_dist=True)

    def test_dataloader(self):
        lengths = [2, 3] if self.global_rank == 0 else [2, 6]
        src = torch.tensor([[5] * n + [0] * (6 - n) for n in lengths])
        self._targets = torch.tensor([[3, 4, 5, 6, 2]] * len(lengths))
        batch = Seq2SeqBatch(src=src, tgt_in=torch.ones_like(self._targets), tgt_out=self._targets)
        return torch.utils.data.DataLoader([batch], batch_size=None)


@pytest.mark.slow
def test_a_length_bucket_that_one_rank_never_sees_is_still_scored_over_all_ranks():
    """A per-bucket metric logged only where a rank has rows would pair mismatched collectives."""
    task = _PerRankData(
        LogitsOnly(9), torch.optim.SGD, pad_id=0, bos_id=1, eos_id=2, tgt_vocab_size=9,
        max_tgt_len=5, length_buckets=[4],
    )  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", use_distributed_sampler=False,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    (logged,) = trainer.test(task, verbose=False)
    # ddp_spawn pickles the module to the ranks through shared memory: counters the ranks
    # shared would mix their updates (this test once read 1.5 here)
    assert logged["shared_metric_states"] == 0
    assert logged["test/exact_match_by_len/lt4"] == 1.0  # 3 rows: 2 on rank 0, 1 on rank 1
    assert logged["test/exact_match_by_len/ge4"] == 1.0  # 1 row, on rank 1 only
    assert logged["test/bleu_by_len/ge4"] == pytest.approx(1.0)


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_rank_that_dies_interrupts_its_job_and_the_other_ranks_are_killed():
    from attnlab.training.launcher import RankFailed, RankWatcher

    dying, waiting = (
        _python("import os, time; time.sleep(0.5); os.abort()"),
        _python("import time; time.sleep(120)"),
    )
    watcher = RankWatcher([dying, waiting], interval=0.1)
    watcher.start()
    failure = rf"rank 1 \(pid {dying.pid}\) died with signal SIGABRT"
    with pytest.raises(RankFailed, match=failure), watcher.raising():
        time.sleep(60)  # as rank 0 stalls in a collective whose peer is gone
    assert waiting.poll() == -signal.SIGKILL
    watcher.close(grace_s=0)
    assert not watcher.is_alive()


def test_a_finished_job_gives_its_ranks_time_to_exit_then_kills_the_rest():
    from attnlab.training.launcher import RankWatcher

    exiting, hanging = (
        _python("import time; time.sleep(0.5)"),
        _python("import time; time.sleep(120)"),
    )
    watcher = RankWatcher([exiting, hanging], interval=0.1)
    watcher.start()
    watcher.close(grace_s=5)
    assert exiting.returncode == 0 and hanging.returncode == -signal.SIGKILL
    assert not watcher.is_alive()  # no watcher outlives its job to act on a later exit


@pytest.mark.parametrize(
    "name, processes, launcher_kind",
    [
        ("ddp", 2, "popen"),
        ("ddp_find_unused_parameters_true", 2, "popen"),
        ("auto", 2, "popen"),  # what Lightning makes of auto over several processes
        ("ddp_spawn", 2, "spawn"),
        ("auto", 1, None),
        ("fsdp", 2, None),
    ],
)
def test_ddp_strategies_are_watched_and_time_out(name, processes, launcher_kind):
    from datetime import timedelta

    from attnlab.training.launcher import WatchedDDPStrategy, ddp_strategy

    strategy = ddp_strategy(name, processes, timeout_s=42)
    if launcher_kind is None:
        assert strategy == name
        return
    assert isinstance(strategy, WatchedDDPStrategy)
    assert strategy._start_method == launcher_kind
    assert strategy._timeout == timedelta(seconds=42)


def test_a_rank_leaves_its_process_group_before_it_exits(tmp_path):
    """Not left to the interpreter's exit, where gloo aborts the process now and then."""
    from attnlab.training.distributed import leaving_process_group

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    with leaving_process_group():
        assert torch.distributed.is_initialized()
    assert not torch.distributed.is_initialized()
