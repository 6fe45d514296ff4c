"""MLflow tracking of one run: flat params, tags, the resolved config, and the run's status.

Lightning's MLFlowLogger logs metrics and checkpoints into the run opened here; this module
opens and closes it so that a failure anywhere (building, fitting, testing, plotting, Ctrl-C)
ends the run FAILED instead of leaving it RUNNING.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf

from attnlab.errors import ConfigError, TrackingUnreachable, chain, mask_secrets
from attnlab.registry import Component, Settings, add
from attnlab.run_names import describe, job_pairs, swept_keys, trial_name
from attnlab.ui import prepare_experiment

# The packages whose versions every run records (tags version.<name>): what a figure came from.
VERSIONED = {
    "attnlab": "attnlab", "torch": "torch", "lightning": "lightning", "mlflow": "mlflow",
    "optuna": "optuna", "hydra": "hydra-core", "torchmetrics": "torchmetrics",
}  # fmt: skip
EVALUATES_TAG = "attnlab.evaluates"  # on a run of attnlab eval: the id of the run it tests
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


class RunLogger(MLFlowLogger):
    """Lightning's MLFlowLogger that sends one batch a logged step and keeps every value the
    tracking store did not take.

    Lightning drops what ``log_batch`` returns, so a batch that MLflow's background queue fails
    to write (a server down for longer than the client's retries) is lost with one ERROR line.
    Here each batch is held until the store answers; one it refused is appended to
    ``unlogged`` (JSON lines: key, value, timestamp, step) and training goes on. When fitting
    ends, the file is written to the run; if the store still refuses it, the run stops with
    :class:`~attnlab.errors.TrackingUnreachable` naming the file, before the final checkpoint
    upload, and a resumed run writes it first (see :meth:`replay_unlogged`).
    """

    def __init__(self, *args: Any, unlogged: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.unlogged = Path(unlogged) if unlogged else None
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
        and set the status as Lightning does; nothing more is sent to a store that refused."""
        if self.store_refused:
            return
        if self._initialized:
            self.flush()
            if status == "success":
                self.replay_unlogged()
        super().finalize(status)


add(Component("logger", "mlflow", RunLogger, check=check_logger, settings=MLflowLoggerSettings))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {"a.b.0": leaf}; an empty container is kept as its own leaf."""
    if isinstance(tree, dict) and tree:
        items = tree.items()
    elif isinstance(tree, list) and tree:
        items = enumerate(tree)
    else:
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def config_params(cfg: DictConfig, output_dir: str | None = None) -> dict[str, str]:
    """Every key of the resolved config as a dotted MLflow param, values cut to MLflow's limit.

    Paths inside the run's own output folder are left out: they differ between any two runs
    and would fill MLflow's "show diff only" compare view (the folder is the tag output_dir).
    """
    resolved = OmegaConf.to_container(cfg, resolve=True)
    flat = flatten(resolved).items()
    params = {key: mask_secrets(str(value))[:MAX_PARAM_VAL_LENGTH] for key, value in flat}
    if output_dir:
        folder = Path(output_dir)
        params = {k: v for k, v in params.items() if not Path(v).is_relative_to(folder)}
    return params


def log_masked_folder(folder: Path, artifact_path: str) -> None:
    """Log the text files of ``folder`` (Hydra's records: config, overrides) with the
    passwords of URLs in them masked, into the active run."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = Path(artifact_path, path.relative_to(folder)).as_posix()
            mlflow.log_text(mask_secrets(path.read_text(errors="replace")), name)


def git_commit(directory: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """Where, with what and by which process a run ran: commit, command, host, pid, versions."""
    import torch

    commit = git_commit(Path(__file__).parent)
    tags = {
        "git_commit": commit,
        "mlflow.source.git.commit": commit,  # MLflow's own tag: the UI links the run's source
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "host": socket.gethostname(),
        "attnlab.pid": str(os.getpid()),  # with host: `attnlab runs` tells a dead owner
        "task_name": cfg.task_name,
        "torch.threads": str(torch.get_num_threads()),  # after the run's thread budget
        **{f"version.{name}": version(package) for name, package in VERSIONED.items()},
    }
    if HydraConfig.initialized():  # the job: all its overrides, and its number in a multirun
        hydra = HydraConfig.get()
        tags["hydra.overrides"] = shlex.join(hydra.overrides.task)
        if hydra.mode == RunMode.MULTIRUN:
            tags["hydra.job_num"] = str(hydra.job.num)
    if cfg.get("eval_of_run"):  # attnlab eval: the run it tests
        tags[EVALUATES_TAG] = cfg.eval_of_run
    tags.update({str(k): str(v) for k, v in (cfg.get("tags") or {}).items()})
    return {key: mask_secrets(value) for key, value in tags.items()}


def choice_params() -> dict[str, str]:
    """The option of each config group (``choices.model = rnn_classifier``): what a group
    override such as ``model=rnn_classifier`` changed, as one param."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {
        f"choices.{group}": str(option)
        for group, option in choices.items()
        if option is not None and not group.startswith("hydra")
    }


def distinguishing(cfg: DictConfig) -> list[tuple[str, Any]]:
    """What tells this run apart from its siblings: a trial's sampled values, the values a
    multirun swept, else the job's overrides (see attnlab.run_names)."""
    if not HydraConfig.initialized():
        return []
    hydra = HydraConfig.get()
    if cfg.get("trial"):  # the values it was given for the keys the sweep searches
        return [(key, OmegaConf.select(cfg, key)) for key in hydra.sweeper.get("params") or {}]
    swept = swept_keys(hydra.sweep.dir) if hydra.mode == RunMode.MULTIRUN else None
    return job_pairs(hydra.overrides.task, swept)


def run_name(cfg: DictConfig, pairs: list[tuple[str, Any]]) -> str:
    """The configured name, else ``trial-N`` and its sampled values, else what ``pairs`` set.

    Never MLflow's own random names: they come from Python's RNG, which seed_everything has
    just seeded, so they would repeat.
    """
    if cfg.logger.get("run_name"):
        return cfg.logger.run_name
    if cfg.get("trial"):
        return trial_name(cfg.trial.number, dict(pairs))
    return describe(pairs)


def compare_columns(pairs: list[tuple[str, Any]]) -> list[str]:
    """The params behind ``pairs``: a group's option is its ``choices.`` param."""
    groups = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    keys = [key for key, _ in pairs if not key.startswith("~")]
    return [f"choices.{key}" if key in groups else key for key in keys]


DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")  # MLflow's SQL stores
BACKEND_STORES = (
    "a reachable database (sqlite:///FILE, postgresql+psycopg://USER@HOST:PORT/DB, "
    "mysql://..., mssql://...)"
)


def check_tracking_store(key: str, uri: str) -> None:
    """Reach a database store or tracking server once, before any run starts.

    MLflow retries an unreachable store or server for minutes and then prints a traceback;
    this fails in seconds with one line naming ``key``. Folder stores, which MLflow 3 refuses
    unless ``MLFLOW_ALLOW_FILE_STORE=true``, fail here too; plugin stores, and SQLite files that
    do not exist yet, are left to MLflow.
    """
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("file", "") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        folder = "MLflow 3 refuses folder stores unless MLFLOW_ALLOW_FILE_STORE=true"
        raise ConfigError(key, uri, f"{BACKEND_STORES} or http(s)://SERVER; {folder}")
    if scheme in ("http", "https"):
        _check_server(key, uri)
    elif scheme == "sqlite" and not Path(uri.removeprefix("sqlite:///")).exists():
        _check_creatable(key, uri, Path(uri.removeprefix("sqlite:///")))  # MLflow creates it
    elif scheme.partition("+")[0] in DATABASE_SCHEMES:
        _check_database(key, uri)


def check_existing_store(key: str, uri: str) -> None:
    """For commands that only read runs: a store that exists (MLflow would create an empty
    SQLite file), reachable."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(key, uri, "an existing MLflow store; no such SQLite file")
    check_tracking_store(key, uri)


def _check_creatable(key: str, uri: str, path: Path) -> None:
    """A new file can be made at ``path``: its nearest existing folder is a writable folder."""
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a folder" if not existing.is_dir() else "not writable"
        raise ConfigError(key, uri, f"a SQLite file that can be created; {existing} is {why}")


def _check_server(key: str, uri: str) -> None:
    """The server answers /health, and lets this user in (a server with basic auth refuses a
    request without MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or with wrong ones)."""
    import base64
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as answer:
            answer.read()
    except OSError as error:
        reason = str(getattr(error, "reason", error))
        allowed = f"a reachable MLflow tracking server; GET /health failed: {reason}"
        raise ConfigError(key, uri, allowed) from None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    request = urllib.request.Request(
        f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    )
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            who = f"user {user!r}" if user else "no user"
            allowed = (
                f"a server that lets this user in ({who}: HTTP {error.code}); set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
            raise ConfigError(key, uri, allowed) from None


def _check_database(key: str, uri: str) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    shown = uri
    try:
        url = sqlalchemy.engine.make_url(uri)
        shown = url.render_as_string(hide_password=True)
        timeout = (
            {"connect_timeout": 10} if url.drivername.startswith(("postgresql", "mysql")) else {}
        )
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=timeout)
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except Exception as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        reason = reason.removeprefix("connection failed: ")  # psycopg's own prefix
        raise ConfigError(key, shown, f"{BACKEND_STORES}; connecting failed: {reason}") from None


def sqlite_store_lock(tracking_uri: str) -> AbstractContextManager:
    """A file lock next to a SQLite store while it may be created or migrated.

    MLflow creates and migrates a new SQLite store on first use; two jobs doing so at once (a
    parallel launcher's first jobs) fail with "duplicate column". Server stores need no lock.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    return FileLock(tracking_uri.removeprefix("sqlite:///") + ".lock")


def get_or_create_experiment(client: mlflow.MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when the store has none.

    Get-or-create on a shared store: another process (a second sweep worker, a parallel
    launcher's job) may create it between the lookup and the create, which then fails with
    RESOURCE_ALREADY_EXISTS; the experiment the other one made is read back instead.
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def retry_on_conflict(write: Callable[[], Any], attempts: int = 3) -> Any:
    """``write()``, done again when the store refuses it.

    MLflow sets a tag by reading it, then inserting or updating it: two processes that set the
    same new tag at once (two sweep workers finishing together, two jobs tagging their
    experiment) both insert, and the second insert fails on the unique key. The writes here
    are idempotent, so the loser simply writes again and updates what the winner inserted.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return write()
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside: SIGTERM (torchrun or SLURM stopping a job, ``docker stop``) raises SystemExit, so
    the run ends FAILED rather than RUNNING. Lightning's SIGTERM handler, installed at fit,
    runs first and then calls this one."""
    if threading.current_thread() is not threading.main_thread():  # signals reach main only
        yield
        return

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Lightning's launcher starts ranks > 0 as children of rank 0 after its run is open, so they
# inherit this variable. When a child fails, Lightning's process observer SIGKILLs rank 0, which
# then cannot end its run; the failing child ends it instead (``fail_rank_zero_run``).
RUN_ID_ENV = "ATTNLAB_MLFLOW_RUN_ID"


def fail_rank_zero_run(tracking_uri: str) -> None:
    """In a failing DDP child: end the run that its rank 0 opened FAILED (none: nothing)."""
    run_id = os.environ.get(RUN_ID_ENV)
    if run_id:
        mlflow.MlflowClient(tracking_uri).set_terminated(run_id, "FAILED")


# Keys the sweeper adds to each trial's job: which trial it is, not what it tries. A trial of a
# killed sweep that is run again is another trial of the same config, and resumes its run.
SWEEP_BOOKKEEPING = ("trial.", "tags.", "callbacks.optuna_pruning.")


def check_same_config(client: mlflow.MlflowClient, run_id: str, params: dict[str, str]) -> None:
    """Before resuming run ``run_id``: the config is the one it was started with."""
    logged = client.get_run(run_id).data.params
    changed = [
        key
        for key, value in params.items()
        if key != "resume" and not key.startswith(SWEEP_BOOKKEEPING)
        and key in logged and logged[key] != value
    ]  # fmt: skip
    if changed:
        key = changed[0]
        allowed = f"{logged[key]!r}, the value the run in this folder ({run_id}) started with"
        raise ConfigError(key, params[key], allowed)


@contextmanager
def mlflow_run(
    cfg: DictConfig, output_dir: str | None, resume_run_id: str | None = None
) -> Iterator[str]:
    """Open an MLflow run with params, tags and config, or reopen ``resume_run_id`` (RUNNING
    again, its tags updated); yield its id.

    The run ends FINISHED, KILLED when Optuna prunes it (a stopped trial, not a failure) or a
    signal preempts it (attnlab.resume: it can be resumed), and FAILED on any other exception,
    Ctrl-C and SIGTERM outside fitting included.
    """
    from optuna import TrialPruned

    from attnlab.resume import Preempted

    mlflow.set_tracking_uri(cfg.logger.tracking_uri)
    pairs = distinguishing(cfg)
    with sqlite_store_lock(cfg.logger.tracking_uri):
        experiment = mlflow.set_experiment(cfg.logger.experiment_name)
        minimize = cfg.objective.direction == "minimize"
        columns = compare_columns(pairs)
        retry_on_conflict(
            lambda: prepare_experiment(
                mlflow.MlflowClient(),
                experiment.experiment_id,
                columns,
                cfg.objective.metric,
                minimize,
            )
        )
    tags = run_tags(cfg)
    if output_dir:
        tags["output_dir"] = output_dir
    params = {**config_params(cfg, output_dir), **choice_params()}
    if resume_run_id:
        check_same_config(mlflow.MlflowClient(), resume_run_id, params)
    with _sigterm_raises():
        if resume_run_id:
            run = mlflow.start_run(run_id=resume_run_id, tags=tags)
        else:
            run = mlflow.start_run(run_name=run_name(cfg, pairs), tags=tags)
        try:
            if not resume_run_id:
                mlflow.log_params(params)
                mlflow.log_text(mask_secrets(OmegaConf.to_yaml(cfg, resolve=True)), "config.yaml")
                hydra_dir = Path(output_dir or "", ".hydra")
                if output_dir and hydra_dir.is_dir():
                    log_masked_folder(hydra_dir, "hydra")
            os.environ[RUN_ID_ENV] = run.info.run_id
            yield run.info.run_id
        except (TrialPruned, Preempted):
            mlflow.end_run("KILLED")
            raise
        except BaseException as error:
            if any(isinstance(cause, TrackingUnreachable) for cause in chain(error)):
                _end_run_without_retries("FAILED")  # the store has refused for minutes already
            else:
                mlflow.end_run("FAILED")
            raise
        finally:
            os.environ.pop(RUN_ID_ENV, None)
        mlflow.end_run("FINISHED")


def _end_run_without_retries(status: str) -> None:
    """End the active run with one request to its store; if that fails, the run stays as the
    store has it (RUNNING: ``resume=auto`` continues it)."""
    retries = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
    before = os.environ.get(retries)
    os.environ[retries] = "0"
    try:
        with suppress(Exception):
            mlflow.end_run(status)  # forgets the run before asking the store
    finally:
        if before is None:
            os.environ.pop(retries)
        else:
            os.environ[retries] = before


def record_finished_run(
    run_name: str,
    command: list[str],
    params: dict[str, str],
    metrics: dict[str, float],
    folder: Path,
    started_ms: int,
    extra_tags: dict[str, str] | None = None,
    experiment: str = "bench",
    tracking_uri: str | None = None,
) -> str:
    """A run of work done outside a training run (a benchmark, a claim's verdict): its params,
    metrics and every file of ``folder``, spanning from ``started_ms`` to now, in
    ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``); return its id. MlflowClient, because
    the fluent ``start_run`` stamps the start when the run is opened, after the work."""
    from mlflow.entities import Metric, Param, RunStatus

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with sqlite_store_lock(uri):
        client = mlflow.MlflowClient(uri)
        experiment_id = get_or_create_experiment(client, experiment)
    tags = {
        "git_commit": git_commit(Path(__file__).parent),
        "command": shlex.join(command),
        "host": socket.gethostname(),
        **(extra_tags or {}),
    }
    run_id = client.create_run(
        experiment_id, start_time=started_ms, tags=tags, run_name=run_name
    ).info.run_id
    status = RunStatus.FAILED
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(key, value, now, 0) for key, value in metrics.items()],
            params=[Param(key, value) for key, value in params.items()],
        )
        client.log_artifacts(run_id, str(folder))
        status = RunStatus.FINISHED
    finally:
        client.set_terminated(run_id, RunStatus.to_string(status))
    return run_id
