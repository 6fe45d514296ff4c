"""Samplers, pruners and storage for a sweep, chosen by name, with one-line errors."""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from attnlab.core.errors import ConfigError

PRUNER_ATTR = "attnlab.pruner"  # study attribute: the pruner spec, read by each job
OUTPUT_DIR_ATTR = "attnlab.output_dir"  # trial attribute: the folder its job trains in


class SweepGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler for a sweep that asks and tells: once the last point is told,
    GridSampler calls ``study.stop()``, which works only inside ``study.optimize`` and raises
    here; the sweeper stops by itself when no point is left (:func:`grid_points_left`)."""

    def __init__(self, search_space: dict[str, list], seed: int | None = None):
        super().__init__(search_space, seed)
        self.size = math.prod(len(values) for values in search_space.values())

    def after_trial(self, study, trial, state, values) -> None:
        pass


SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": SweepGridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}


def grid_points_left(study: optuna.Study) -> int | None:
    """The points of a grid sweep's grid that no trial has started; None for other samplers.

    A point's trial keeps its ``grid_id`` (a system attribute GridSampler sets); a killed trial
    that is run again was enqueued with its parameters and has none, so it takes no new point.
    """
    if not isinstance(study.sampler, SweepGridSampler):
        return None
    started = {
        trial.system_attrs["grid_id"]
        for trial in study.get_trials(deepcopy=False)
        if "grid_id" in trial.system_attrs
    }
    return study.sampler.size - len(started)


PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


def _options(key: str, spec: dict[str, Any], registry: dict[str, type]) -> tuple[type, dict]:
    """{"name": n, "seed": s, n: {...}, other: {...}} -> (class n, {"seed": s, **spec[n]}).

    Options of each choice sit under its own name, so ``name=...`` alone switches choice.
    """
    name = spec.get("name")
    if name not in registry:
        raise ConfigError(f"{key}.name", name, f"one of {', '.join(registry)}")
    options = {k: v for k, v in spec.items() if k != "name" and k not in registry}
    return registry[name], {**options, **(spec.get(name) or {})}


def make_sampler(spec: dict[str, Any], space: dict) -> optuna.samplers.BaseSampler:
    """{"name": "tpe", "seed": 0, ...} -> sampler; grid enumerates every categorical/stepped key."""
    sampler_class, options = _options("hydra.sweeper.sampler", spec, SAMPLERS)
    if sampler_class is SweepGridSampler:
        grid = {}
        for key, dist in space.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif dist.step is not None and not getattr(dist, "log", False):
                count = round((dist.high - dist.low) / dist.step) + 1
                grid[key] = [dist.low + i * dist.step for i in range(count)]
            else:
                raise ConfigError(
                    f"hydra.sweeper.params.{key}", repr(dist), "choice() or range() for a grid"
                )
        options["search_space"] = grid
    try:
        return sampler_class(**options)
    except (TypeError, ValueError, ImportError) as error:
        raise ConfigError("hydra.sweeper.sampler", spec, str(error).splitlines()[0]) from None


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    pruner_class, options = _options("hydra.sweeper.pruner", spec, PRUNERS)
    try:
        return pruner_class(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError("hydra.sweeper.pruner", spec, str(error).splitlines()[0]) from None


# Seconds between tries of a storage call whose database connection dropped: about 30 s in
# all, the time a database server takes to restart.
RECONNECT_WAITS = (0.5, 1, 2, 4, 8, 16)


def _lost_connection(error: BaseException | None) -> OperationalError | None:
    """The database error behind a storage call's failure when its connection ended or could
    not be made (the server restarted, or ended the session: ``pg_terminate_backend``).

    Optuna wraps it (``raise ... from``). Where Optuna catches it and queries again on the
    same session (``_get_trials`` takes any OperationalError for "too many variables" and
    falls back), the second query fails with PendingRollbackError, and the lost connection
    is that error's context (raised while handling it), not its cause: both links are walked.
    """
    while error is not None:
        if isinstance(error, OperationalError):
            return error
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return None


def _ended_by_server(error: BaseException) -> bool:
    """Whether the server ended an open connection (PostgreSQL's SQLSTATE class 57P: an
    administrator, a shutdown or a restart; or a connection closed under a query), not a
    server that cannot be reached at all (a wrong URL: an error at once)."""
    lost = _lost_connection(error)
    if lost is None:
        return False
    sqlstate = str(getattr(lost.orig, "sqlstate", None) or "")
    closed = "server closed the connection" in str(lost.orig)  # psycopg gives it no SQLSTATE
    return lost.connection_invalidated or sqlstate.startswith("57P") or closed


def _reconnecting(call: Callable) -> Callable:
    @functools.wraps(call)
    def tried_again(self, *args, **kwargs):
        for wait in (*RECONNECT_WAITS, None):
            try:
                return call(self, *args, **kwargs)
            except (SQLAlchemyError, StorageInternalError) as error:
                if wait is None or _lost_connection(error) is None:
                    raise
                self.remove_session()  # this thread's session holds the dead transaction
                time.sleep(wait)

    return tried_again


class ReconnectingStorage(RDBStorage):
    """Optuna's RDB storage for a database server, whose calls outlive a dropped connection.

    Optuna gives up on the first error of a session, and a sweep worker holds connections for
    hours: connections to the study's PostgreSQL database ended during a sweep crashed it.
    Here connections are checked before use (SQLAlchemy's ``pool_pre_ping``) and a call whose
    connection dropped is made again on a new one (:data:`RECONNECT_WAITS`). A call is one
    transaction: a try that failed before its commit changed nothing. A commit that landed in
    the instant before its connection dropped is made twice: harmless for reads and for writes
    of the same value; a trial's end finds the trial ended and is taken as done; a new trial
    would be created twice, the second left to fail when its heartbeat stops (not seen).
    """

    def __init__(self, url: str, **kwargs: Any):
        """Connect (and create Optuna's tables), again when the server ends the connection
        meanwhile; a server that cannot be reached is an error at once (a wrong URL)."""
        kwargs["engine_kwargs"] = {"pool_pre_ping": True, **kwargs.get("engine_kwargs", {})}
        for wait in (*RECONNECT_WAITS, None):
            try:
                super().__init__(url, **kwargs)
                return
            except (SQLAlchemyError, StorageInternalError) as error:
                if wait is None or not _ended_by_server(error):
                    raise
                time.sleep(wait)

    def set_trial_state_values(self, trial_id: int, state, values=None) -> bool:
        for tries, wait in enumerate((*RECONNECT_WAITS, None), start=1):
            try:
                return super().set_trial_state_values(trial_id, state, values)
            except (SQLAlchemyError, StorageInternalError) as error:
                if wait is None or _lost_connection(error) is None:
                    raise
                self.remove_session()
                time.sleep(wait)
            except UpdateFinishedTrialError:
                if tries == 1 or self.get_trial(trial_id).state != state:
                    raise
                return True  # the try before committed this end, then lost its connection
        raise AssertionError("unreachable: the last try returns or raises")


# Every call that reads or writes the database (the others compute or delegate to these; Optuna's
# cache calls the private ones directly, so those are the ones wrapped).
for _name in (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "_create_new_trial", "_set_trial_param",
    "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial",
    "_get_trials", "_get_best_trial_id", "record_heartbeat", "_get_stale_trial_ids",
):  # fmt: skip
    setattr(ReconnectingStorage, _name, _reconnecting(getattr(RDBStorage, _name)))


def open_storage(url: str, **options: Any) -> RDBStorage:
    """The storage of ``url``: reconnecting for a database server, Optuna's own for SQLite
    (a file: no connection to lose)."""
    storage_class = RDBStorage if url.startswith("sqlite") else ReconnectingStorage
    return storage_class(url, **options)


def make_storage(
    url: str, heartbeat_interval: int, grace_period: int, retry_killed: int = 0
) -> RDBStorage:
    """An RDB storage whose trials send heartbeats, so a killed sweep's trials can be failed;
    each such trial is queued again with its parameters up to ``retry_killed`` times (Optuna's
    RetryHeartbeatStaleTrialCallback), and the next sweep on the study runs it first.

    Workers that start together on a new database race to create Optuna's tables; the loser
    gets an IntegrityError or, when the winner committed between its check and its CREATE,
    DuplicateTable (PostgreSQL), or "table ... already exists" (SQLite), and simply connects
    again to the tables the winner made.
    """
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(retry_killed) if retry_killed else None
                return open_storage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=retry,
                )
        except (IntegrityError, OperationalError, ProgrammingError) as error:
            failure = error
            if not isinstance(error, IntegrityError) and "already exists" not in str(error):
                break
            time.sleep(0.5 * (attempt + 1))
        except (SQLAlchemyError, ValueError, ImportError) as error:
            failure = error
            break
    reason = str(failure).strip().splitlines()[0]
    raise ConfigError("hydra.sweeper.storage", url, f"a reachable database URL ({reason})")
