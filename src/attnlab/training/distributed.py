"""One Hydra job on several processes: Lightning's DDP launcher made to fit Hydra runs and sweeps.

Lightning's ``ddp`` strategy starts ranks 1..N-1 by re-running the command line
(``_SubprocessScriptLauncher``). Under ``-m`` that command is the whole sweep, and the launcher's
environment variables (``LOCAL_RANK``, ``MASTER_PORT`` ...) and process group outlive the job, so
the next job of a multirun would think its processes were started externally and join a dead
group. :func:`launching_job` hands the children this job's own overrides and output directory and
cleans up afterwards; :func:`is_global_zero` tells a process started by any launcher (Lightning,
torchrun, SLURM) whether it is the one that talks to MLflow.

A rank that dies ends its job, not the sweep around it (:mod:`attnlab.training.launcher`), and
:func:`launching_job` leaves no rank of its job behind. torch is imported by the functions that
use it: the config's resolvers (:func:`job_log_name`, :func:`launch_token`) load without it.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from omegaconf import DictConfig, ListConfig, read_write

if TYPE_CHECKING:
    from torch import nn

# Set by Lightning's subprocess launcher in the launching process itself.
LAUNCHER_ENV = (
    "MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE", "OMP_NUM_THREADS",
)  # fmt: skip
EXIT_GRACE_S = 60  # how long the ranks of a finished job may take to exit before they are killed


def is_global_zero() -> bool:
    """Whether this process is global rank 0 (or not part of a distributed launch)."""
    env = os.environ
    if "RANK" in env:  # torchrun
        return env["RANK"] == "0"
    if "LOCAL_RANK" in env:  # Lightning's launcher (its children inherit any SLURM_PROCID)
        return env.get("NODE_RANK", "0") == "0" and env["LOCAL_RANK"] == "0"
    return env.get("SLURM_PROCID", "0") == "0"  # srun's tasks


def process_rank() -> str:
    """``node/local`` rank as the launcher set it, e.g. ``0/1``; ``0/0`` outside DDP."""
    env = os.environ
    node = env.get("NODE_RANK", env.get("GROUP_RANK", env.get("SLURM_NODEID", "0")))
    local = env.get("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    return f"{node}/{local}"


def job_log_name(base: str) -> str:
    """Hydra's job name, which names the log file: ``base`` for global rank 0 and outside DDP,
    ``<base>_rank_N`` for rank N started by torchrun or srun, which share rank 0's folder.
    (Lightning's own launcher names its children ``<base>_ddp_process_N`` by override.)"""
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))
    return base if rank == "0" else f"{base}_rank_{rank}"


_PROCESS_TOKEN = secrets.token_hex(4)


def launch_token() -> str:
    """A name part that tells apart launches started in the same second, shared by all processes
    of one launch: output folders are ``<date>_<time>_<token>``.

    torchrun's ranks share the rendezvous id (or, without one, the master port, unique per host),
    srun's tasks the job and step ids; any other process draws its own random token.
    """
    env = os.environ
    if "RANK" in env:  # torchrun
        run_id = env.get("TORCHELASTIC_RUN_ID", "none")
        return run_id[:8] if run_id != "none" else f"port{env.get('MASTER_PORT', '0')}"
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env:  # srun
        return f"slurm{env['SLURM_JOB_ID']}.{env.get('SLURM_STEP_ID', '0')}"
    return _PROCESS_TOKEN


def world_size(trainer_cfg: DictConfig) -> int:
    """Processes in the run as the trainer config asks for them (``devices: auto`` counts)."""
    import torch

    devices = trainer_cfg.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        gpu = trainer_cfg.get("accelerator") in ("gpu", "cuda", "auto")
        count = torch.cuda.device_count() if gpu and torch.cuda.is_available() else 1
    elif isinstance(devices, ListConfig | list):  # device indices
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:  # "0,1"
        count = len([index for index in devices.split(",") if index.strip()])
    else:
        count = int(devices)
    return count * int(trainer_cfg.get("num_nodes", 1))


def _child_argv(overrides: list[str]) -> list[str]:
    """``sys.argv`` from which Lightning builds a child's command: this job, not the sweep.

    Lightning runs ``python -m <__main__'s module> argv[1:]`` or, for a console script,
    ``python argv[0] argv[1:]``.
    """
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name == "attnlab.training.train":
        return [sys.argv[0], *overrides]
    if spec is not None:  # python -m attnlab.cli train ...
        return [sys.argv[0], "train", *overrides]
    return [sys.orig_argv[1], "train", *overrides]  # the ``attnlab`` console script


@contextmanager
def leaving_process_group() -> Iterator[None]:
    """Around the job of a rank that launched no other (Lightning's children, every rank of
    torchrun or srun): the process group is destroyed when the job ends.

    Left to the interpreter's exit, a gloo group aborts the process now and then ("terminate
    called without an active exception", SIGABRT; 6 of 60 two-rank exits on this machine,
    0 of 38 after destroying the group first), which a launcher reads as a rank that died.
    """
    import torch

    try:
        yield
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@contextmanager
def launching_job(output_dir: str, trainer) -> Iterator[None]:
    """Around one Hydra job in the launching process (rank 0).

    Children started inside re-run this job's overrides into ``output_dir`` (Lightning passes
    ``hydra.run.dir``, ``hydra.output_subdir=null``); afterwards they are given
    EXIT_GRACE_S to exit (none after a failure) and killed, and the launcher's environment,
    thread count and process group are reset, so the next job launches its own children.
    """
    import torch
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    saved = sys.argv, hydra_cfg.run.dir, {k: os.environ.get(k) for k in LAUNCHER_ENV}
    threads = torch.get_num_threads()
    sys.argv = _child_argv(list(hydra_cfg.overrides.task))
    with read_write(hydra_cfg):
        hydra_cfg.run.dir = output_dir
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        watcher = getattr(trainer.strategy.launcher, "watcher", None)  # attnlab.training.launcher's
        if watcher:
            watcher.close(EXIT_GRACE_S if succeeded else 0)
        sys.argv = saved[0]
        with read_write(hydra_cfg):
            hydra_cfg.run.dir = saved[1]
        for name, value in saved[2].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch.set_num_threads(threads)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def uses_batchnorm(model: nn.Module) -> bool:
    from torch.nn.modules.batchnorm import _BatchNorm

    return any(isinstance(m, _BatchNorm) for m in model.modules())
