"""The verdict of a claim from per-seed scores: a Welch interval of the difference and a rule.

Rule (stated in every report):

- ``better``: the effect is the mean of the expected winner minus the mean of the other, signed
  so that a positive effect is the claimed direction; its Welch confidence interval over seeds
  (unequal variances, scipy) decides. *Reproduced* when the interval lies above 0 and the winner
  beats the task's best shortcut baseline; *not reproduced* when the interval lies below the
  claimed size (an effect as large as the source's is ruled out and the claimed direction is not
  shown); *inconclusive* otherwise, or when the winner does not beat the best baseline.
- ``equal``: *reproduced* when the interval lies inside (-size, size); *not reproduced* when it
  lies wholly beyond either bound; *inconclusive* otherwise.
- A claim is reproduced when all its comparisons are, not reproduced when any is not, else
  inconclusive. Fewer than ``MIN_SEEDS`` seeds per variant give no verdict.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from statistics import mean

from scipy import stats

from attnlab.claims.spec import Comparison

MIN_SEEDS = 3
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Effect:
    """The claimed winner's and the other's mean, the signed effect and its interval."""

    better_mean: float
    than_mean: float
    effect: float
    low: float
    high: float
    n_better: int
    n_than: int


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reason: str
    effect: Effect | None


def mean_interval(values: list[float], confidence: float) -> tuple[float, float]:
    """Mean and the half-width of its t interval over seeds (nan for fewer than 2 values)."""
    centre = mean(values)
    if len(values) < 2:
        return centre, math.nan
    if len(set(values)) == 1:
        return centre, 0.0
    sem = stats.sem(values)
    return centre, float(sem * stats.t.ppf((1 + confidence) / 2, len(values) - 1))


def effect_interval(
    better: list[float], than: list[float], direction: str, confidence: float
) -> Effect:
    """Welch interval of mean(better) - mean(than), signed so that + is the claimed direction."""
    sign = 1.0 if direction == "maximize" else -1.0
    difference = mean(better) - mean(than)
    if len(set(better)) == 1 and len(set(than)) == 1:  # no spread: the difference is exact
        low = high = difference
    else:
        with warnings.catch_warnings():  # one side without spread (1.0 every seed) is fine
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            test = stats.ttest_ind(better, than, equal_var=False)
            low, high = test.confidence_interval(confidence)
    bounds = sorted((sign * low, sign * high))
    return Effect(
        mean(better), mean(than), sign * difference, bounds[0], bounds[1], len(better), len(than)
    )


def beats(value: float, baseline: float, direction: str) -> bool:
    return value > baseline if direction == "maximize" else value < baseline


def judge(
    comparison: Comparison,
    better: list[float],
    than: list[float],
    confidence: float,
    baseline: tuple[str, float] | None = None,
) -> Judgement:
    """The verdict of one comparison from the per-seed scores of its two variants."""
    fewest = min(len(better), len(than))
    if fewest < MIN_SEEDS:
        counts = f"{comparison.better}: {len(better)}, {comparison.than}: {len(than)}"
        return Judgement(INCONCLUSIVE, f"too few seeds ({counts}; {MIN_SEEDS} needed)", None)
    effect = effect_interval(better, than, comparison.direction, confidence)
    interval = f"[{effect.low:+.4g}, {effect.high:+.4g}]"
    size = comparison.size
    if comparison.expect == "equal":
        if -size < effect.low and effect.high < size:
            return Judgement(REPRODUCED, f"{interval} lies inside ±{size:g}", effect)
        if effect.low >= size or effect.high <= -size:
            return Judgement(NOT_REPRODUCED, f"{interval} lies beyond ±{size:g}", effect)
        return Judgement(INCONCLUSIVE, f"{interval} crosses ±{size:g}", effect)
    if effect.low > 0:
        if baseline is not None and not beats(
            effect.better_mean, baseline[1], comparison.direction
        ):
            name, value = baseline
            why = f"{comparison.better} ({effect.better_mean:.4g}) does not beat the baseline"
            return Judgement(INCONCLUSIVE, f"{why} {name} ({value:.4g})", effect)
        return Judgement(REPRODUCED, f"{interval} lies above 0", effect)
    if effect.high < size:
        why = f"{interval} does not lie above 0 and rules out the claimed {size:g}"
        return Judgement(NOT_REPRODUCED, why, effect)
    return Judgement(INCONCLUSIVE, f"{interval} holds 0 and {size:g}", effect)


def overall(verdicts: list[str]) -> str:
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return INCONCLUSIVE
