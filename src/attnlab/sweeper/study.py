"""Samplers, pruners and storage for a sweep, chosen by name, with one-line errors."""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from attnlab.errors import ConfigError

PRUNER_ATTR = "attnlab.pruner"  # study attribute: the pruner spec, read by each job


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


def make_storage(
    url: str, heartbeat_interval: int, grace_period: int, retry_killed: int = 0
) -> RDBStorage:
    """An RDB storage whose trials send heartbeats, so a killed sweep's trials can be failed;
    each such trial is queued again with its parameters up to ``retry_killed`` times (Optuna's
    RetryHeartbeatStaleTrialCallback), and the next sweep on the study runs it first.

    Workers that start together on a new database race to create Optuna's tables; the loser
    gets an IntegrityError (PostgreSQL) or "table ... already exists" (SQLite) and simply
    connects again to the tables the winner made.
    """
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(retry_killed) if retry_killed else None
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=retry,
                )
        except (IntegrityError, OperationalError) as error:
            failure = error
            if isinstance(error, OperationalError) and "already exists" not in str(error):
                break
            time.sleep(0.5 * (attempt + 1))
        except (SQLAlchemyError, ValueError, ImportError) as error:
            failure = error
            break
    reason = str(failure).strip().splitlines()[0]
    raise ConfigError("hydra.sweeper.storage", url, f"a reachable database URL ({reason})")
