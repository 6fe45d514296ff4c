"""The run's metric logger: Lightning's MLFlowLogger, one batch a logged step, and every
value the tracking store did not take kept for later (registered as ``logger=mlflow``)."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import MLFlowLogger
from mlflow.utils.validation import MAX_METRICS_PER_BATCH

from attnlab.core.errors import ConfigError, TrackingUnreachable
from attnlab.core.registry import Component, Settings, add

TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


@dataclass
class MLflowLoggerSettings:
    """The keys of Lightning's MLFlowLogger that attnlab sets; it opens the run itself."""

    experiment_name: str = "attnlab"
    tracking_uri: str = "sqlite:///mlflow.db"
    log_model: bool = True
    run_name: str | None = None
    # false: metrics are written by MLflow's background thread, not in the training loop (a
    # SQLite commit costs ~10-50 ms, several per epoch); ending the run waits for the queue.
    synchronous: bool = False


def check_logger(c: Settings) -> None:
    """A tracking URI MLflow can open and a named experiment."""
    parsed = urlparse(c.tracking_uri)
    scheme = parsed.scheme.split("+")[0]
    ok = scheme in TRACKING_SCHEMES and (parsed.netloc or parsed.path)
    if scheme == "sqlite":
        ok = c.tracking_uri.startswith("sqlite:///") and len(c.tracking_uri) > 10
    if not ok:
        c.fail(
            "tracking_uri",
            f"a URI with scheme {', '.join(TRACKING_SCHEMES)} (e.g. sqlite:///mlflow.db)",
        )
    if not c.experiment_name.strip():
        c.fail("experiment_name", "a non-empty name")


UNLOGGED_FILE = "unlogged_metrics.jsonl"  # in a run's folder: values the store did not take
MAX_PENDING_BATCHES = 1000  # batches in flight to the store before logging waits for the oldest
BUFFER_VARIABLE = "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"


def check_async_logging_buffer() -> None:
    """MLflow's logging thread dies on a ``MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS`` that is not a
    whole number, and the run would then wait for it forever; refuse it before the run starts.

    attnlab leaves the variable unset: buffered, MLflow merges the queued batches into one
    and, when the store refuses it, marks only the merged batch failed (its ``RunBatch.complete``
    completes the merged-in ones without their exception), so :class:`RunLogger` could not keep
    what the store refused.
    """
    value = os.environ.get(BUFFER_VARIABLE)
    if value is not None and not value.strip().isdigit():
        raise ConfigError(BUFFER_VARIABLE, value, "a whole number of seconds (environment)")


class RunLogger(MLFlowLogger):
    """Lightning's MLFlowLogger that sends one batch a logged step and keeps every value the
    tracking store did not take.

    Lightning drops what ``log_batch`` returns, so a batch that MLflow's background queue fails
    to write (a server down for longer than the client's retries) is lost with one ERROR line.
    Here each batch is held until the store answers; one it refused is appended to
    ``unlogged`` (JSON lines: key, value, timestamp, step) and training goes on. When fitting
    ends, the file is written to the run; if the store still refuses it, the run stops with
    :class:`~attnlab.core.errors.TrackingUnreachable` naming the file, before the final checkpoint
    upload, and a resumed run writes it first (see :meth:`replay_unlogged`).

    With ``ends_run=False`` the run is left open when Lightning finalizes the logger (after
    fit, test and validate alike), for whoever opened it to end it once
    (:func:`~attnlab.tracking.mlflow_run.mlflow_run`): each ending joins MLflow's logging
    thread, which notices the stop only when its one-second wait on an empty queue runs out.
    """

    def __init__(
        self, *args: Any, unlogged: str | None = None, ends_run: bool = True, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.unlogged = Path(unlogged) if unlogged else None
        self.ends_run = ends_run
        self.store_refused = False  # the kept values could not be written at the end
        self._held: list = []  # the Metrics of the step logged last, not yet sent
        self._pending: deque[tuple[Any, list]] = deque()  # (RunOperations, its Metrics)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Hold the values of one step (each with the time it was logged) and send them as one
        batch when a value of another step arrives, a checkpoint is saved or fitting ends:
        Lightning logs a step's values in several calls (the loss, the learning rates, the
        epoch's validation and training values), and each batch costs the store a
        transaction, in a thread that shares the interpreter with training."""
        from mlflow.entities import Metric

        step = step or 0
        if self._held and self._held[0].step != step:
            self.send_held()
        now = int(time.time() * 1000)
        held = {metric.key: metric for metric in self._held}
        held.update({key: Metric(key, float(value), now, step) for key, value in metrics.items()})
        self._held = list(held.values())

    def send_held(self) -> None:
        """Send the held values to the store (queued, unless logging is synchronous)."""
        from mlflow.exceptions import MlflowException

        batch, self._held = self._held, []
        if not batch:
            return
        try:
            operations = self.experiment.log_batch(
                run_id=self.run_id, metrics=batch, **self._log_batch_kwargs
            )
        except MlflowException:  # synchronous logging: the store refused it after its retries
            self._keep(batch)
            return
        if operations is not None:
            self._pending.append((operations, batch))
            self._settle(wait=len(self._pending) > MAX_PENDING_BATCHES)

    def _settle(self, wait: bool) -> None:
        """Forget the batches the store has answered, keeping those it refused; with ``wait``,
        first wait for the oldest one."""
        while self._pending:
            operations, batch = self._pending[0]
            # RunOperations has no non-blocking check; its futures are concurrent.futures ones.
            futures = operations._operation_futures
            if not wait and not all(future.done() for future in futures):
                return
            wait = False
            self._pending.popleft()
            if any(future.exception() for future in futures):
                self._keep(batch)

    def _keep(self, batch: list) -> None:
        if self.unlogged is None:
            return
        lines = [
            json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step})
            for m in batch
        ]
        with self.unlogged.open("a") as file:
            file.write("".join(line + "\n" for line in lines))
            file.flush()
            os.fsync(file.fileno())

    def flush(self) -> None:
        """Send the held values and wait until the store has answered every batch."""
        self.send_held()
        while self._pending:
            self._settle(wait=True)

    def replay_unlogged(self) -> None:
        """Write the values of ``unlogged`` to the run and remove the file; raise
        TrackingUnreachable, the file kept, when the store refuses them."""
        from mlflow.entities import Metric

        if self.unlogged is None or not self.unlogged.is_file():
            return
        rows = [json.loads(line) for line in self.unlogged.read_text().splitlines() if line]
        metrics = [Metric(r["key"], r["value"], r["timestamp"], r["step"]) for r in rows]
        try:
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                chunk = metrics[start : start + MAX_METRICS_PER_BATCH]
                self.experiment.log_batch(run_id=self.run_id, metrics=chunk, synchronous=True)
        except Exception as error:
            self.store_refused = True
            raise TrackingUnreachable(self._tracking_uri, len(rows), self.unlogged) from error
        self.unlogged.unlink()

    def finalize(self, status: str = "success") -> None:
        """Settle the batches in flight and write the kept values, then upload the checkpoints
        and, if the logger ends the run, set its status as Lightning does; nothing more is sent
        to a store that refused."""
        if self.store_refused or not self._initialized:
            return
        self.flush()
        if status == "success":
            self.replay_unlogged()
        if self.ends_run:
            super().finalize(status)
        elif self._checkpoint_callback:  # the upload half of MLFlowLogger.finalize
            self._scan_and_log_checkpoints(self._checkpoint_callback)


add(Component("logger", "mlflow", RunLogger, check=check_logger, settings=MLflowLoggerSettings))
