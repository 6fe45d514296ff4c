"""Matplotlib figures for MLflow artifacts. Inputs are plain arrays and labels."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def attention_grid(
    weights: np.ndarray, sources: list[list[str]], outputs: list[list[str]], title: str
) -> Figure:
    """One heat map per (example, head): rows are output tokens, columns source tokens.

    weights: (N, H, T, S) attention probabilities; sources[n] has S_n <= S labels and
    outputs[n] T_n <= T labels, so padding is cropped away (notes §3.1's "you/你" matrix).
    """
    n_examples, n_heads = weights.shape[:2]
    fig, axes = plt.subplots(
        n_examples, n_heads, figsize=(2.6 * n_heads + 1, 2.4 * n_examples + 0.6), squeeze=False
    )
    for n in range(n_examples):
        src, out = sources[n], outputs[n]
        for h in range(n_heads):
            ax = axes[n, h]
            ax.imshow(weights[n, h, : len(out), : len(src)], cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(src)), src, fontsize=6, rotation=90)
            ax.set_yticks(range(len(out)), out, fontsize=6)
            if n == 0:
                ax.set_title(f"head {h}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
