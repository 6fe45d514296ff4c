"""Samplers, pruners and storage for a sweep, chosen by name, with one-line errors."""

from __future__ import annotations

from typing import Any

import optuna
from sqlalchemy.exc import SQLAlchemyError

from attnlab.errors import ConfigError

PRUNER_ATTR = "attnlab.pruner"  # study attribute: the pruner spec, read by each job
SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
PRUNERS = {
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


def _options(key: str, spec: dict[str, Any], registry: dict[str, type]) -> tuple[type, dict]:
    options = dict(spec)
    name = options.pop("name", None)
    if name not in registry:
        raise ConfigError(f"{key}.name", name, f"one of {', '.join(registry)}")
    return registry[name], options


def make_sampler(spec: dict[str, Any], space: dict) -> optuna.samplers.BaseSampler:
    """{"name": "tpe", "seed": 0, ...} -> sampler; grid enumerates every categorical/stepped key."""
    sampler_class, options = _options("hydra.sweeper.sampler", spec, SAMPLERS)
    if sampler_class is optuna.samplers.GridSampler:
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
    url: str, heartbeat_interval: int, grace_period: int
) -> optuna.storages.RDBStorage:
    """An RDB storage whose trials send heartbeats, so a killed sweep's trials can be failed."""
    try:
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=heartbeat_interval, grace_period=grace_period
        )
    except (SQLAlchemyError, ValueError, ImportError, ModuleNotFoundError) as error:
        reason = str(error).strip().splitlines()[0]
        allowed = f"a reachable database URL ({reason})"
        raise ConfigError("hydra.sweeper.storage", url, allowed) from None
