"""Resume after a kill or a preemption, into the same MLflow run (docs: Reliability).

Each test runs real ``attnlab train`` processes on the digits MLP, paced so a signal lands
mid-epoch, and compares against a run that was never interrupted.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from attnlab.training.resume import LAST_CHECKPOINT, RUN_ID_FILE

STEPS_PER_EPOCH = 10
# Every step logged, a checkpoint every 4 steps and at epoch ends, deterministic kernels.
COMMAND = [
    "experiment=digits_mlp",
    "trainer.max_epochs=3",
    f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=4",
    "trainer.log_every_n_steps=1",
    "trainer.deterministic=true",
    "callbacks.early_stopping=null",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.last_checkpoint.every_n_train_steps=4",
    "logger.log_model=false",
    "+callbacks.pace._target_=helpers.pace.Pace",
    "+callbacks.pace.seconds=0.25",
]
LOSS = "train/loss_step"


def train(folder: Path, *extra: str) -> subprocess.Popen:
    """``attnlab train COMMAND extra`` in ``folder``, with its own MLflow store."""
    folder.mkdir(exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db"}
    command = [sys.executable, "-m", "attnlab.cli", "train", *COMMAND, *extra]
    return subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]


def steps_logged(db: Path) -> int:
    """How many training steps have logged their loss, read while another process writes the
    store (Lightning logs the loss of global step g, counted from 1, as MLflow step g - 1)."""
    query = "SELECT MAX(step) FROM metrics WHERE key = ?"
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            last = connection.execute(query, (LOSS,)).fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return 0
    return 0 if last is None else last + 1


def signal_at_step(folder: Path, process: subprocess.Popen, step: int, signum: int) -> None:
    deadline = time.time() + 240
    while steps_logged(folder / "mlflow.db") < step:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "the run never reached the step"
        time.sleep(0.1)
    process.send_signal(signum)
    process.wait(timeout=120)


def the_run(folder: Path):
    client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
    experiment = client.get_experiment_by_name("digits_mlp")
    (run,) = client.search_runs([experiment.experiment_id], max_results=10)
    return client, run


def history(folder: Path) -> list[tuple[int, float]]:
    client, run = the_run(folder)
    return sorted((p.step, p.value) for p in client.get_metric_history(run.info.run_id, LOSS))


def run_folder(folder: Path) -> Path:
    (found,) = folder.glob("logs/digits_mlp/runs/*")
    return found


def checkpoint_step(folder: Path) -> int:
    checkpoint = torch.load(run_folder(folder) / LAST_CHECKPOINT, weights_only=True)
    return checkpoint["global_step"]


def assert_same_as_uninterrupted(resumed: Path, whole: Path) -> None:
    """One run, FINISHED, the loss of every step logged once and equal to the uninterrupted
    run's, the same test metrics."""
    client, run = the_run(resumed)
    _, reference = the_run(whole)
    assert run.info.status == "FINISHED"
    steps = [step for step, _ in history(resumed)]
    assert len(steps) == len(set(steps)), "a step was logged twice"
    assert steps == [step for step, _ in history(whole)]
    values = [value for _, value in history(resumed)]
    assert values == pytest.approx([value for _, value in history(whole)], abs=1e-6)
    for key in ("test/acc", "test/loss", "val/acc"):
        assert run.data.metrics[key] == pytest.approx(reference.data.metrics[key], abs=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("uninterrupted")
    finish(train(folder))
    return folder


@pytest.mark.slow
def test_a_sigkilled_run_resumes_into_its_mlflow_run_with_the_same_result(tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    process = train(killed)
    # after step 14 of 30, before the checkpoint at 16: mid-epoch 2, steps 13-14 not saved
    signal_at_step(killed, process, STEPS_PER_EPOCH + 4, signal.SIGKILL)
    _, run = the_run(killed)
    assert run.info.status == "RUNNING"  # nothing could end it
    assert (run_folder(killed) / RUN_ID_FILE).read_text() == run.info.run_id
    # steps after the last checkpoint were logged: the resumed run trains them again
    assert checkpoint_step(killed) < steps_logged(killed / "mlflow.db")

    finish(train(killed, "resume=auto"))
    assert len(list(killed.glob("logs/digits_mlp/runs/*"))) == 1  # continued in its folder
    assert_same_as_uninterrupted(killed, uninterrupted)


# What decides the next batch beyond the shuffled default, and where a checkpoint keeps it.
BATCH_SOURCES = {
    # a generator of its own: the checkpoint holds it and the batches given so far
    "by_class": "data.batches=by_class",
    # worker processes: torchdata's StatefulDataLoader state, the workers' included
    "loader_workers": "data.num_workers=2",
}


@pytest.mark.slow
@pytest.mark.parametrize("source", BATCH_SOURCES.values(), ids=BATCH_SOURCES.keys())
def test_a_killed_run_resumes_with_the_uninterrupted_runs_batches(tmp_path, source):
    """Killed mid-epoch 2 and resumed, the run trains on the uninterrupted run's batches and
    ends with its numbers."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    finish(train(whole, source))
    process = train(killed, source)
    signal_at_step(killed, process, STEPS_PER_EPOCH + 4, signal.SIGKILL)  # mid-epoch 2
    assert checkpoint_step(killed) < steps_logged(killed / "mlflow.db")
    finish(train(killed, source, "resume=auto"))
    assert_same_as_uninterrupted(killed, whole)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_preempted_run_saves_its_step_ends_killed_and_resumes(tmp_path, uninterrupted, signum):
    preempted = tmp_path / "preempted"
    process = train(preempted)
    signal_at_step(preempted, process, STEPS_PER_EPOCH + 5, signum)
    assert process.returncode == 128 + signum
    _, run = the_run(preempted)
    assert run.info.status == "KILLED"  # waiting to be resumed, not failed
    # the checkpoint holds the step the signal arrived in: nothing trained is lost
    assert checkpoint_step(preempted) == steps_logged(preempted / "mlflow.db")

    resumed = train(preempted, "resume=auto")
    deadline = time.time() + 240
    while the_run(preempted)[1].info.status != "RUNNING":  # RUNNING again while it trains
        assert resumed.poll() is None and time.time() < deadline, resumed.communicate()[1]
        time.sleep(0.2)
    finish(resumed)
    assert_same_as_uninterrupted(preempted, uninterrupted)


# A process that SIGKILLs itself in the middle of its second checkpoint save, at the last moment
# before the checkpoint file would change: just before a rename into the checkpoint folder, or
# halfway through a copy into it (what a move from $TMPDIR on another filesystem does).
KILL_IN_SECOND_SAVE = """
import os, shutil, signal, sys, torch
from pathlib import Path
saves = []
real_save, real_copyfile = torch.save, shutil.copyfile
def counting_save(*args, **kwargs):
    saves.append(1)
    return real_save(*args, **kwargs)
def dying(destination):
    return len(saves) == 2 and Path(destination).parent.name == "checkpoints"
def die_before_rename(event, args):
    if event == "os.rename" and dying(args[1]) and Path(args[0]).parent == Path(args[1]).parent:
        os.kill(os.getpid(), signal.SIGKILL)
def copy_half_then_die(source, destination, *args, **kwargs):
    if dying(destination):
        data = Path(source).read_bytes()
        with open(destination, "wb") as file:
            file.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real_copyfile(source, destination, *args, **kwargs)
torch.save, shutil.copyfile = counting_save, copy_half_then_die
sys.addaudithook(die_before_rename)
from attnlab.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    """$TMPDIR on another filesystem (tmpfs) than the checkpoints, as a cluster's local /tmp
    and its shared disk: Lightning's own save writes there and then copies into place."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test's folder")
    tmpdir = shm / f"attnlab-test-{os.getpid()}"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    args = ["train", "experiment=digits_mlp", "debug=limit", "logger.log_model=false"]
    args += ["callbacks.last_checkpoint.every_n_train_steps=2", "callbacks.progress_bar=null"]
    process = subprocess.run(
        [sys.executable, "-c", KILL_IN_SECOND_SAVE, *args], env=env, capture_output=True, text=True
    )
    shutil.rmtree(tmpdir)
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    (last,) = tmp_path.glob(f"logs/digits_mlp/runs/*/{LAST_CHECKPOINT}")
    assert torch.load(last, weights_only=True)["global_step"] == 2  # the first save, whole


def test_a_folder_reused_with_another_config_is_refused_before_its_run_changes(tracking_uri):
    from attnlab.core.errors import ConfigError
    from attnlab.tracking.mlflow_run import check_same_config

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("reused")).info.run_id
    client.log_param(run_id, "optim.lr", "0.001")
    client.log_param(run_id, "resume", "None")
    check_same_config(client, run_id, {"optim.lr": "0.001", "resume": "auto"})  # same command
    refused = r"optim.lr='0.01' is not allowed: '0.001', the value the run in this folder"
    with pytest.raises(ConfigError, match=refused):
        check_same_config(client, run_id, {"optim.lr": "0.01", "resume": "auto"})
    assert client.get_run(run_id).info.status == "RUNNING"  # untouched


def test_a_folder_is_owned_by_one_living_process_at_a_time(tmp_path):
    from attnlab.core.errors import ConfigError
    from attnlab.training.resume import in_use, owning

    hold = "import sys, time; from attnlab.training.resume import owning"
    hold += "; held = owning(sys.argv[1], 'k')"
    hold += "; held.__enter__(); print('held', flush=True); time.sleep(120)"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, tmp_path],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    assert in_use(tmp_path)
    refused = "k=.* another process is training in it now"
    with pytest.raises(ConfigError, match=refused), owning(tmp_path, "k"):
        pass
    holder.kill()  # SIGKILL: nothing of the holder's runs; the kernel frees its lock
    holder.wait()
    assert not in_use(tmp_path)
    with owning(tmp_path, "k"):
        pass


@pytest.mark.slow
def test_a_second_run_in_a_folder_in_training_is_refused_and_takes_over_once_the_first_died(
    tmp_path,
):
    """Two processes training side by side on one folder, checkpoints and MLflow run: the
    second is refused in one line (exit 2) while the first lives, and resumes once it is dead."""
    longer = "trainer.max_epochs=20"  # 50 s of paced steps: the first outlives the refusals
    first = train(tmp_path, longer)
    deadline = time.time() + 240
    while not (
        steps_logged(tmp_path / "mlflow.db") >= 6
        and list(tmp_path.glob(f"logs/*/runs/*/{LAST_CHECKPOINT}"))
    ):
        assert first.poll() is None and time.time() < deadline
        time.sleep(0.2)
    folder = run_folder(tmp_path)
    for extra, key in ((["resume=auto"], "resume"), ([f"hydra.run.dir={folder}"], "hydra.run.dir")):
        second = train(tmp_path, longer, *extra)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err[-3000:]
        assert err.strip().splitlines()[-1].startswith(f"attnlab: config error: {key}="), err
        assert "Traceback" not in err
        assert first.poll() is None  # the first trains on, alone
    _, run = the_run(tmp_path)  # one run, still the first's
    assert run.info.status == "RUNNING"
    first.kill()
    first.wait()
    finish(train(tmp_path, longer, "resume=auto"))
    _, resumed = the_run(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"


def _resumable_folder(tmp_path: Path, client: MlflowClient) -> tuple[Path, str]:
    """A folder as a killed run leaves it: its run id and checkpoints, the run unfinished."""
    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    run_id = client.create_run(client.create_experiment("resumable")).info.run_id
    (folder / RUN_ID_FILE).write_text(run_id)
    torch.save({"global_step": 10}, folder / "checkpoints" / "epoch000.ckpt")
    torch.save({"global_step": 14}, folder / LAST_CHECKPOINT)
    return folder, run_id


def test_a_truncated_last_checkpoint_resumes_from_the_newest_that_can_be_read(
    tracking_uri, tmp_path
):
    from attnlab.core.errors import ConfigError
    from attnlab.training.resume import unfinished_resume_point

    folder, run_id = _resumable_folder(tmp_path, MlflowClient(tracking_uri))
    whole = (folder / LAST_CHECKPOINT).read_bytes()
    (folder / LAST_CHECKPOINT).write_bytes(whole[: len(whole) // 2])
    point = unfinished_resume_point(tracking_uri, folder, "resume")
    assert point.run_id == run_id and point.checkpoint.name == "epoch000.ckpt"
    (folder / "checkpoints" / "epoch000.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"resume='.*last.ckpt' is not allowed: a checkpoint"):
        unfinished_resume_point(tracking_uri, folder, "resume")


def test_a_folder_whose_mlflow_run_was_deleted_starts_a_new_run(tracking_uri, tmp_path):
    from attnlab.training.resume import unfinished_resume_point

    client = MlflowClient(tracking_uri)
    folder, run_id = _resumable_folder(tmp_path, client)
    assert unfinished_resume_point(tracking_uri, folder, "resume").run_id == run_id
    client.delete_run(run_id)
    assert unfinished_resume_point(tracking_uri, folder, "resume") is None


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """An 8 MiB tmpfs: a disk that fills up (mounting needs root, as CI and this machine are)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.slow
def test_a_full_disk_fails_the_run_in_one_line_and_it_resumes_once_there_is_room(small_disk):
    """The disk of the run folder fills up after the first epoch: the next checkpoint cannot
    be written; the run ends FAILED with one line naming the file, exit 1, the first epoch's
    checkpoints intact and no temporary file left; with room again, resume=auto finishes it."""
    run_dir = small_disk / "run"
    common = [
        "experiment=digits_mlp", "trainer.max_epochs=3", "callbacks.early_stopping=null",
        "callbacks.progress_bar=null", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    fill = ["+callbacks.fill._target_=helpers.fill_disk.FillDisk"]
    fill.append(f"+callbacks.fill.folder={small_disk}")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "attnlab.cli", "train"]
    full = subprocess.run([*cli, *common, *fill], env=env, capture_output=True, text=True)
    assert full.returncode == 1, full.stderr[-3000:]
    assert full.stderr.strip().splitlines()[-1] == (
        f"attnlab: no space left on the device writing {run_dir}/checkpoints/last.ckpt: "
        "free some, or write elsewhere"
    )
    checkpoints = run_dir / "checkpoints"
    assert not list(checkpoints.glob(".*.tmp"))  # nothing half-written
    state = torch.load(checkpoints / "last.ckpt", weights_only=True, map_location="cpu")
    assert state["epoch"] == 0  # the first epoch's, whole
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    assert run.info.status == "FAILED"

    (small_disk / "filler").unlink()
    resumed = subprocess.run(
        [*cli, *common, "resume=auto"], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (run,) = client.search_runs([client.get_experiment_by_name("digits_mlp").experiment_id])
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 3
