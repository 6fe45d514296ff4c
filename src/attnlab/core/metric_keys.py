"""How metrics are named in MLflow, for the runs that log them and the reports that read them:
baselines, buckets, the train-test gap. Imports neither torch nor scikit-learn.

Baselines: a baseline's score of the metric logged as ``<metric key>`` (such as ``test/acc`` or
``test/acc_by_group/5-8``) is logged as ``baseline/<metric key>/<name>``
(``baseline/test/acc/bag_of_tokens``). A data module's ``baselines()`` returns the keys without
the ``baseline/`` prefix, which the training run adds (attnlab.data.baselines computes them).

Buckets: a metric per bucket of examples is ``test/<metric>_by_<kind>/<bucket>``
(``test/exact_match_by_len/20-39``, ``test/acc_by_group/5-8``), buckets named ``lt20``,
``20-39``, ``ge40`` or ``1-4``; :func:`bucket_order` sorts them for every table and plot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PREFIX = "baseline/"
GAP = "gap"  # test/error - train_eval/error: the same best weights scored on both splits
# test/<metric>_by_<kind>/<bucket>, e.g. test/exact_match_by_len/20-39, test/acc_by_group/5-8
BUCKET_METRIC = re.compile(r"test/(?P<metric>\w+)_by_(?P<kind>\w+)/(?P<bucket>[^/]+)")
# Metrics where a lower score is the better one; every other metric is maximised.
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse")


def baseline_key(metric_key: str, name: str) -> str:
    """``test/acc``, ``chance`` -> ``test/acc/chance`` (the key a data module returns)."""
    return f"{metric_key}/{name}"


def baseline_names(metrics: Mapping[str, float], metric_key: str) -> dict[str, float]:
    """{baseline name: score} of ``metric_key`` among logged metrics (keys ``baseline/...``)."""
    start = f"{PREFIX}{metric_key}/"
    return {
        key[len(start) :]: value
        for key, value in metrics.items()
        if key.startswith(start) and "/" not in key[len(start) :]
    }


def lower_is_better(metric_key: str) -> bool:
    """Whether ``metric_key`` (``test/error``, ``test/mse_by_len/lt10``) is minimised."""
    metric = metric_key.split("/")[1] if "/" in metric_key else metric_key
    return metric.split("_by_")[0] in LOWER_IS_BETTER


def best_baseline(
    metrics: Mapping[str, float], metric_key: str, higher_is_better: bool | None = None
) -> tuple[str, float] | None:
    """The baseline with the best score of ``metric_key`` among logged metrics, as
    (name, score); None when none was logged. The direction is read from the metric's name
    (:data:`LOWER_IS_BETTER`) unless ``higher_is_better`` says it."""
    scores = baseline_names(metrics, metric_key)
    if not scores:
        return None
    higher = not lower_is_better(metric_key) if higher_is_better is None else higher_is_better
    pick = max if higher else min
    return pick(scores.items(), key=lambda item: item[1])


def train_test_gap(metrics: Mapping[str, float]) -> float | None:
    """``test/error - train_eval/error`` (the generalization gap); None unless both are logged."""
    if "test/error" in metrics and "train_eval/error" in metrics:
        return metrics["test/error"] - metrics["train_eval/error"]
    return None


def bucket_order(name: str) -> tuple[int, int, str]:
    """Sort key of bucket names: lt20 < 20-39 < ge40, 1-4 < 5-8 < 14-20, by the first number
    within each rank (lt, numbered, ge); names without a number come last, alphabetically."""
    number = re.search(r"\d+", name)
    if number is None:
        return 3, 0, name
    rank = 0 if name.startswith("lt") else 2 if name.startswith("ge") else 1
    return rank, int(number.group()), name


def bucket_metrics(metrics: Mapping[str, object]) -> dict[tuple[str, str], dict[str, float]]:
    """(metric, kind) -> {bucket: value} for every ``test/<metric>_by_<kind>/<bucket>`` key."""
    found: dict[tuple[str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        match = BUCKET_METRIC.fullmatch(key)
        if match:
            family = found.setdefault((match["metric"], match["kind"]), {})
            family[match["bucket"]] = float(value)
    return found
