"""Resuming a run that was killed or preempted, into the same MLflow run.

A tracked run keeps two things in its output folder: ``mlflow_run_id`` (written when its MLflow
run opens) and ``checkpoints/last.ckpt`` (:class:`LastCheckpoint`: every N training steps, at
each epoch end, and when SIGTERM or SIGUSR1 stops it). A run that starts in a folder holding
both, for a run that did not finish, continues from that checkpoint into that MLflow run. A
folder is reused by ``resume=auto`` (the newest folder of the same command, see
:func:`resume_folder`), by ``hydra.run.dir=FOLDER``, and by a requeued launcher job.

What makes the continuation exact: Lightning restores the weights, optimizer, schedulers and
loop counters; torchdata's StatefulDataLoader (the data modules' loaders) the position inside
the epoch and the shuffling generator; :class:`LastCheckpoint` the global random generators
(dropout); :class:`SkipLoggedSteps` keeps the metric history free of steps logged twice.
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info

from attnlab.core.errors import ConfigError, Preempted
from attnlab.tracking.logger import RunLogger

RUN_ID_FILE = "mlflow_run_id"
LAST_CHECKPOINT = Path("checkpoints", "last.ckpt")
# SIGUSR1: the warning SLURM sends before the end (--signal=USR1@120); SIGUSR2: submitit's
# (SUBMITIT_PREEMPT_SIGNAL), which hydra/launcher=slurm jobs get before a preemption or timeout.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@dataclass(frozen=True)
class ResumePoint:
    run_id: str
    checkpoint: Path


def resume_point(output_dir: str | Path | None) -> ResumePoint | None:
    """The run id and last checkpoint that ``output_dir`` holds, if it holds both."""
    if not output_dir:
        return None
    folder = Path(output_dir)
    run_id_file, checkpoint = folder / RUN_ID_FILE, folder / LAST_CHECKPOINT
    if not (run_id_file.is_file() and checkpoint.is_file()):
        return None
    return ResumePoint(run_id_file.read_text().strip(), checkpoint)


OWNER_LOCK = ".attnlab.lock"  # held by the process training in the folder, while it lives


def _owner_lock(folder: Path):
    from filelock import FileLock

    return FileLock(folder / OWNER_LOCK, timeout=0, is_singleton=False)


@contextmanager
def owning(folder: str | Path, key: str) -> Iterator[None]:
    """Train in ``folder`` only while no other living process does.

    The lock is an OS file lock, so the kernel frees it when its process dies, SIGKILL
    included: a run started in a folder whose trainer is alive is refused in one line
    naming ``key`` (``resume`` or ``hydra.run.dir``), and one whose trainer is dead takes over.
    """
    from filelock import Timeout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _owner_lock(folder)
    try:
        lock.acquire()
    except Timeout:
        allowed = "a folder no running process trains in; another process is training in it now"
        raise ConfigError(key, str(folder), allowed) from None
    try:
        yield
    finally:
        lock.release()


def in_use(folder: str | Path) -> bool:
    """Whether a living process holds ``folder``'s lock (trains in it) now."""
    from filelock import Timeout

    folder = Path(folder)
    if not (folder / OWNER_LOCK).exists():
        return False
    lock = _owner_lock(folder)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False


def unfinished_resume_point(
    tracking_uri: str, output_dir: str | Path | None, key: str
) -> ResumePoint | None:
    """The resume point of ``output_dir`` if its MLflow run exists and did not finish, with a
    checkpoint that can be read (:func:`readable_checkpoint`); a deleted run starts anew."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    point = resume_point(output_dir)
    if point is None:
        return None
    try:
        run = MlflowClient(tracking_uri).get_run(point.run_id)
    except MlflowException:  # another store, or a run deleted for good: start a new run here
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        rank_zero_info(f"the MLflow run {point.run_id} of {output_dir} was deleted: a new run")
        return None
    if run.info.status == "FINISHED":
        return None
    return ResumePoint(point.run_id, readable_checkpoint(Path(output_dir), key))


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be loaded as a checkpoint (truncated, corrupted), or None."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None


def readable_checkpoint(folder: Path, key: str) -> Path:
    """``checkpoints/last.ckpt``, or if it cannot be read the newest checkpoint of the folder
    that can (an epoch's: the steps after it are trained again); ConfigError naming
    ``last.ckpt`` when none can."""
    last = folder / LAST_CHECKPOINT
    why = _unreadable(last)
    if why is None:
        return last
    others = [path for path in last.parent.glob("*.ckpt") if path != last]
    for other in sorted(others, key=lambda path: path.stat().st_mtime, reverse=True):
        if _unreadable(other) is None:
            rank_zero_info(f"{last} cannot be read ({why}): resuming from {other}")
            return other
    raise ConfigError(key, str(last), f"a checkpoint that can be read ({why}), or another one")


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it over
    ``path``: a reader (or a process started after a crash) sees the old file or the new one,
    never a part of one. The rename is atomic within one filesystem, hence the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:  # a full disk: say which file could not be written
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


def write_run_id(output_dir: str | Path, run_id: str) -> None:
    write_atomically(Path(output_dir, RUN_ID_FILE), run_id.encode())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch.save checkpoints, written to local folders by :func:`write_atomically`.

    Why not Lightning's own: it writes through an fsspec transaction, whose local file is made
    in ``$TMPDIR`` and moved into place with ``shutil.move``. When ``$TMPDIR`` is on another
    filesystem than the checkpoint (a local /tmp, checkpoints on NFS or tmpfs) that move is a
    copy, and a kill during the copy leaves a truncated ``last.ckpt``; nothing is fsynced.
    Remote paths (s3://, ...) are left to Lightning.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_atomically(Path(path), buffer.getvalue())


def random_states() -> dict[str, Any]:
    """The global random generators, as plain values and tensors (loadable weights-only)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class LastCheckpoint(L.Callback):
    """``<dirpath>/last.ckpt``: every ``every_n_train_steps`` steps, at each epoch end, and at
    the end of the step in which SIGTERM, SIGUSR1 or SIGUSR2 arrives while fitting; training stops
    with :class:`Preempted` before the next step, once that step's metrics are logged. The
    checkpoint also holds the global random generators.

    Why not Lightning's ModelCheckpoint: it saves either every N steps or every N epochs, not
    both; and its ``save_on_exception`` saves on any exception, a diverged (NaN) step included,
    where only a preemption should leave a state to continue from. Lightning's own SIGTERM
    handling (``SIGTERMException``) saves nothing and treats SIGUSR1 only under SLURM.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 200):
        self.path = Path(dirpath, LAST_CHECKPOINT.name)
        self.every_n_train_steps = every_n_train_steps
        self.received: int | None = None  # the signal, once one arrived
        # the handlers from before Lightning's and ours: chained once the state is saved
        self.outer = {signum: signal.getsignal(signum) for signum in PREEMPTION_SIGNALS}
        self._saved_step = -1
        self._random_states: dict[str, Any] | None = None  # of the checkpoint resumed from

    def state_dict(self) -> dict[str, Any]:
        return {"random": random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._random_states = state_dict["random"]  # set when training starts again

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        """Before any checkpoint is written, the values logged so far go to the store: a run
        resumed from it does not log them again. A checkpoint of a finished epoch resumes into
        a new epoch, as uninterrupted training does. torchdata marks its loader finished only
        once it ran out of batches, which it does not when ``trainer.limit_train_batches`` ends
        the epoch first."""
        for logger in trainer.loggers:
            if isinstance(logger, RunLogger):
                logger.send_held()
        progress = trainer.fit_loop.epoch_loop.batch_progress.current
        if progress.processed < trainer.num_training_batches:
            return
        for state in checkpoint["loops"]["fit_loop"]["state_dict"].get("combined_loader", []):
            if "_iterator_finished" in state:
                state["_iterator_finished"] = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After a resume: the loader's position and the random generators; then the signal
        handlers (Lightning's own are restored when fitting ends)."""
        fit_loop = trainer.fit_loop
        if fit_loop._combined_loader_states_to_load:
            # Lightning 2.6 loads the loader states (the fit loop's "combined_loader") only
            # when it builds the train loader after reading the checkpoint. A schedule that
            # asks for trainer.estimated_stepping_batches (warmup_cosine) makes it build the
            # loader before, and resuming from an epoch end skips them: the states would be
            # dropped and the data order would restart. Load them, and iterate again.
            fit_loop._combined_loader._load_state_dicts(fit_loop._combined_loader_states_to_load)
            fit_loop._combined_loader_states_to_load = []
            iter(fit_loop._data_fetcher)
        if self._random_states is not None:
            set_random_states(self._random_states)
            self._random_states = None
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for signum in PREEMPTION_SIGNALS:
                signal.signal(signum, self._note)

    def _note(self, signum: int, frame: Any) -> None:
        self.received = signum  # acted on at the end of the step, when the state is whole

    def _preempted(self, trainer: L.Trainer) -> bool:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank stops at the same step
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
            self.received = self.received or (signal.SIGTERM if stop else None)
        return stop

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._preempted(trainer) or trainer.global_step % self.every_n_train_steps == 0:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        self._stop_if_preempted(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_if_preempted(trainer)  # the signal came in the last step: no test

    def _stop_if_preempted(self, trainer: L.Trainer) -> None:
        if self.received is not None:
            name = signal.Signals(self.received).name
            rank_zero_info(f"{name}: {self.path} holds step {self._saved_step}; stopping")
            raise Preempted(self.received, self.outer.get(self.received))

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self._saved_step and not trainer.sanity_checking:
            trainer.save_checkpoint(self.path, weights_only=False)  # the whole state: a resume
            self._saved_step = trainer.global_step


class SkipLoggedSteps(RunLogger):
    """attnlab's logger for a resumed run: it first writes the values the store did not take
    before (the run folder's unlogged file), then skips the values of steps the run already
    holds (logged after its last checkpoint, before it was killed), so each metric's history
    has one value per step."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.replay_unlogged()
        client = self.experiment
        run = client.get_run(self.run_id)
        self.logged_until = {
            key: max(point.step for point in client.get_metric_history(self.run_id, key))
            for key in run.data.metrics
        }

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        fresh = {
            key: value
            for key, value in metrics.items()
            if step is None or step > self.logged_until.get(key, -1)
        }
        if fresh:
            super().log_metrics(fresh, step)


def resume_folder(resume: str | None, tracking_uri: str | None, new_folder: str) -> str:
    """The resolver behind ``hydra.run.dir``: ``new_folder``, or with ``resume=auto`` the newest
    folder beside it of a run of the same overrides (but ``resume``) that holds a resume point
    and whose MLflow run did not finish."""
    if resume != "auto":
        return new_folder
    from hydra.core.hydra_config import HydraConfig
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from omegaconf import OmegaConf

    def command(overrides) -> list[str]:
        return sorted(o for o in overrides if not o.lstrip("+~").startswith("resume="))

    wanted = command(HydraConfig.get().overrides.task)
    runs = Path(new_folder).parent
    candidates = sorted(runs.glob("*/.hydra/overrides.yaml"), key=lambda p: p.stat().st_mtime)
    client = MlflowClient(tracking_uri) if tracking_uri else None
    for overrides in reversed(candidates):
        folder = overrides.parent.parent
        point = resume_point(folder)
        if point is None or command(OmegaConf.load(overrides)) != wanted or client is None:
            continue
        try:
            finished = client.get_run(point.run_id).info.status == "FINISHED"
        except MlflowException:
            continue
        if finished:
            continue
        if in_use(folder):  # refused here, before Hydra writes its records into the folder
            allowed = f"no living process training in {folder}, the run it would resume"
            raise ConfigError("resume", resume, allowed)
        return str(folder)
    return new_folder
