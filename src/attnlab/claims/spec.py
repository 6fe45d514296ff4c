"""A claim of the notes as a config: variants, seeds, the compared metric and the verdict rule.

One YAML file per claim in ``claims/`` (shipped as attnlab/claims), checked against
:class:`Claim` by OmegaConf: an unknown key, a wrong type or a comparison naming a variant the
claim does not define is one line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from attnlab.core.errors import ConfigError
from attnlab.core.paths import claims_dir

DIRECTIONS = ("maximize", "minimize")
EXPECTATIONS = ("better", "equal")


@dataclass
class Comparison:
    """One expected ordering of two variants on one metric.

    ``size`` is the smallest effect of interest, in the metric's units, and one standard for
    both verdicts (attnlab.claims.verdict). ``expect: better``: ``better`` beats ``than`` by more
    than ``size``: reproduced when the interval lies above ``size``, not reproduced when it
    lies below. ``expect: equal``: the two differ by less than ``size``: reproduced when the
    interval lies inside ±``size``, not reproduced when it lies wholly beyond one bound.

    A side is a variant, or a contrast ``A - B``: A's score minus B's at each seed; the metric
    is a metric, or a contrast ``m - n`` of two metrics of one run. Either makes an interaction:
    "batch norm's rise in error from i.i.d. to few-class batches exceeds group norm's" is
    ``better: batch_few - batch_iid``, ``than: group_few - group_iid`` on test/error,
    maximized; "the fixed context loses more from short to long sources than attention" is
    ``metric: <short bucket> - <long bucket>``, ``better: fixed``, ``than: attention``.

    ``fails_beyond``: the outcome is "trains / fails". A seed fails when its metric is worse than
    this (above it when minimized, below when maximized), and the effect is ``than``'s failure
    rate over seeds minus ``better``'s, judged by an exact test; ``size`` is then a rate.
    """

    metric: str
    better: str
    than: str
    size: float
    than_metric: str | None = None  # ``than``'s metric when it differs (one run, two layers)
    direction: str = "maximize"  # or minimize (OmegaConf types no Literal: check() does)
    expect: str = "better"  # or equal
    fails_beyond: float | None = None


@dataclass
class Claim:
    """What is claimed, by whom, and how it is run and judged."""

    title: str
    notes: str  # the section of the study notes
    source: str  # the paper and its figure or table, with the effect it reports
    overrides: list[str]  # `attnlab train` overrides shared by every variant
    variants: dict[str, list[str]]  # variant name -> its own overrides
    comparisons: list[Comparison]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    buckets: str | None = None  # metric prefix plotted per bucket, e.g. test/acc_by_distance
    curves: list[str] = field(default_factory=list)  # metrics plotted against the step
    scales: dict[str, list[str]] = field(default_factory=dict)  # e.g. gpu: [scale=gpu, ...]
    confidence: float = 0.95
    command: list[str] = field(default_factory=list)  # an attnlab command instead of train
    name: str = ""  # the file's stem, filled in by load()


CONTRAST = " - "


def terms(name: str) -> list[str]:
    """The variants of a comparison's side, or the metrics of its metric: the name itself, or
    the two of a contrast ``A - B``."""
    return name.split(CONTRAST)


def names() -> list[str]:
    return sorted(path.stem for path in claims_dir().glob("*.yaml"))


def load(name: str, folder: Path | None = None) -> Claim:
    """The claim ``claims/<name>.yaml``, checked; a mistake is a ConfigError naming the file."""
    folder = folder or claims_dir()
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError("claim", name, f"one of {', '.join(known) or 'no claims'}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(Claim), OmegaConf.load(path))
        claim: Claim = OmegaConf.to_object(merged)
    except yaml.YAMLError as error:
        raise ConfigError(str(path), "...", f"valid YAML ({str(error).splitlines()[0]})") from None
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None) or "?"
        raise ConfigError(
            f"{path}: {key}", getattr(error, "value", None), str(error).splitlines()[0]
        ) from None
    claim.name = name
    check(claim, path)
    return claim


def check(claim: Claim, path: Path) -> None:
    """Rules spanning keys: comparisons name defined variants; enough seeds for an interval."""
    for index, comparison in enumerate(claim.comparisons):
        for side in ("better", "than"):
            value = getattr(comparison, side)
            if len(terms(value)) > 2 or not set(terms(value)) <= claim.variants.keys():
                key = f"{path}: comparisons[{index}].{side}"
                allowed = "a variant of the claim or a contrast 'A - B' of two: "
                raise ConfigError(key, value, allowed + ", ".join(claim.variants))
        if len(terms(comparison.metric)) > 2:
            key = f"{path}: comparisons[{index}].metric"
            raise ConfigError(key, comparison.metric, "a metric or a contrast 'm - n' of two")
        for key, allowed in (("direction", DIRECTIONS), ("expect", EXPECTATIONS)):
            if getattr(comparison, key) not in allowed:
                key_name = f"{path}: comparisons[{index}].{key}"
                raise ConfigError(
                    key_name, getattr(comparison, key), f"one of {', '.join(allowed)}"
                )
        if comparison.fails_beyond is not None:
            plain = [getattr(comparison, key) for key in ("better", "than", "metric")]
            if comparison.than_metric or any(CONTRAST in name for name in plain):
                key = f"{path}: comparisons[{index}].fails_beyond"
                allowed = "failure rates of two variants on one metric (no contrast)"
                raise ConfigError(key, comparison.fails_beyond, allowed)
            if not 0 <= comparison.size < 1:
                key = f"{path}: comparisons[{index}].size"
                raise ConfigError(key, comparison.size, "a failure rate in [0, 1)")
        if comparison.size < 0:
            raise ConfigError(f"{path}: comparisons[{index}].size", comparison.size, "a size >= 0")
    if len(set(claim.seeds)) < 2:
        raise ConfigError(f"{path}: seeds", claim.seeds, "two or more distinct seeds")
    if not 0 < claim.confidence < 1:
        raise ConfigError(f"{path}: confidence", claim.confidence, "a level in (0, 1)")
