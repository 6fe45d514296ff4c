"""MLflow tracking of one run: flat params, tags, the resolved config, and the run's status.

Lightning's MLFlowLogger logs metrics and checkpoints into the run opened here; this module
opens and closes it so that a failure anywhere (building, fitting, testing, plotting, Ctrl-C)
ends the run FAILED instead of leaving it RUNNING.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from omegaconf import DictConfig, OmegaConf

from attnlab.core.errors import ConfigError, TrackingUnreachable, chain, mask_secrets
from attnlab.tracking.names import describe, job_pairs, swept_keys, trial_name
from attnlab.tracking.store import open_experiment, retry_on_conflict, sqlite_store_lock
from attnlab.tracking.views import prepare_experiment

# The packages whose versions every run records (tags version.<name>): what a figure came from.
VERSIONED = {
    "attnlab": "attnlab", "torch": "torch", "lightning": "lightning", "mlflow": "mlflow",
    "optuna": "optuna", "hydra": "hydra-core", "torchmetrics": "torchmetrics",
}  # fmt: skip
EVALUATES_TAG = "attnlab.evaluates"  # on a run of attnlab eval: the id of the run it tests


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


def attnlab_commit() -> str:
    """The commit of the checkout attnlab runs from ("unknown" for an installed wheel)."""
    return git_commit(Path(__file__).parent)


def provenance_tags(command: list[str] | None = None) -> dict[str, str]:
    """Where any run (training, sweep, benchmark, verdict) came from: the commit, the command
    (default: this process's), the host and the versions of the packages behind its figures."""
    commit = attnlab_commit()
    command = command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]]
    return {
        "git_commit": commit,
        "mlflow.source.git.commit": commit,  # MLflow's own tag: the UI links the run's source
        "command": shlex.join(command),
        "host": socket.gethostname(),
        **{f"version.{name}": version(package) for name, package in VERSIONED.items()},
    }


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """Where, with what and by which process a run ran: provenance, pid, threads, overrides."""
    import torch

    tags = {
        **provenance_tags(),
        "attnlab.pid": str(os.getpid()),  # with host: `attnlab runs` tells a dead owner
        "task_name": cfg.task_name,
        "torch.threads": str(torch.get_num_threads()),  # after the run's thread budget
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
    multirun swept, else the job's overrides (see attnlab.tracking.names)."""
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
    signal preempts it (attnlab.training.resume: it can be resumed), and FAILED on any other
    exception, Ctrl-C and SIGTERM outside fitting included.
    """
    from optuna import TrialPruned

    from attnlab.core.errors import Preempted

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
    client, experiment_id = open_experiment(uri, experiment)
    tags = {**provenance_tags(command), **(extra_tags or {})}
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
