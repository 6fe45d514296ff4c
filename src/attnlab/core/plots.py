"""Matplotlib figures for MLflow artifacts. Inputs are plain arrays and labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def attention_grid(
    weights: np.ndarray,
    sources: list[list[str]],
    outputs: list[list[str]],
    title: str,
    vmax: float | None = 1.0,
) -> Figure:
    """One heat map per (example, head): rows are output tokens, columns source tokens.

    weights: (N, H, T, S) attention probabilities; sources[n] has S_n <= S labels and
    outputs[n] T_n <= T labels, so padding is cropped away (notes §3.1's "you/你" matrix).
    Colours run from 0 to ``vmax``; None scales each map to its own largest weight.
    """
    n_examples, n_heads = weights.shape[:2]
    fig, axes = plt.subplots(
        n_examples, n_heads, figsize=(2.6 * n_heads + 1, 2.4 * n_examples + 0.6), squeeze=False
    )
    for n in range(n_examples):
        src, out = sources[n], outputs[n]
        for h in range(n_heads):
            ax = axes[n, h]
            ax.imshow(weights[n, h, : len(out), : len(src)], cmap="viridis", vmin=0, vmax=vmax)
            ax.set_xticks(range(len(src)), src, fontsize=6, rotation=90)
            ax.set_yticks(range(len(out)), out, fontsize=6)
            if n == 0:
                ax.set_title(f"head {h}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def forecast_windows(
    history: np.ndarray, truth: np.ndarray, predicted: np.ndarray, title: str
) -> Figure:
    """One panel per window: the input history, then the true and the predicted next steps.

    history: (N, L), truth and predicted: (N, H), in the series' own units; the first
    predicted step is at x = 0.
    """
    n_windows, input_len = history.shape
    future = np.arange(truth.shape[1])
    fig, axes = plt.subplots(n_windows, 1, figsize=(7, 1.8 * n_windows + 0.6), squeeze=False)
    for n, ax in enumerate(axes[:, 0]):
        ax.plot(np.arange(-input_len, 0), history[n], color="0.4", label="history")
        ax.plot(future, truth[n], color="tab:blue", marker=".", label="truth")
        ax.plot(future, predicted[n], color="tab:orange", marker=".", label="prediction")
        ax.axvline(-0.5, color="0.8", linewidth=0.8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("steps from the first predicted one", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def bucket_bars(buckets: list[str], values: list[float], title: str, xlabel: str) -> Figure:
    """One bar per bucket, in the given order, its height the metric's value, written on top.

    buckets: B labels (e.g. source lengths "lt20", "20-39", "ge40"); values: B numbers.
    Values all in [0, 1] (accuracies, exact match) get a fixed 0-1 axis for comparison.
    """
    fig, ax = plt.subplots(figsize=(1.0 * len(buckets) + 2.5, 3.2))
    bars = ax.bar(range(len(buckets)), values, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(buckets)), buckets, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    if all(0.0 <= v <= 1.0 for v in values):
        ax.set_ylim(0.0, 1.05)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
