"""Run names that say what differs from the sibling runs.

MLflow lists runs by name, so a name carries what tells a run apart: the overrides that a
multirun swept (``model=rnn_classifier`` among the jobs of ``-m model=conv_classifier,
rnn_classifier``), a sweep trial's number and sampled values (``trial-3 model.heads=4
optim.lr=0.0012``), or, for a single run, its overrides less those that only steer logging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# Overrides that do not change what is trained: left out of names (and of the compare view).
QUIET = ("experiment", "trial", "logger", "tags", "paths", "hydra", "callbacks.progress_bar",
         "callbacks.model_summary")  # fmt: skip
DEFAULT_NAME = "defaults"  # a run of its experiment as configured
MAX_LENGTH = 100
MAX_VALUE = 24


def split_override(text: str) -> tuple[str, str]:
    """``++model.heads=4`` -> (``model.heads``, ``4``); ``~key`` -> (``~key``, ``""``)."""
    key, _, value = text.lstrip("+").partition("=")
    return key.partition("@")[0], value


def is_quiet(key: str) -> bool:
    return any(key == q or key.startswith((f"{q}.", f"{q}/")) for q in QUIET)


def short_value(value: Any) -> str:
    """A value as a name shows it: floats to 3 significant digits, a path to its last part."""
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if "/" in text.strip("'\"/"):
        text = text.strip("'\"").rstrip("/").rsplit("/", 1)[-1]
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _short_keys(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Keys cut to their last part (``model.heads`` -> ``heads``) where that stays unique."""
    last = [key.rsplit(".", 1)[-1] for key, _ in pairs]
    return [
        (short if last.count(short) == 1 else key, value)
        for (key, value), short in zip(pairs, last, strict=True)
    ]


def describe(pairs: Iterable[tuple[str, Any]], prefix: str = "") -> str:
    """``key=value`` pairs joined by spaces. A name longer than MAX_LENGTH drops the keys'
    prefixes (``model.heads=4`` -> ``heads=4``), then ends in ``…+N`` for N pairs left out."""
    pairs = list(pairs)
    kept = [prefix] if prefix else []
    for candidate in (pairs, _short_keys(pairs)):
        items = [f"{key}={short_value(value)}" if value != "" else key for key, value in candidate]
        if len(" ".join(kept + items)) <= MAX_LENGTH:
            return " ".join(kept + items) or DEFAULT_NAME
    for item in items:
        if len(" ".join([*kept, item, "…+99"])) > MAX_LENGTH:
            break
        kept.append(item)
    return " ".join(kept) + f" …+{len(items) - len(kept) + bool(prefix)}"


def swept_keys(sweep_dir: str | Path) -> set[str] | None:
    """The keys Hydra's basic sweeper swept, read from the ``multirun.yaml`` it wrote (None when
    there is none: a single run, or another sweeper)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    hydra = OmegaConf.load(path).hydra
    params = hydra.sweeper.get("params") or {}
    texts = [f"{k}={v}" for k, v in params.items()] + list(hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(texts)
    return {o.key_or_group for o in overrides if o.is_sweep_override()}


def job_pairs(overrides: Iterable[str], swept: set[str] | None) -> list[tuple[str, str]]:
    """The (key, value) pairs of a job's overrides that tell it apart from its siblings; a key
    given twice has its last value, as in the config."""
    pairs = dict(split_override(text) for text in overrides)
    if swept:
        return [(key, value) for key, value in pairs.items() if key in swept]
    return [(key, value) for key, value in pairs.items() if not is_quiet(key.lstrip("~"))]


def trial_name(number: int, sampled: Mapping[str, Any]) -> str:
    return describe(sampled.items(), prefix=f"trial-{number}")
