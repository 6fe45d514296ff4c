"""The verdict rule's error rates, checked by simulation: thousands of synthetic claims, drawn with
numpy from fixed seeds, judged by ``verdict.judge_claim`` as ``attnlab report`` judges them.

Scores are drawn as ``claim run`` makes them: seed i of both variants shares a data draw (a
shift common to both), and each variant adds its own normal noise. Monte-Carlo error: a count of
verdicts out of N draws whose true rate is r is accepted as "at most r" when it is at or below
the 0.999 quantile of Binomial(N, r), and as "about r" when it lies in the central 0.999
interval of Binomial(N, r). A true rate within bounds fails one of these by chance once in a
thousand draws of seeds; the seeds are fixed, so the test is deterministic.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from attnlab.claims import verdict
from attnlab.claims.spec import Comparison

CONFIDENCE = 0.95
ALPHA = (1 - CONFIDENCE) / 2  # each one-sided decision's level
SIZE = 0.1
NOISE = 0.03  # per variant and seed
SHARED = 0.05  # the data draw's shift, common to both variants at a seed


def comparison(expect: str = "better", direction: str = "maximize", size: float = SIZE):
    return Comparison(
        metric="m", better="a", than="b", size=size, expect=expect, direction=direction
    )


def judge_draw(comparisons: list[Comparison], better: np.ndarray, than: np.ndarray):
    """The judgements of one synthetic claim whose scores are (comparisons, seeds)."""
    scores = [
        (dict(enumerate(b.tolist())), dict(enumerate(t.tolist())))
        for b, t in zip(better, than, strict=True)
    ]
    return verdict.judge_claim(comparisons, scores, CONFIDENCE, [None] * len(comparisons))


def judged(comparisons: list[Comparison], better: np.ndarray, than: np.ndarray) -> np.ndarray:
    """The verdicts (draws × comparisons) of claims whose scores are (draws, comparisons, seeds)."""
    return np.array(
        [
            [judgement.verdict for judgement in judge_draw(comparisons, b, t)]
            for b, t in zip(better, than, strict=True)
        ]
    )


def paired_scores(seed: int, draws: int, comparisons: int, seeds: int, effect: float):
    """better, than: (draws, comparisons, seeds) with a true mean difference of ``effect``."""
    rng = np.random.default_rng(seed)
    shape = (draws, comparisons, seeds)
    shared = 0.5 + SHARED * rng.standard_normal(shape)
    than = shared + NOISE * rng.standard_normal(shape)
    better = shared + effect + NOISE * rng.standard_normal(shape)
    return better, than


def at_most(count: int, draws: int, rate: float) -> bool:
    return count <= stats.binom.ppf(0.999, draws, rate)


def about(count: int, draws: int, rate: float) -> bool:
    low, high = stats.binom.interval(0.999, draws, rate)
    return low <= count <= high


@pytest.mark.parametrize(
    "expect, effect", [("better", SIZE), ("equal", SIZE), ("equal", -SIZE)], ids=str
)
def test_at_the_boundary_each_false_verdict_is_at_most_alpha(expect, effect):
    """(a) The true effect sits on the decision's bound (size for better, ±size for equal):
    both "reproduced" and "not reproduced" are wrong, and each happens at most at alpha."""
    draws = 3000
    better, than = paired_scores(1, draws, 1, 3, effect)
    verdicts = judged([comparison(expect)], better, than)
    for wrong in (verdict.REPRODUCED, verdict.NOT_REPRODUCED):
        count = int((verdicts == wrong).sum())
        assert at_most(count, draws, ALPHA), f"{wrong}: {count / draws:.4f} > {ALPHA}"


@pytest.mark.parametrize("seeds", [3, 6])
def test_the_power_beyond_the_size_is_what_the_resolvable_effect_promises(seeds):
    """(b) At size + the resolvable effect of the design (its seeds, the true spread of the
    paired differences, alpha), "reproduced" comes at verdict.POWER."""
    draws = 3000
    sd = NOISE * np.sqrt(2)  # of a paired difference: the shared draw cancels
    margin = verdict.resolvable(sd / np.sqrt(seeds), seeds - 1, ALPHA)
    better, than = paired_scores(2, draws, 1, seeds, SIZE + margin)
    count = int((judged([comparison()], better, than) == verdict.REPRODUCED).sum())
    assert about(count, draws, verdict.POWER), f"power {count / draws:.4f}"


def bimodal_scores(seed: int, draws: int, seeds: int, fails: float):
    """Training errors of a net that trains (0.05) at most seeds but fails (0.7) with chance
    ``fails`` (like plain-56), against one that always trains (better, lower error)."""
    rng = np.random.default_rng(seed)
    shape = (draws, 1, seeds)
    better = 0.05 + 0.01 * rng.standard_normal(shape)
    trained = 0.05 + 0.01 * rng.standard_normal(shape)
    failed = 0.7 + 0.02 * rng.standard_normal(shape)
    return better, np.where(rng.random(shape) < fails, failed, trained)


@pytest.mark.parametrize("fails", [0.03, 0.1, 0.5, 0.8])
def test_bimodal_outcomes_at_the_boundary_the_measured_false_reproduced_rate(fails):
    """(c) The mean effect 0.65 * fails is the claim's size: a false "reproduced" at 3 seeds.

    Measured (3000 draws): 0.001 at fails = 0.03, 0.002 at 0.1, 0.14 at 0.5, 0.51 at 0.8. The t
    interval errs when every seed lands in the failing mode, with chance fails ** seeds: then the
    differences agree and the interval is narrow. That stays under alpha while failures are rare
    (fails < alpha ** (1 / seeds), 0.29 at 3 seeds, 0.48 at 5, 0.69 at 10) and exceeds it when
    they are common: the rule does not hold alpha for bimodal outcomes at the boundary. The
    same draws judged as "trains / fails" (``fails_beyond``: the exact test on failure rates,
    its size the true difference of rates) give no false "reproduced" at all (measured)."""
    draws, seeds = 3000, 3
    better, than = bimodal_scores(3, draws, seeds, fails)
    minimize = comparison(direction="minimize", size=0.65 * fails)
    count = int((judged([minimize], better, than) == verdict.REPRODUCED).sum())
    rate = f"{count / draws:.4f}"
    if fails**seeds < ALPHA:
        assert at_most(count, draws, ALPHA), rate
    else:
        assert about(count, draws, fails**seeds), rate
    failure_rates = comparison(direction="minimize", size=fails)
    failure_rates.fails_beyond = 0.4
    exact = int((judged([failure_rates], better, than) == verdict.REPRODUCED).sum())
    assert at_most(exact, draws, ALPHA), f"exact: {exact / draws:.4f}"


def test_a_floor_or_a_ceiling_is_never_decided():
    """(d) Differences that do not vary over seeds: both variants constant (0.000 at every
    seed, or any other level), or a constant difference between varying variants."""
    rng = np.random.default_rng(4)
    draws, seeds = 1000, 3
    levels = rng.choice([0.0, 1.0, rng.random()], size=(draws, 2, 1))
    constant = np.broadcast_to(levels, (draws, 2, seeds))
    varying = rng.random((draws, 1, seeds))
    better = np.concatenate([constant[:, :1], varying + levels[:, 1:]], axis=1)
    than = np.concatenate([constant[:, 1:], varying], axis=1)
    for draw_better, draw_than in zip(better, than, strict=True):
        for judgement in judge_draw([comparison()] * 2, draw_better, draw_than):
            assert judgement.verdict == verdict.INCONCLUSIVE
            assert "floor or ceiling" in judgement.reason and np.isnan(judgement.effect.low)


@pytest.mark.parametrize("k, draws", [(3, 2000), (14, 600)])
def test_holm_holds_the_familywise_false_reproduced_rate_at_alpha(k, draws):
    """(e) Every comparison of a claim null, on its bound: the chance that any of the k is
    falsely reproduced stays at most alpha (uncorrected it would be 1 - (1 - alpha) ** k:
    0.073 for 3 comparisons, 0.30 for 14). Measured: 0.019 (k = 3), 0.027 (k = 14, 600 draws).

    Holm runs over the decision each comparison points to, in either direction, so it bounds
    a wrong decision of either kind by 2 * alpha; a false "not reproduced" early in the order
    raises the later levels, which lifts the false "reproduced" rate a hair above alpha in
    theory (0.0253 for k = 3 in 400 000 draws of independent normal statistics), well inside
    the Monte-Carlo error here."""
    better, than = paired_scores(5, draws, k, 3, SIZE)
    verdicts = judged([comparison()] * k, better, than)
    count = int((verdicts == verdict.REPRODUCED).any(axis=1).sum())
    assert at_most(count, draws, ALPHA), f"{count / draws:.4f}"


def pilot_then_fresh(seed: int, draws: int, effect: float, max_seeds: int):
    """(f) The verdicts of a pilot-then-fresh design: a 3-seed pilot sizes the run, the
    fresh seeds alone are judged; and the sizes it chose."""
    pilot_better, pilot_than = paired_scores(seed, draws, 1, 3, effect)
    fresh_better, fresh_than = paired_scores(seed + 100, draws, 1, max_seeds, effect)
    verdicts, sizes = [], []
    for draw in range(draws):
        pilot = [(dict(enumerate(pilot_better[draw, 0])), dict(enumerate(pilot_than[draw, 0])))]
        sizing = verdict.confirmatory_size([comparison()], pilot, CONFIDENCE, max_seeds)
        n = sizing.seeds
        (judged_fresh,) = judge_draw(
            [comparison()], fresh_better[draw, :, :n], fresh_than[draw, :, :n]
        )
        verdicts.append(judged_fresh.verdict)
        sizes.append(sizing)
    return np.array(verdicts), sizes


def test_a_pilot_that_only_sizes_the_fresh_run_keeps_alpha_and_near_the_stated_power():
    """On the bound (true effect = size) a false "reproduced" stays at most alpha whatever
    the pilot chose; at size + size, the distance the run is sized to resolve, "reproduced"
    comes at about verdict.POWER: a little under it, since a 3-seed pilot misjudges the
    spread (measured: 0.025 false "reproduced", power 0.785; pilots chose 3-8+ seeds)."""
    draws, cap = 1000, 40
    null, _ = pilot_then_fresh(6, draws, SIZE, cap)
    count = int((null == verdict.REPRODUCED).sum())
    assert at_most(count, draws, ALPHA), f"{count / draws:.4f}"
    alternative, sizes = pilot_then_fresh(7, draws, 2 * SIZE, cap)
    uncapped = np.array([not s.capped for s in sizes])
    assert uncapped.mean() > 0.95 and {s.seeds for s in sizes} > {3, 4}
    power = float((alternative[uncapped] == verdict.REPRODUCED).mean())
    assert power >= verdict.POWER - 0.1, f"power {power:.3f}"


def failing_seeds(seed: int, draws: int, seeds: int, better_rate: float, than_rate: float):
    """Errors (draws, 1, seeds) of two nets that fail (0.7) at the given rates and train (0.05)
    otherwise, their failures correlated at a seed as a shared data draw would make them: both
    fail on a common uniform below their rates."""
    rng = np.random.default_rng(seed)
    shape = (draws, 1, seeds)
    common = rng.random(shape)
    return np.where(common < better_rate, 0.7, 0.05), np.where(common < than_rate, 0.7, 0.05)


@pytest.mark.parametrize("better_rate", [0.0, 0.3, 0.5])
def test_the_exact_failure_rate_test_holds_alpha_on_its_bound_however_seeds_pair(better_rate):
    """(g) than fails more often by exactly the size, with failures at a seed correlated: a
    false "reproduced" at most alpha, at 3 seeds and at 10 (measured: none in 2000 draws at
    any of these rates; Clopper-Pearson joined by Bonferroni is conservative)."""
    fails = comparison(direction="minimize", size=0.3)
    fails.fails_beyond = 0.5
    draws = 2000
    for seeds in (3, 10):
        better, than = failing_seeds(8, draws, seeds, better_rate, better_rate + 0.3)
        count = int((judged([fails], better, than) == verdict.REPRODUCED).sum())
        assert at_most(count, draws, ALPHA), f"{seeds} seeds: {count / draws:.4f}"


def test_the_exact_tests_power_at_the_resolvable_distance_is_what_it_reports():
    """(h) Failures drawn independently at better's rate and at size + the resolvable
    distance above it: "reproduced" comes at the power ``exact_power`` computes, about POWER."""
    fails = comparison(direction="minimize", size=0.2)
    fails.fails_beyond = 0.5
    seeds, better_rate, draws = 30, 0.1, 2000
    margin = verdict.resolvable_failures(seeds, better_rate, 0.2, ALPHA)
    than_rate = better_rate + 0.2 + margin
    power = verdict.exact_power(seeds, better_rate, than_rate, 0.2, ALPHA)
    assert verdict.POWER <= power < verdict.POWER + 0.02
    rng = np.random.default_rng(9)
    shape = (draws, 1, seeds)
    better = np.where(rng.random(shape) < better_rate, 0.7, 0.05)
    than = np.where(rng.random(shape) < than_rate, 0.7, 0.05)
    count = int((judged([fails], better, than) == verdict.REPRODUCED).sum())
    assert about(count, draws, power), f"power {count / draws:.4f} vs {power:.4f}"
