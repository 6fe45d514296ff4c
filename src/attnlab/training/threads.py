"""Every process's thread budget: the cores it may run on, divided by the processes sharing them.

Two processes that each spin up one OpenMP thread per core on the same cores fall into
OpenMP's spin-waits: a small GRU step went from 0.07 s to 4.8 s with another job beside it
(measured on this project's 2-core machine). So DDP ranks, joblib workers and parallel sweep
processes each get ``cores // processes`` threads, set in one place (:func:`set_thread_budget`,
called at the start of every run) rather than by each launcher in its own way. Lightning's DDP
launcher and joblib's loky workers also export ``OMP_NUM_THREADS`` when it is unset; a smaller
value that a user or launcher already put there is kept.
"""

from __future__ import annotations

import os

# Thread-pool sizes read by OpenMP, MKL and OpenBLAS when they start; children inherit them.
POOL_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def thread_budget(processes: int, cores: int | None = None) -> int:
    """Threads for each of ``processes`` processes sharing ``cores`` (default: ours); >= 1."""
    cores = available_cores() if cores is None else cores
    budget = max(1, cores // max(1, processes))
    preset = os.environ.get("OMP_NUM_THREADS", "")
    if preset.isdigit() and int(preset) > 0:  # set by the user or a launcher: never exceed it
        budget = min(budget, int(preset))
    return budget


def set_thread_budget(processes: int = 1, cores: int | None = None) -> int:
    """Give this process (and the children it starts) its share of the cores; returns it.

    Sets torch's intra-op threads and the pool variables of :data:`POOL_ENV`, which children
    read when their thread pools start.
    """
    import torch

    budget = thread_budget(processes, cores)
    for name in POOL_ENV:
        os.environ[name] = str(budget)
    torch.set_num_threads(budget)
    return budget


def processes_sharing_cores(trainer_cfg, launcher_cfg=None) -> int:
    """Processes of one run on this machine (DDP ranks here) times the jobs a parallel launcher
    runs side by side (hydra/launcher=joblib's ``n_jobs``; -1 means one per core)."""
    from attnlab.training.distributed import world_size

    ranks = world_size(trainer_cfg) // max(1, int(trainer_cfg.get("num_nodes", 1)))
    jobs = int((launcher_cfg or {}).get("n_jobs", 1) or 1)
    if jobs < 0:  # joblib: -1 = every core, -2 = all but one, ...
        jobs = max(1, available_cores() + 1 + jobs)
    return max(1, ranks) * jobs


def set_run_thread_budget(trainer_cfg) -> int:
    """At the start of a run: this process's share of the cores, counting the run's own DDP
    ranks and, under ``-m``, the jobs the Hydra launcher runs at once; returns the budget."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    launcher = None
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        launcher = HydraConfig.get().launcher
    return set_thread_budget(processes_sharing_cores(trainer_cfg, launcher))
