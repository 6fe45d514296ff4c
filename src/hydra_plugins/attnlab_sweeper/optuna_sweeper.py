"""OptunaSweeper: Hydra's multirun asks Optuna for values and reports outcomes to the study.

Hydra only instantiates plugins defined under the ``hydra_plugins`` package, so the class lives
here; the search space, study, tracking and job-side pieces live in ``attnlab.sweeper``.

Each job learns its trial through overrides (``++trial.*``) and reaches it through the storage,
so pruning works with any launcher, in-process or not; the launcher's line of each job leaves out
the pruning callback and tags (its hydra/overrides.yaml keeps them). A heartbeat thread keeps the
trials of a batch alive; trials of a killed sweep stop beating and are failed when any sweep
resumes.
"""

import logging
import math
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf, open_dict
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from attnlab.core.config import check_read_keys
from attnlab.core.errors import ConfigError
from attnlab.sweeper.search_space import search_space
from attnlab.sweeper.study import (
    OUTPUT_DIR_ATTR,
    PRUNER_ATTR,
    grid_points_left,
    make_pruner,
    make_sampler,
    make_storage,
)

if TYPE_CHECKING:  # imported by sweep(): Hydra imports this module for every command
    from attnlab.sweeper.parent_run import SweepTracker

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Overrides that make a job a trial (_trial_overrides), not shown on the launcher's job lines.
BOOKKEEPING = ("++callbacks.optuna_pruning=", "++tags=")


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.attnlab_sweeper.optuna_sweeper.OptunaSweeper"
    study_name: str = "${task_name}"
    storage: str = "sqlite:///optuna.db"
    direction: str = "${objective.direction}"
    metric: str = "${objective.metric}"
    n_trials: int = 20
    n_jobs: int = 1
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe", "seed": 0})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    params: dict[str, str] = field(default_factory=dict)
    heartbeat_interval: int = 10
    grace_period: int = 30
    retry_killed: int = 1  # a trial of a killed sweep runs again with its parameters, this often


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="attnlab"
)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str,
        storage: str,
        direction: str,
        metric: str,
        n_trials: int,
        n_jobs: int,
        sampler: dict,
        pruner: dict,
        params: dict,
        heartbeat_interval: int,
        grace_period: int,
        retry_killed: int,
    ):
        if n_trials <= 0:
            raise ConfigError("hydra.sweeper.n_trials", n_trials, "must be > 0")
        if n_jobs <= 0:
            raise ConfigError("hydra.sweeper.n_jobs", n_jobs, "must be > 0")
        if retry_killed < 0:
            raise ConfigError("hydra.sweeper.retry_killed", retry_killed, "must be >= 0")
        if not metric.startswith("val/"):  # choosing on the test split would leak it
            allowed = "a val/ metric: a sweep selects on validation, the test split stays unseen"
            raise ConfigError("objective.metric", metric, allowed)
        if direction not in ("minimize", "maximize"):
            raise ConfigError("hydra.sweeper.direction", direction, "one of minimize, maximize")
        self.study_name, self.storage_url, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_spec = (
            OmegaConf.to_container(sampler) if isinstance(sampler, DictConfig) else sampler
        )
        self.pruner_spec = (
            OmegaConf.to_container(pruner) if isinstance(pruner, DictConfig) else pruner
        )
        self.params = dict(params or {})
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.retry_killed = retry_killed
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def _open_study(self, space: dict) -> tuple[optuna.Study, optuna.storages.RDBStorage, bool]:
        """The study, its storage, and whether this worker created the study (the storage's
        unique study name decides which of the workers starting together did)."""
        storage = make_storage(
            self.storage_url, self.heartbeat_interval, self.grace_period, self.retry_killed
        )
        name = self.study_name
        sampler, pruner = make_sampler(self.sampler_spec, space), make_pruner(self.pruner_spec)
        try:
            study = optuna.create_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                direction=self.direction,
            )  # fmt: skip
            created = True
        except optuna.exceptions.DuplicatedStudyError:  # resumed, or another worker's
            study = optuna.load_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner
            )
            created = False
        study.set_user_attr(PRUNER_ATTR, self.pruner_spec)
        with warnings.catch_warnings():  # experimental since Optuna 2.9, still the way
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # trials of a killed sweep: RUNNING -> FAIL
        return study, storage, created

    def sweep(self, arguments: list[str]) -> list[float | None]:
        fixed, space = search_space(self.params, arguments)
        # Compose one point of the space before any study, trial or MLflow run is written.
        first = [f"{key}={_override_value(v)}" for key, v in _first_point(space).items()]
        self.validate_batch_is_legal([fixed + first])
        check_read_keys(self._job_config(fixed + first))  # e.g. a +key=value nothing reads
        study, storage, created = self._open_study(space)
        from attnlab.sweeper.parent_run import SweepTracker  # MLflow, Lightning: a sweep's own

        tracker = SweepTracker.for_config(self.config, study, created)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        values: list[float | None] = []
        if self._remaining(study) == 0 and grid_points_left(study) == 0:
            print(f"sweep {self.study_name}: every point of the grid has a trial; nothing to run")
        with tracker:
            while (remaining := self._remaining(study)) > 0:
                trials = [self._ask(study, space) for _ in range(min(self.n_jobs, remaining))]
                batch = [fixed + self._trial_overrides(t, tracker) for t in trials]
                try:  # e.g. a searched key the config does not have
                    self.validate_batch_is_legal(batch)
                except Exception:
                    for trial in trials:  # recorded, not left RUNNING
                        study.tell(trial, state=TrialState.FAIL)
                    raise
                ids = [t._trial_id for t in trials]
                with _Heartbeat(storage, ids, self.heartbeat_interval), _LaunchLines(batch):
                    returns = self.launcher.launch(batch, initial_job_idx=self.job_idx)
                self.job_idx += len(returns)
                for trial, job in zip(trials, returns, strict=True):
                    values.append(self._tell(study, trial, job))
                    tracker.trial_done(study.trials[trial.number])
            tracker.finish(study, self.sweep_dir)
        return values

    def _job_config(self, overrides: list[str]) -> DictConfig:
        """The config a job with these overrides would get."""
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def _ask(self, study: optuna.Study, space: dict) -> optuna.Trial:
        """A new trial, sampled with a seed drawn from the sampler's seed and the study's
        trial count (:func:`trial_seed`).

        A resumed sweep (or another worker) would otherwise restart the sampler's random
        stream and propose the points already tried; samplers read the rest from storage.
        Not the grid's: its seed shuffles the points that the trials' grid ids number, so a
        new seed would renumber them and repeat a point already run.
        """
        spec = dict(self.sampler_spec)
        if spec.get("seed") is not None and spec["name"] != "grid":
            spec["seed"] = trial_seed(spec["seed"], len(study.get_trials(deepcopy=False)))
        study.sampler = make_sampler(spec, space)
        with warnings.catch_warnings():  # heartbeats are sent by _Heartbeat, not Study.optimize
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            return study.ask(space)

    def _remaining(self, study: optuna.Study) -> int:
        """Trials still to start; finished and running ones of every worker count. A grid
        sweep also ends when every point of its grid has a trial."""
        started = study.get_trials(deepcopy=False, states=(*FINISHED_STATES, TrialState.RUNNING))
        grid_left = grid_points_left(study)
        remaining = self.n_trials - len(started)
        return remaining if grid_left is None else min(remaining, grid_left)

    def _trial_overrides(self, trial: optuna.Trial, tracker: "SweepTracker") -> list[str]:
        """The sampled values, then what makes the job a trial: its pruning callback and tags."""
        sampled = [f"{key}={_override_value(value)}" for key, value in trial.params.items()]
        pruning = {
            "_target_": "attnlab.sweeper.trial.FitPruning.for_trial",
            "study_name": self.study_name,
            "storage": self.storage_url,
            "trial_id": trial._trial_id,
            "objective": "${objective.metric}",
            "output_dir": "${hydra:runtime.output_dir}",
        }
        tags = {"optuna.study": self.study_name, "optuna.trial_number": trial.number}
        if tracker.parent_run_id:
            tags["mlflow.parentRunId"] = tracker.parent_run_id
        folder = resumable_folder(trial.study._storage.get_trial(trial._trial_id))
        return [
            *([f"hydra.sweep.subdir={_quoted(folder)}"] if folder else []),
            *sampled,
            f"++callbacks.optuna_pruning={_override_dict(pruning)}",
            f"++tags={_override_dict(tags)}",
            f"++trial.number={trial.number}",
        ]

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.Trial, job) -> float | None:
        """Record one job's outcome: COMPLETE with its value, PRUNED, or FAIL with its error."""
        if job.status == JobStatus.COMPLETED:
            value = job.return_value
            if isinstance(value, int | float) and math.isfinite(value):
                study.tell(trial, float(value))
                return float(value)
            trial.set_user_attr("error", f"objective is not a finite number: {value!r}")
        elif isinstance(job._return_value, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            return None
        else:
            trial.set_user_attr("error", repr(job._return_value)[:2000])
        study.tell(trial, state=TrialState.FAIL)
        return None


def resumable_folder(trial: FrozenTrial) -> str | None:
    """The folder of the killed trial that ``trial`` runs again, if it holds a checkpoint to
    resume from: the job trains there and continues the killed trial's MLflow run."""
    from attnlab.training.resume import resume_point  # torch: only once a sweep runs

    with warnings.catch_warnings():  # "experimental" since Optuna 2.8, still the way
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) is None:
            return None
    folder = trial.user_attrs.get(OUTPUT_DIR_ATTR)
    return folder if resume_point(folder) else None


def _first_point(space: dict) -> dict[str, Any]:
    """The first choice or the low end of every distribution."""
    return {k: d.choices[0] if hasattr(d, "choices") else d.low for k, d in space.items()}


def _override_dict(values: dict[str, Any]) -> str:
    """A dict as Hydra override text; strings quoted, so URLs and interpolations stay whole."""
    items = (f"{k}:{_quoted(v) if isinstance(v, str) else v}" for k, v in values.items())
    return "{" + ",".join(items) + "}"


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def trial_seed(seed: int, trials_so_far: int) -> int:
    """The sampler's seed for a study's next trial: one stream per (seed, trial count), from
    NumPy's SeedSequence. ``seed + trials_so_far`` made the sweeps of seeds k and k + 1 (repeats
    of one sweep, or two workers) draw the same points one trial apart."""
    import numpy as np

    return int(np.random.SeedSequence(seed, spawn_key=(trials_so_far,)).generate_state(1)[0])


def _override_value(value: Any) -> str:
    """A sampled value as Hydra override text (strings quoted so '1e-3' stays a string)."""
    if isinstance(value, str):
        return value if value.isidentifier() else f"'{value}'"
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else repr(value)


class _LaunchLines(logging.Filter):
    """While launching ``batch``: the lines Hydra's launchers log per job (``#N : overrides``)
    without the sweeper's BOOKKEEPING overrides. A filter of the launchers' loggers: each
    launch configures Hydra's logging again, which replaces the handlers."""

    LINE = re.compile(r"\s*#\d+ : ")
    LOGGERS = (
        "hydra._internal.core_plugins.basic_launcher",
        "hydra_plugins.hydra_joblib_launcher._core",
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
    )

    def __init__(self, batch: list[list[str]]):
        super().__init__()
        self.hidden = {o for overrides in batch for o in overrides if o.startswith(BOOKKEEPING)}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.LINE.match(message):
            for override in self.hidden:
                message = message.replace(f" {override}", "")
            record.msg, record.args = message, ()
        return True

    def __enter__(self) -> "_LaunchLines":
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)
        return self

    def __exit__(self, *exc) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeFilter(self)


class _Heartbeat:
    """Record a heartbeat for each running trial every ``interval`` seconds while in the block."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_ids: list[int], interval: int):
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> "_Heartbeat":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
