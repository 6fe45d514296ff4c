"""How shortcut baselines are named in MLflow, and how a report finds the best one again.

One naming convention: a baseline's score of the metric logged as ``<metric key>`` (such as
``test/acc`` or ``test/acc_by_group/5-8``) is logged as ``baseline/<metric key>/<name>``
(``baseline/test/acc/bag_of_tokens``). A data module's ``baselines()`` returns the keys without
the ``baseline/`` prefix, which the training run adds. Kept apart from attnlab.data.baselines,
which computes the scores, so that reading them imports neither torch nor scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "baseline/"
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
