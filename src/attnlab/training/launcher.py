"""Lightning's ``ddp`` launcher, made safe for a process that runs many jobs (a sweep).

Lightning's ``ddp`` starts ranks 1..N-1 by re-running the command line, and its observer thread
SIGKILLs the launching process when one of them dies. Under ``attnlab train -m`` the launching
process is the whole sweep: the sweep died with the trial, and a rank the next trial had just
started waited for a peer that was gone. :class:`WatchedDDPStrategy` launches the same processes
and watches them with :class:`RankWatcher` instead, which kills the other ranks and raises
:class:`RankFailed` in the launching job only, so the trial fails and the sweep goes on.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from lightning.fabric.strategies.launchers.subprocess_script import _set_num_threads_if_needed
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

log = logging.getLogger(__name__)

# The signal the watcher sends the launching thread: one no library of a training run uses
# (SIGTERM and SIGUSR1 mean preemption, SIGUSR2 is submitit's warning).
RANK_FAILED_SIGNAL = getattr(signal, "SIGRTMIN", signal.SIGALRM)


class RankFailed(RuntimeError):
    """A rank that this process launched died; its job ends with this error."""


def _exit_reason(code: int) -> str:
    """A Popen return code in words: ``exit code 1``, ``signal SIGABRT``."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class RankWatcher(threading.Thread):
    """Polls the ranks one launch started. When one exits with an error, it kills the others
    and, while the launching thread is inside :meth:`raising`, interrupts it with
    :class:`RankFailed` (a signal, so a rank stalled in ``sleep`` or a wait wakes too)."""

    def __init__(self, ranks: list[subprocess.Popen], interval: float = 1.0):
        super().__init__(daemon=True, name="attnlab-rank-watcher")
        self.ranks, self.interval = ranks, interval
        self.failure: str | None = None
        self._stopping = threading.Event()
        self._armed_thread: int | None = None

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            codes = [rank.poll() for rank in self.ranks]
            failed = [(i, code) for i, code in enumerate(codes, start=1) if code]
            if failed:
                number, code = failed[0]
                pid = self.ranks[number - 1].pid
                self.failure = f"rank {number} (pid {pid}) died with {_exit_reason(code)}"
                log.error("%s; stopping the other ranks and this job", self.failure)
                self.kill()
                if self._armed_thread is not None:
                    signal.pthread_kill(self._armed_thread, RANK_FAILED_SIGNAL)
                return
            if all(code == 0 for code in codes):
                return

    def kill(self) -> None:
        for rank in self.ranks:
            if rank.poll() is None:
                rank.kill()
        for rank in self.ranks:
            rank.wait()

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Inside: a rank's death raises RankFailed here (main thread only; elsewhere the
        next collective fails on its own, within the process group's timeout)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def rank_failed(signum: int, frame: Any) -> None:
            raise RankFailed(self.failure or "a rank died")

        previous = signal.signal(RANK_FAILED_SIGNAL, rank_failed)
        self._armed_thread = threading.get_ident()
        try:
            if self.failure:  # died between two launches (fit, then test)
                raise RankFailed(self.failure)
            yield
        finally:
            self._armed_thread = None
            signal.signal(RANK_FAILED_SIGNAL, previous)

    def close(self, grace_s: float) -> None:
        """Stop watching; give the ranks ``grace_s`` seconds to exit, then kill the rest."""
        self._stopping.set()
        self.join()
        for rank in self.ranks:
            try:
                code = rank.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                log.warning("rank pid %d still running after the job: killed", rank.pid)
                continue
            if code and not (self.failure and f"(pid {rank.pid})" in self.failure):
                log.warning("rank pid %d exited with %s", rank.pid, _exit_reason(code))
        self.kill()


class _WatchedLauncher(_SubprocessScriptLauncher):
    """Lightning's launcher of ``ddp`` (re-runs the command line per rank) with a RankWatcher
    in place of Lightning's observer. ``launch`` repeats Lightning's four lines, since the
    observer is started inside it."""

    watcher: RankWatcher | None = None

    def launch(self, function: Callable, *args: Any, trainer=None, **kwargs: Any) -> Any:
        self.cluster_environment.validate_settings(self.num_processes, self.num_nodes)
        if not self.cluster_environment.creates_processes_externally:
            self._call_children_scripts()
            self.watcher = RankWatcher(self.procs)
            self.watcher.start()
        _set_num_threads_if_needed(num_processes=self.num_processes)
        with self.watcher.raising() if self.watcher else nullcontext():
            return function(*args, **kwargs)


class WatchedDDPStrategy(DDPStrategy):
    """``ddp`` whose launcher survives a dead rank (see the module's docstring)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is _SubprocessScriptLauncher:
            self._launcher = _WatchedLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes
            )


def ddp_strategy(name: str, processes: int, timeout_s: int) -> Any:
    """Lightning's strategy ``name`` for ``processes`` processes: the ``ddp*`` names (and
    ``auto`` over several processes, which Lightning makes ``ddp``) become a WatchedDDPStrategy
    with the registry's options and a process-group timeout of ``timeout_s`` (rendezvous and
    every collective); any other name is returned as it is."""
    from datetime import timedelta

    from lightning.pytorch.strategies import StrategyRegistry

    if name == "auto" and processes > 1:
        name = "ddp"
    # The registered class and options; StrategyRegistry.get() would build the strategy.
    entry = StrategyRegistry[name] if name in StrategyRegistry else None  # noqa: SIM401
    if not entry or entry["strategy"] is not DDPStrategy:
        return name
    return WatchedDDPStrategy(**entry["init_params"], timeout=timedelta(seconds=timeout_s))
