"""Hydra override syntax -> Optuna distributions.

A search space is written the way Hydra users already write sweeps::

    model.dropout: interval(0.0, 0.5)          # float, uniform
    optim.lr: tag(log, interval(1e-4, 1e-2))   # float, log-uniform
    model.layers: int(interval(1, 4))          # int
    data.batch_size: range(16, 129, step=16)   # int with a step
    model.norm: choice(batch, layer, none)     # categorical (any config value or group option)
"""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from attnlab.core.errors import ConfigError

SYNTAX = "interval(a, b), tag(log, interval(a, b)), int(interval(a, b)), range(a, b), choice(...)"


PRIMITIVES = (str, int, float, bool, type(None))


def _distribution(key: str, override: Override) -> BaseDistribution:
    sweep = override.value()
    where = f"hydra.sweeper.params.{key}"
    if isinstance(sweep, ChoiceSweep):
        if not sweep.list:
            raise ConfigError(where, "choice()", "at least one choice")
        if not all(isinstance(choice, PRIMITIVES) for choice in sweep.list):
            raise ConfigError(where, sweep.list, "choices that are strings, numbers, bools or null")
        return CategoricalDistribution(sweep.list)
    if isinstance(sweep, RangeSweep):
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if step <= 0 or start >= stop:
            raise ConfigError(
                where, f"range({start}, {stop}, step={step})", "start < stop, step > 0"
            )
        if all(isinstance(x, int) for x in (start, stop, step)):
            last = start + (stop - 1 - start) // step * step  # Hydra's range excludes stop
            return IntDistribution(start, last, step=step)
        return FloatDistribution(start, stop - step, step=step)
    if isinstance(sweep, IntervalSweep):
        low, high, log = sweep.start, sweep.end, "log" in sweep.tags
        if low > high:
            raise ConfigError(where, f"interval({low}, {high})", "low <= high")
        if log and low <= 0:
            raise ConfigError(where, f"interval({low}, {high})", "low > 0 on a log scale")
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    raise ConfigError(where, override.input_line, f"a sweep: {SYNTAX}")


def search_space(
    params: dict[str, str], arguments: list[str]
) -> tuple[list[str], dict[str, BaseDistribution]]:
    """Config params + command-line overrides -> (fixed overrides, {key: distribution}).

    Sweeps given on the command line (``optim.lr=1e-3,3e-3``) join the space and take
    precedence over the config's entry for the same key.
    """
    parser = OverridesParser.create()
    swept: dict[str, Override] = {}
    for key, expression in (params or {}).items():
        try:
            override = parser.parse_override(f"{key}={expression}")
        except HydraException as error:
            reason = str(error).strip().splitlines()[0]
            where = f"hydra.sweeper.params.{key}"
            raise ConfigError(where, expression, f"{SYNTAX} ({reason})") from None
        if not override.is_sweep_override():
            raise ConfigError(f"hydra.sweeper.params.{key}", expression, f"a sweep: {SYNTAX}")
        swept[key] = override
    fixed = []
    for override in parser.parse_overrides(arguments):
        if override.is_sweep_override():
            swept[override.get_key_element()] = override
        else:
            fixed.append(override.input_line)
    return fixed, {key: _distribution(key, override) for key, override in swept.items()}
