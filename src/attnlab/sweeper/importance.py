"""Which swept parameter matters most, with an interval over repeats of one sweep.

One sweep's importances (Optuna's fANOVA, Hutter et al. 2014) are an estimate from the trials
its sampler drew and the seeds they trained at; the same sweep run again (another sampler seed
and ``seed``, under another study name) draws others. Each repeat gives every parameter an
importance; the range over repeats is the interval. The rule: a parameter matters most when its
lowest importance over the repeats exceeds every other parameter's highest. The best trial
over all repeats is the configuration a claim then tests against the sweep's baseline, at
seeds no repeat trained at.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.importance import FanovaImportanceEvaluator, get_param_importances


@dataclass(frozen=True)
class Importance:
    """One parameter's fANOVA importance in each repeat (a share of the variance, 0..1)."""

    param: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


def importances(studies: list[optuna.Study], seed: int = 0) -> list[Importance]:
    """Every parameter swept in any of ``studies``, most important (by mean) first; a
    parameter a repeat's trials never varied counts 0 there. Each study needs two complete
    trials at least (Optuna's own condition)."""
    per_study = []
    for study in studies:
        evaluator = FanovaImportanceEvaluator(seed=seed)  # its random forest, seeded
        per_study.append(get_param_importances(study, evaluator=evaluator, normalize=True))
    params = set().union(*per_study)
    found = [Importance(p, tuple(float(f.get(p, 0.0)) for f in per_study)) for p in params]
    return sorted(found, key=lambda imp: (-imp.mean, imp.param))


def most_important(found: list[Importance]) -> str | None:
    """The parameter whose lowest importance over the repeats exceeds every other's highest;
    None when the ranges overlap (undecided) or only one repeat was run."""
    if len(found) < 2 or len(found[0].values) < 2:
        return None
    first, rest = found[0], found[1:]
    return first.param if first.low > max(imp.high for imp in rest) else None


def best_over_repeats(studies: list[optuna.Study]) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """The complete trial with the best objective over every repeat (the studies share a
    direction); a tie goes to the earlier study, then the earlier trial."""
    candidates = [
        (study, trial)
        for study in studies
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]
    sign = 1 if studies[0].direction == optuna.study.StudyDirection.MINIMIZE else -1
    return min(candidates, key=lambda pair: sign * pair[1].value)  # min keeps the first of ties
