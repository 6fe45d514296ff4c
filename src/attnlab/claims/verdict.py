"""The verdict of a claim from per-seed scores: paired t intervals, one standard, Holm.

Rule (stated in every report):

- The effect of a comparison is the expected winner's score minus the other's, signed so that +
  is the claimed direction; ``size`` is the smallest effect of interest. Where the two variants
  share ``MIN_SEEDS`` seeds or more (``claim run`` gives seed *i* of every variant the same data
  draw), the effect is the mean of the per-seed differences over the common seeds, with
  Student's paired t (Student 1908); otherwise Welch's unpaired t over each variant's seeds.
- Each decision is a one-sided t test at alpha = (1 - confidence) / 2. Each comparison gets the
  p-value of the decision its estimate points to; over a claim's k comparisons Holm's step-down
  (Holm 1979) decides the one of rank j (0-based, ascending p) at alpha / (k - j), and the first
  that fails stops it: that one and every later one stay undecided at its level. The interval
  is the two-sided 1 - 2 * level interval, so the interval decides:
  ``better``: *reproduced* when it lies above ``size`` and the winner beats the task's best
  shortcut baseline, *not reproduced* when it lies below ``size``; ``equal``: *reproduced* when
  it lies inside (-size, size) (two one-sided tests, Schuirmann 1987), *not reproduced* when it
  lies wholly beyond one bound; *inconclusive* otherwise.
- Differences that do not vary over the seeds (a floor or a ceiling) give no interval and no
  decision, nor do fewer than ``MIN_SEEDS`` seeds per variant.
- ``resolvable``: the smallest distance from ``size`` that this design (its seeds, the observed
  spread, the comparison's level) detects with ``POWER`` (noncentral t); a finer ``size`` is
  reported with the seeds that would resolve it.
- A pilot, then a fresh run (:func:`confirmatory_size`, ``claim run --until-decided``): the
  pilot's seeds decide nothing; their spread sizes the confirmatory run (the seeds at which
  each comparison resolves its ``size`` at Holm's strictest level, alpha / k), which takes that
  many fresh seeds and is judged on them alone by the rule above. Given the pilot, the fresh
  seeds are independent of it, so each test keeps its level conditionally on any pilot and
  hence unconditionally: sizing from a pilot that is then set aside inflates no error rate
  (unlike Wittes & Brittain's 1990 internal pilot, whose seeds stay in the analysis). The power
  holds only as well as the pilot's spread estimates the true one, and the cap can lower it.
- A comparison with ``fails_beyond`` is on failure rates: a seed fails when its metric is worse
  than the threshold, and the effect is ``than``'s failure rate minus ``better``'s. Its bounds
  are exact (conservative) whatever the rates and however the seeds pair up: each rate's
  Clopper-Pearson (1934) bound at alpha / 2, joined by Bonferroni's inequality, so the lower
  bound exceeds the true difference with chance at most alpha. The p-value is the smallest
  alpha at which the bound clears ``size``; Holm and the two verdicts are as above. A t
  interval does not hold its level on such bimodal outcomes (tests/test_verdict_simulation.py:
  at 3 seeds a false "reproduced" in 14% of claims whose net fails half the time).
- A claim is reproduced when every comparison is, not reproduced when any is, else inconclusive.
  Holm bounds the chance that any decision of the claim is wrong, so a verdict resting on one
  decision (not reproduced) or on all of them (reproduced) keeps that bound.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from statistics import fmean

import numpy as np
from scipy import special, stats

from attnlab.claims.spec import Comparison

MIN_SEEDS = 3
POWER = 0.8
MAX_SEEDS = 10_000  # the most seeds a finer size is resolved with before the report gives up
MAX_EXACT_SEEDS = 400  # the same for failure rates, whose power is summed over every outcome
TOLERANCE = 1e-9  # differences varying less than this (relative to 1 or their size) are constant
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Effect:
    """The signed effect over seeds and its spread; once judged, its interval at the
    comparison's Holm level and the smallest distance from ``size`` the design resolves."""

    better_mean: float
    than_mean: float
    effect: float
    se: float  # its standard error: 0 when the differences do not vary over the seeds
    df: float
    seeds: int  # the common seeds when paired, else the fewer seeds of the two variants
    paired: bool
    # failure rates: (better's failures, its seeds, than's failures, its seeds); else None
    failures: tuple[int, int, int, int] | None = None
    level: float = math.nan  # the interval's two-sided confidence, 1 - 2 * Holm level
    low: float = math.nan
    high: float = math.nan
    resolvable: float = math.nan

    @property
    def test(self) -> str:
        if self.failures is not None:
            return "exact (Clopper-Pearson, Bonferroni)"
        return "paired t" if self.paired else "Welch t"

    @property
    def decidable(self) -> bool:
        """An interval exists: failure counts, or differences that vary over the seeds."""
        return self.failures is not None or self.se > 0


@dataclass(frozen=True)
class Judgement:
    verdict: str
    reason: str
    effect: Effect | None


def mean_interval(values: list[float], confidence: float) -> tuple[float, float]:
    """Mean and the half-width of its t interval over seeds (nan for fewer than 2 values)."""
    centre = fmean(values)
    if len(values) < 2:
        return centre, math.nan
    if len(set(values)) == 1:
        return centre, 0.0
    sem = stats.sem(values)
    return centre, float(sem * stats.t.ppf((1 + confidence) / 2, len(values) - 1))


def squared_error(values: list[float]) -> float:
    """The squared standard error of the mean of ``values``; 0 when they do not vary."""
    scale = max(1.0, *map(abs, values))
    if max(values) - min(values) <= TOLERANCE * scale:
        return 0.0
    centre = fmean(values)
    return sum((v - centre) ** 2 for v in values) / (len(values) - 1) / len(values)


def estimate(better: dict[int, float], than: dict[int, float], direction: str) -> Effect | None:
    """The effect (+ = ``direction`` favours ``better``) paired over the common seeds when
    there are ``MIN_SEEDS`` of them, else Welch's over each variant's seeds; None when a
    variant has fewer than ``MIN_SEEDS`` seeds."""
    sign = 1.0 if direction == "maximize" else -1.0
    common = sorted(better.keys() & than.keys())
    if len(common) >= MIN_SEEDS:
        differences = [sign * (better[seed] - than[seed]) for seed in common]
        means = (fmean(better[seed] for seed in common), fmean(than[seed] for seed in common))
        se = math.sqrt(squared_error(differences))
        return Effect(*means, fmean(differences), se, len(common) - 1, len(common), paired=True)
    if min(len(better), len(than)) < MIN_SEEDS:
        return None
    sides = list(better.values()), list(than.values())
    better_se2, than_se2 = map(squared_error, sides)
    se = math.sqrt(better_se2 + than_se2)
    df = (  # Welch-Satterthwaite
        se**4 / (better_se2**2 / (len(sides[0]) - 1) + than_se2**2 / (len(sides[1]) - 1))
        if se > 0
        else math.nan
    )
    better_mean, than_mean = map(fmean, sides)
    difference = sign * (better_mean - than_mean)
    return Effect(better_mean, than_mean, difference, se, df, min(map(len, sides)), paired=False)


def count_failures(scores: list[float], comparison: Comparison) -> int:
    """How many of ``scores`` are worse than ``comparison.fails_beyond``."""
    sign = 1 if comparison.direction == "minimize" else -1
    return sum(sign * (score - comparison.fails_beyond) > 0 for score in scores)


def estimate_failures(
    better: dict[int, float], than: dict[int, float], comparison: Comparison
) -> Effect | None:
    """The difference of failure rates, ``than``'s minus ``better``'s, where a seed fails when
    its score is worse than ``comparison.fails_beyond``; None below ``MIN_SEEDS`` seeds."""
    if min(len(better), len(than)) < MIN_SEEDS:
        return None
    counts = [count_failures(list(side.values()), comparison) for side in (better, than)]
    better_rate, than_rate = counts[0] / len(better), counts[1] / len(than)
    failures = (counts[0], len(better), counts[1], len(than))
    seeds = min(len(better), len(than))
    return Effect(
        better_rate, than_rate, than_rate - better_rate, math.nan, math.nan, seeds,
        paired=False, failures=failures,
    )  # fmt: skip


def clopper_pearson(failures, seeds, alpha: float):
    """Exact one-sided bounds (low, high) on a rate from ``failures`` of ``seeds``, each
    wrong with chance at most ``alpha`` (Clopper & Pearson 1934); numpy arrays broadcast."""
    failures, seeds = np.asarray(failures, float), np.asarray(seeds, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = special.betaincinv(failures, seeds - failures + 1, alpha)
        high = special.betaincinv(failures + 1, seeds - failures, 1 - alpha)
    return np.where(failures == 0, 0.0, low), np.where(failures == seeds, 1.0, high)


def failure_bounds(failures: tuple[int, int, int, int], alpha: float) -> tuple[float, float]:
    """Bounds (low, high) on than's failure rate minus better's, each wrong with chance at most
    ``alpha``: each rate's Clopper-Pearson bound at alpha / 2, joined by Bonferroni."""
    better_low, better_high = clopper_pearson(*failures[:2], alpha / 2)
    than_low, than_high = clopper_pearson(*failures[2:], alpha / 2)
    return float(than_low - better_high), float(than_high - better_low)


def smallest_alpha(holds: Callable[[float], bool]) -> float:
    """The smallest alpha at which ``holds`` (true from some alpha on, as bounds narrow with a
    larger alpha), to 1e-12; 1 when it fails even at alpha = 1."""
    if not holds(1.0):
        return 1.0
    fails, works = 0.0, 1.0
    while works - fails > 1e-12:
        middle = (fails + works) / 2
        fails, works = (fails, middle) if holds(middle) else (middle, works)
    return works


def p_above(effect: Effect, bound: float) -> float:
    """One-sided p-value of "the true effect exceeds ``bound``"."""
    if effect.failures is not None:
        return smallest_alpha(lambda alpha: failure_bounds(effect.failures, alpha)[0] > bound)
    return float(special.stdtr(effect.df, (bound - effect.effect) / effect.se))


def p_below(effect: Effect, bound: float) -> float:
    """One-sided p-value of "the true effect lies below ``bound``"."""
    if effect.failures is not None:
        return smallest_alpha(lambda alpha: failure_bounds(effect.failures, alpha)[1] < bound)
    return float(special.stdtr(effect.df, (effect.effect - bound) / effect.se))


def pointed_decision(comparison: Comparison, effect: Effect) -> tuple[str, float]:
    """The decision the estimate points to and its p-value (for ``equal`` inside the bounds,
    the larger of the two one-sided p-values: Schuirmann's TOST)."""
    size = comparison.size
    if comparison.expect == "equal":
        options = [
            (REPRODUCED, max(p_above(effect, -size), p_below(effect, size))),
            (NOT_REPRODUCED, p_above(effect, size)),
            (NOT_REPRODUCED, p_below(effect, -size)),
        ]
    else:
        options = [(REPRODUCED, p_above(effect, size)), (NOT_REPRODUCED, p_below(effect, size))]
    return min(options, key=lambda option: option[1])


def holm(p_values: list[float], alpha: float) -> list[tuple[float, bool]]:
    """Holm's step-down (1979): (level, rejected) per p-value. In ascending order the p-value of
    rank j of k is tested at alpha / (k - j); the first that fails stops the procedure, and it
    and every later one keep its level, unrejected."""
    k = len(p_values)
    decisions: list[tuple[float, bool]] = [(alpha, False)] * k
    stopped = False
    for rank, index in enumerate(sorted(range(k), key=p_values.__getitem__)):
        if not stopped:
            level = alpha / (k - rank)
            stopped = p_values[index] >= level
        decisions[index] = (level, not stopped)
    return decisions


def resolvable(se: float, df: float, alpha: float) -> float:
    """The smallest distance from a bound at which a one-sided t test at ``alpha`` of an
    estimate with standard error ``se`` and ``df`` degrees of freedom has ``POWER``."""
    critical = special.stdtrit(df, 1 - alpha)
    return float(special.nctdtrinc(df, 1 - POWER, critical) * se)


def seeds_to_resolve(effect: Effect, size: float, alpha: float) -> int | None:
    """The fewest seeds per variant at which the observed spread (for failure rates, ``better``'s
    rate) resolves ``size`` at ``alpha`` (None when ``MAX_SEEDS`` do not)."""

    def resolves(seeds: int) -> bool:
        return resolvable_distance(effect, size, alpha, seeds) <= size

    most = MAX_EXACT_SEEDS if effect.failures is not None else MAX_SEEDS
    if not resolves(most):
        return None
    fails, works = effect.seeds, most
    while works - fails > 1:
        middle = (fails + works) // 2
        fails, works = (fails, middle) if resolves(middle) else (middle, works)
    return works


def exact_power(seeds: int, better_rate: float, than_rate: float, size: float, alpha: float):
    """The chance that the failure-rate test at ``alpha`` shows an effect above ``size`` with
    ``seeds`` per variant, summed over every pair of failure counts (the two variants' failures
    drawn independently)."""
    counts = np.arange(seeds + 1)
    than_low, _ = clopper_pearson(counts[:, None], seeds, alpha / 2)
    _, better_high = clopper_pearson(counts[None, :], seeds, alpha / 2)
    shown = than_low - better_high > size
    chance = stats.binom.pmf(counts[:, None], seeds, than_rate) * stats.binom.pmf(
        counts[None, :], seeds, better_rate
    )
    return float((chance * shown).sum())


@functools.lru_cache(maxsize=4096)  # a report and a simulation ask the same few designs again
def resolvable_failures(seeds: int, better_rate: float, size: float, alpha: float) -> float:
    """The smallest distance from ``size`` at which the failure-rate test at ``alpha`` shows the
    effect with ``POWER``, ``better`` failing at ``better_rate``; inf when no rate can."""
    reach = 1 - better_rate - size  # than's failure rate cannot pass 1
    if reach <= 0 or exact_power(seeds, better_rate, 1.0, size, alpha) < POWER:
        return math.inf
    fails, works = 0.0, reach
    while works - fails > 1e-4:
        middle = (fails + works) / 2
        power = exact_power(seeds, better_rate, better_rate + size + middle, size, alpha)
        fails, works = (fails, middle) if power >= POWER else (middle, works)
    return works


def resolvable_distance(effect: Effect, size: float, alpha: float, seeds: int) -> float:
    """The smallest distance from ``size`` the design of ``effect`` resolves at ``seeds``."""
    if effect.failures is not None:
        return resolvable_failures(seeds, effect.better_mean, size, alpha)
    se = effect.se * math.sqrt(effect.seeds / seeds)
    df = effect.df * (seeds - 1) / (effect.seeds - 1)
    return resolvable(se, df, alpha)


@dataclass(frozen=True)
class Sizing:
    """Fresh seeds per variant for a confirmatory run: ``needed`` by the pilot's spread (None
    when a comparison has no spread or needs more than ``MAX_SEEDS``), ``seeds`` after the cap."""

    needed: int | None
    seeds: int
    capped: bool


def confirmatory_size(
    comparisons: list[Comparison],
    pilot: list[tuple[dict[int, float], dict[int, float]]],
    confidence: float,
    max_seeds: int,
) -> Sizing:
    """The seeds at which every comparison resolves its ``size`` with ``POWER`` at alpha / k,
    the spread taken from the pilot's scores (as :func:`judge_claim` takes them); at least
    ``MIN_SEEDS``, at most ``max_seeds``."""
    alpha = (1 - confidence) / 2 / len(comparisons)
    needs: list[int | None] = []
    for comparison, (better, than) in zip(comparisons, pilot, strict=True):
        effect = estimate_for(comparison, better, than)
        if effect is None or not effect.decidable:
            needs.append(None)
        elif resolvable_distance(effect, comparison.size, alpha, effect.seeds) <= comparison.size:
            needs.append(effect.seeds)
        else:
            needs.append(seeds_to_resolve(effect, comparison.size, alpha))
    needed = None if None in needs else max(MIN_SEEDS, *needs)
    if needed is None or needed > max_seeds:
        return Sizing(needed, max_seeds, capped=True)
    return Sizing(needed, needed, capped=False)


def estimate_for(
    comparison: Comparison, better: dict[int, float], than: dict[int, float]
) -> Effect | None:
    """The effect a comparison is judged on: of failure rates or of mean scores."""
    if comparison.fails_beyond is not None:
        return estimate_failures(better, than, comparison)
    return estimate(better, than, comparison.direction)


def judge_claim(
    comparisons: list[Comparison],
    scores: list[tuple[dict[int, float], dict[int, float]]],
    confidence: float,
    baselines: list[tuple[str, float] | None],
) -> list[Judgement]:
    """The verdict of each comparison from the per-seed scores (seed -> score) of its two
    variants, Holm-corrected over the comparisons; ``baselines``: the best shortcut baseline
    each ``better`` winner must beat, or None."""
    alpha = (1 - confidence) / 2
    effects = [
        estimate_for(comparison, better, than)
        for comparison, (better, than) in zip(comparisons, scores, strict=True)
    ]
    pointed = [
        pointed_decision(comparison, effect) if effect and effect.decidable else (INCONCLUSIVE, 1.0)
        for comparison, effect in zip(comparisons, effects, strict=True)
    ]
    levels = holm([p for _, p in pointed], alpha)
    judgements = []
    for index, comparison in enumerate(comparisons):
        effect, (decision, _), (level, rejected) = effects[index], pointed[index], levels[index]
        if effect is None or not effect.decidable:
            judgements.append(undecidable(comparison, effect, scores[index]))
            continue
        decision = decision if rejected else INCONCLUSIVE
        judgements.append(judge(comparison, effect, decision, level, baselines[index]))
    return judgements


def undecidable(
    comparison: Comparison, effect: Effect | None, scores: tuple[dict, dict]
) -> Judgement:
    """The judgement of a comparison without an interval: too few seeds, or no spread."""
    if effect is None:
        counts = f"{comparison.better}: {len(scores[0])}, {comparison.than}: {len(scores[1])}"
        return Judgement(INCONCLUSIVE, f"too few seeds ({counts}; {MIN_SEEDS} needed)", None)
    why = (
        f"the difference is {effect.effect:+.4g} at every seed: the metric sits at a floor or "
        "ceiling or does not vary, so there is no interval; change the metric or the task"
    )
    return Judgement(INCONCLUSIVE, why, effect)


def judge(
    comparison: Comparison,
    effect: Effect,
    decision: str,
    level: float,
    baseline: tuple[str, float] | None,
) -> Judgement:
    """One comparison's judgement from its estimate and Holm's decision and level: the
    interval at that level, the baseline the winner must beat, the resolvable effect."""
    if effect.failures is not None:
        low, high = failure_bounds(effect.failures, level)
    else:
        half = float(special.stdtrit(effect.df, 1 - level)) * effect.se
        low, high = effect.effect - half, effect.effect + half
    effect = replace(
        effect,
        level=1 - 2 * level,
        low=low,
        high=high,
        resolvable=resolvable_distance(effect, comparison.size, level, effect.seeds),
    )
    interval = f"[{effect.low:+.4g}, {effect.high:+.4g}] at {percent(effect.level)}"
    size = comparison.size
    if comparison.expect == "equal":
        where = {REPRODUCED: "lies inside", NOT_REPRODUCED: "lies beyond", INCONCLUSIVE: "crosses"}
        reason = f"{interval} {where[decision]} ±{size:g}"
    else:
        where = {REPRODUCED: "lies above", NOT_REPRODUCED: "lies below", INCONCLUSIVE: "holds"}
        reason = f"{interval} {where[decision]} {size:g}"
        if decision == REPRODUCED and baseline and not beats(effect, baseline, comparison):
            name, value = baseline
            winner = f"{comparison.better} ({effect.better_mean:.4g})"
            decision = INCONCLUSIVE
            reason = f"{reason}, but {winner} does not beat the baseline {name} ({value:.4g})"
    return Judgement(decision, reason + resolution(effect, size, level), effect)


def percent(level: float) -> str:
    return f"{100 * level:.4g}%"


def beats(effect: Effect, baseline: tuple[str, float], comparison: Comparison) -> bool:
    value = baseline[1]
    maximize = comparison.direction == "maximize"
    return effect.better_mean > value if maximize else effect.better_mean < value


def resolution(effect: Effect, size: float, level: float) -> str:
    """The reason's note when ``size`` is finer than the design resolves: the seeds that would."""
    if size >= effect.resolvable:
        return ""
    seeds = seeds_to_resolve(effect, size, level)
    most = MAX_EXACT_SEEDS if effect.failures is not None else MAX_SEEDS
    would = f"about {seeds} seeds per variant" if seeds else f"not even {most} seeds"
    if effect.failures is not None:
        reach = (
            f"cannot show a difference of {size:g} even if the other variant always fails"
            if math.isinf(effect.resolvable)
            else f"resolves {effect.resolvable:.3g} beyond the size {size:g}, more than the size"
        )
        at = f"at {effect.seeds} seeds this design {reach} (at {POWER:.0%} power)"
        return f"; {at}: {would} would resolve it"
    return (
        f"; the size {size:g} is finer than this design resolves ({effect.resolvable:.3g} with "
        f"{POWER:.0%} power at {effect.seeds} seeds): {would} would resolve it"
    )


def overall(verdicts: list[str]) -> str:
    if verdicts and all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if NOT_REPRODUCED in verdicts:
        return NOT_REPRODUCED
    return INCONCLUSIVE
