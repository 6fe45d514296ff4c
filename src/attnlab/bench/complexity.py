"""Per-layer cost of self-attention, recurrence and convolution (notes §9.3-9.4).

Vaswani et al. 2017, Table 1, for one layer of width d over n positions (kernel width k):

    layer            complexity    sequential operations   maximum path length
    self-attention   O(n^2 d)      O(1)                    O(1)
    recurrent        O(n d^2)      O(n)                    O(n)
    convolutional    O(k n d^2)    O(1)                    O(n/k); dilated O(log_k n)

``attnlab bench complexity`` times forward + backward of one layer of each kind over a grid of
n and d, counts the activations each saves for backward, fits log-log slopes, finds the length
where attention and recurrence take the same time, and measures what computing all positions at
once buys over one position after the other.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import optimize
from torch import Tensor, nn
from torch.utils import benchmark

from attnlab.cli import command_parser
from attnlab.models.attention import MultiHeadAttention

KERNEL = 3
HEAD_DIM = 64  # heads = d / 64, as in the base Transformer (512 / 8)
TOLERANCE = 0.3  # a fitted slope "matches" within this of its expected value
LABELS = {
    "attention": "self-attention (fused)",
    "attention_explicit": "self-attention (weights kept)",
    "gru": "GRU",
    "conv": f"Conv1d k={KERNEL}",
}
QUANTITIES = {
    "time": "time (s)",
    "saved": "saved activations (bytes)",
    "peak": "peak memory (bytes)",
}
# Vaswani et al. Table 1 exponents of the per-layer complexity, in n and in d.
TABLE1 = {"attention": {"n": 2, "d": 1}, "gru": {"n": 1, "d": 2}, "conv": {"n": 1, "d": 2}}
# Activations grow with n*d for every layer, plus B*heads*n^2 when the attention weights are kept
# (heads = d / 64, so that term too is linear in d). The fused kernel keeps only a log-sum-exp
# per query and recomputes the weights in backward.
MEMORY = {"n": {"attention_explicit": 2}, "d": {}}


@dataclass(frozen=True)
class Sweep:
    """One axis of the grid: ``axis`` runs over ``values``, the other dimension is ``fixed``."""

    name: str
    axis: str  # "n" or "d"
    values: tuple[int, ...]
    fixed: int
    timed: tuple[str, ...]
    counted: tuple[str, ...]  # layers whose activations are counted

    def shape(self, value: int) -> tuple[int, int]:
        """(n, d) of the point at ``value``."""
        return (value, self.fixed) if self.axis == "n" else (self.fixed, value)

    @property
    def title(self) -> str:
        return f"n (d={self.fixed})" if self.axis == "n" else f"d (n={self.fixed})"


@dataclass(frozen=True)
class Grid:
    lengths: tuple[int, ...]  # n of the length sweep
    widths: tuple[int, ...]  # d of the width sweeps
    width: int  # d of the length sweep, the crossover and the speed-ups
    length: int  # n of the width sweep of every layer (n < d fitted: projections dominate)
    long_length: int  # n of attention's second width sweep (n > d: n^2 d dominates)
    batch: int
    min_run_time: float  # seconds of repeats per timed point (blocked_autorange)
    rounds: int  # passes over the grid; each point keeps its fastest pass
    speedup_length: int  # n of the parallel-vs-sequential comparisons
    crossover_widths: tuple[int, ...]  # more d at which attention and the GRU sweep n

    def sweeps(self) -> list[Sweep]:
        every = ("attention", "gru", "conv")
        counted = ("attention", "attention_explicit", "gru", "conv")
        return [
            Sweep("n", "n", self.lengths, self.width, every, counted),
            Sweep("d", "d", self.widths, self.length, every, counted),
            Sweep("d_long", "d", self.widths, self.long_length, ("attention",), ()),
            *(  # from n = d on, where their FLOPs are equal, to past where their times cross
                Sweep(f"n_d{d}", "n", tuple(n for n in self.lengths if n >= d), d, pair, ())
                for d in self.crossover_widths
                for pair in [("attention", "gru")]
            ),
        ]

    def crossover_sweeps(self) -> dict[int, Sweep]:
        """d -> the sweep over n at that width, every width where attention meets the GRU."""
        names = {self.width: "n"} | {d: f"n_d{d}" for d in self.crossover_widths}
        by_name = {sweep.name: sweep for sweep in self.sweeps()}
        return {d: by_name[names[d]] for d in sorted(names)}

    def describe(self) -> str:
        return (
            f"n = {_span(self.lengths)} at d = {self.width} (all layers); "
            f"d = {_span(self.widths)} at n = {self.length} (all layers) and at "
            f"n = {self.long_length} (attention); batch {self.batch}; "
            f"{self.min_run_time:g} s of repeats per timed point, "
            f"{f'fastest of {self.rounds} rounds' if self.rounds > 1 else 'one round'}; "
            f"speed-ups at n = {self.speedup_length}, d = {self.width}; attention and the GRU "
            f"also over n at d = {_span(self.crossover_widths)} (the crossover against d)"
        )


def _span(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values))


DEFAULT = Grid(
    lengths=tuple(2**i for i in range(4, 13)),  # 16..4096
    widths=tuple(2**i for i in range(6, 11)),  # 64..1024
    width=128, length=128, long_length=2048, batch=4, min_run_time=1.0, rounds=3,
    speedup_length=1024, crossover_widths=(32, 64),
)  # fmt: skip
QUICK = Grid(
    lengths=(16, 32, 64, 128, 256), widths=(64, 128, 256), width=64, length=64, long_length=256,
    batch=2, min_run_time=0.01, rounds=1, speedup_length=64, crossover_widths=(16, 32),
)  # fmt: skip


class Layer(nn.Module):
    """One layer of a kind, (B, n, d) -> (B, n, d).

    ``attention`` is attnlab's MultiHeadAttention as models use it (fused scaled-dot-product
    kernel); ``attention_explicit`` is the same module with ``need_weights``, which computes and
    keeps the (B, heads, n, n) weights.
    """

    def __init__(self, kind: str, d: int, heads: int | None = None):
        super().__init__()
        self.kind = kind
        if kind in ("attention", "attention_explicit"):
            self.body = MultiHeadAttention(d, heads or max(1, d // HEAD_DIM))
        elif kind == "gru":
            self.body = nn.GRU(d, d, batch_first=True)
        elif kind == "conv":
            self.body = nn.Conv1d(d, d, KERNEL, padding="same")
        else:
            raise ValueError(f"unknown layer {kind!r}; one of {', '.join(LABELS)}")

    def forward(self, x: Tensor) -> Tensor:
        if self.kind == "gru":
            return self.body(x)[0]  # (B, n, d)
        if self.kind == "conv":
            return self.body(x.transpose(1, 2)).transpose(1, 2)  # (B, d, n) -> (B, n, d)
        return self.body(x, x, x, need_weights=self.kind == "attention_explicit")[0]  # (B, n, d)


def forward_flops(kind: str, n: int, d: int) -> float:
    """FLOPs of the matrix products of one sequence's forward pass."""
    if kind in ("attention", "attention_explicit"):
        return 8 * n * d * d + 4 * n * n * d  # 4 projections; Q K^T and weights V
    if kind == "gru":
        return 12 * n * d * d  # per step: 3 gates x (input and hidden) products
    return 2 * KERNEL * n * d * d


def saved_activation_bytes(layer: nn.Module, x: Tensor) -> int:
    """Bytes autograd keeps for the backward of ``layer(x)``: distinct storages, parameters not
    counted, the input ``x`` counted if the layer keeps it.

    Exact and deterministic (it counts tensors, not allocator state); it leaves out temporaries
    freed during forward and what backward itself allocates.
    """
    parameters = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(x)
    return sum(storages.values())


def forward_backward(layer: nn.Module, x: Tensor) -> Callable[[], None]:
    """A step that runs ``layer(x)`` and the gradients of x and every parameter."""
    inputs = [x, *layer.parameters()]
    grad_out = torch.randn_like(x)  # every layer keeps the input's shape

    def step() -> None:
        torch.autograd.grad(layer(x), inputs, grad_out)

    return step


def peak_bytes(step: Callable[[], None], device: torch.device) -> int:
    """CUDA memory allocated at the peak of ``step``, above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def median_seconds(step: Callable[[], None], threads: int, min_run_time: float) -> float:
    """Median seconds of ``step`` from torch.utils.benchmark (blocked_autorange)."""
    timer = benchmark.Timer("step()", globals={"step": step}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=min_run_time).median


@dataclass
class Point:
    sweep: str
    kind: str
    n: int
    d: int
    times: list[float] = field(default_factory=list)  # one median per round
    saved: float = math.nan
    peak: float = math.nan

    @property
    def time(self) -> float:
        """The fastest round: other load on the machine only ever adds time."""
        return min(self.times, default=math.nan)


def measure(
    grid: Grid, device: torch.device, threads: int, log: Callable[[str], None] = print
) -> list[Point]:
    """Every point of every sweep: time of forward + backward in each round, then saved
    activations and the CUDA peak once (they do not vary)."""
    points: dict[tuple[str, str, int, int], Point] = {}
    for round_ in range(1, grid.rounds + 1):
        for sweep in grid.sweeps():
            for value in sweep.values:
                n, d = sweep.shape(value)
                x = torch.randn(grid.batch, n, d, device=device, requires_grad=True)  # (B, n, d)
                for kind in dict.fromkeys(sweep.timed + sweep.counted):
                    point = points.setdefault(
                        (sweep.name, kind, n, d), Point(sweep.name, kind, n, d)
                    )
                    torch.manual_seed(0)
                    layer = Layer(kind, d).to(device)
                    step = forward_backward(layer, x)
                    if kind in sweep.timed:
                        point.times.append(median_seconds(step, threads, grid.min_run_time))
                    if kind in sweep.counted and round_ == 1:
                        point.saved = saved_activation_bytes(layer, x)
                        if device.type == "cuda":
                            point.peak = peak_bytes(step, device)
                    times = " ".join(f"{t * 1e3:9.2f}" for t in point.times) or "-"
                    log(
                        f"  round {round_} {sweep.name:6} n={n:<5} d={d:<5} {LABELS[kind]:29}"
                        f" {point.saved / 2**20:9.2f} MiB saved, ms: {times}"
                    )
    return list(points.values())


def fit_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares on log y = slope * log x + intercept: the exponent p of y ~ c x^p."""
    design = np.stack([np.log(x), np.ones(len(x))], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
    return float(slope), float(intercept)


def upper_part(values: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(fitted, outside): the upper half of a sweep, at least 3 points, where the asymptotic
    term dominates; below it fixed per-call and per-step overheads flatten the slope."""
    keep = max(3, (len(values) + 1) // 2)
    return values[-keep:], values[:-keep]


@dataclass
class Fit:
    quantity: str  # "time", "saved" or "peak"
    sweep: Sweep
    kind: str
    slope: float
    intercept: float
    fitted: tuple[int, ...]
    outside: tuple[int, ...]
    expected: float
    table1: int | None = None  # Vaswani et al.'s exponent (time only)

    @property
    def ok(self) -> bool:
        return abs(self.slope - self.expected) <= TOLERANCE


def expected_slope(quantity: str, sweep: Sweep, kind: str, fitted: tuple[int, ...]) -> float:
    """The slope to expect over ``fitted``: for time, the least-squares slope of the FLOP model
    over those same points (exact exponents for GRU and conv, between 1 and 2 for attention,
    whose projections add 8 n d^2 to its 4 n^2 d); for memory, the asymptotic exponent."""
    if quantity == "time":
        flops = [forward_flops(kind, *sweep.shape(v)) for v in fitted]
        return fit_slope(np.array(fitted, float), np.array(flops))[0]
    return MEMORY[sweep.axis].get(kind, 1)


def fit_all(points: list[Point], sweeps: list[Sweep]) -> list[Fit]:
    fits = []
    for quantity in QUANTITIES:
        for sweep in sweeps:
            for kind in sweep.timed if quantity == "time" else sweep.counted:
                rows = [p for p in points if p.sweep == sweep.name and p.kind == kind]
                values = tuple(getattr(p, sweep.axis) for p in rows)
                y = np.array([getattr(p, quantity) for p in rows])
                if np.isnan(y).any():  # e.g. peak memory off CUDA
                    continue
                fitted, outside = upper_part(values)
                slope, intercept = fit_slope(np.array(fitted, float), y[len(outside) :])
                expected = expected_slope(quantity, sweep, kind, fitted)
                table1 = TABLE1[kind][sweep.axis] if quantity == "time" else None
                fits.append(
                    Fit(quantity, sweep, kind, slope, intercept, fitted, outside, expected, table1)
                )
    return fits


def crossover(n: np.ndarray, t_attention: np.ndarray, t_rnn: np.ndarray) -> float | None:
    """The n beyond which attention stays slower than the RNN, interpolated in log-log between
    the last grid point where it is faster and the next; None if there is no such n on the grid."""
    gap = np.log(t_attention) - np.log(t_rnn)  # < 0 where attention is faster
    if gap[-1] < 0 or gap.min() >= 0:
        return None
    i = int(np.flatnonzero(gap < 0)[-1])
    share = gap[i] / (gap[i] - gap[i + 1])
    return float(np.exp(np.log(n[i]) + share * (np.log(n[i + 1]) - np.log(n[i]))))


def flop_crossover(d: int) -> float:
    """The n at which attention's FLOPs (8nd² + 4n²d) equal the GRU's (12nd²): n = d."""

    def extra(n: float) -> float:  # attention's FLOPs beyond the GRU's: < 0 below n*
        return forward_flops("attention", n, d) - forward_flops("gru", n, d)

    return float(optimize.brentq(extra, 1.0, 1e9))


def crossover_fits(grid: Grid, by: dict) -> tuple[dict[int, float], dict[str, float]]:
    """n* at each width where the measured times cross, and the log-log slopes of n* against d,
    measured and by the FLOP model (1: n* = d); no slope with fewer than two crossings."""
    found = {}
    for d, sweep in grid.crossover_sweeps().items():
        t_attention = np.array([by[sweep.name, "attention", n] for n in sweep.values])
        t_gru = np.array([by[sweep.name, "gru", n] for n in sweep.values])
        cross = crossover(np.array(sweep.values, float), t_attention, t_gru)
        if cross is not None:
            found[d] = cross
    if len(found) < 2:
        return found, {}
    widths = np.array(sorted(found), float)
    slope = fit_slope(widths, np.array([found[int(d)] for d in widths]))[0]
    model = fit_slope(widths, np.array([flop_crossover(int(d)) for d in widths]))[0]
    return found, {"crossover_slope_d": slope, "flop_crossover_slope_d": model}


def speedups(grid: Grid, device: torch.device, threads: int) -> dict[str, float]:
    """Seconds of forward passes (no_grad: inference) computed at once or position by position.

    sdpa: softmax(Q K^T / sqrt(dh)) V for all n queries in one call vs one query per call (the
    same products). gru: n nn.GRUCell steps, each waiting for the previous state, vs one
    MultiHeadAttention call over all n positions; torch's fused nn.GRU for reference.
    """
    b, n, d = grid.batch, grid.speedup_length, grid.width
    heads = max(1, d // HEAD_DIM)
    torch.manual_seed(0)
    q, k, v = torch.randn(3, b, heads, n, d // heads, device=device).unbind(0)  # (B, H, n, Dh)
    x = torch.randn(b, n, d, device=device)  # (B, n, d)
    attention, gru = Layer("attention", d).to(device), Layer("gru", d).to(device)
    cell = nn.GRUCell(d, d).to(device)

    def sdpa_all() -> None:
        F.scaled_dot_product_attention(q, k, v)  # (B, H, n, Dh)

    def sdpa_per_query() -> None:
        for i in range(n):
            F.scaled_dot_product_attention(q[:, :, i : i + 1], k, v)  # (B, H, 1, Dh)

    def gru_cells() -> None:
        h = x.new_zeros(b, d)  # (B, d)
        for t in range(n):
            h = cell(x[:, t], h)

    steps = {
        "sdpa_all": sdpa_all,
        "sdpa_per_query": sdpa_per_query,
        "attention": lambda: attention(x),
        "gru_cells": gru_cells,
        "gru_fused": lambda: gru(x),
    }
    seconds = dict.fromkeys(steps, math.inf)
    with torch.no_grad():
        for _ in range(grid.rounds):
            for name, step in steps.items():
                seconds[name] = min(seconds[name], median_seconds(step, threads, grid.min_run_time))
    return seconds


def dilated_depth(n: int) -> int:
    """Layers of a conv stack with dilations 1, k, k^2, ... whose receptive field covers n."""
    depth = 0
    while KERNEL**depth < n:
        depth += 1
    return depth


def sequential_table(n: int) -> str:
    rows = [
        ("layer", "complexity", "sequential operations", "maximum path length", f"at n = {n}"),
        ("---",) * 5,
        (LABELS["attention"], "O(n²·d)", "O(1)", "O(1)", "1 operation, path 1"),
        (LABELS["gru"], "O(n·d²)", "O(n)", "O(n)", f"{n} operations, path {n}"),
        (
            LABELS["conv"], "O(k·n·d²)", "O(1)", "O(n/k); dilated O(log_k n)",
            f"1 operation; a stack needs {math.ceil((n - 1) / (KERNEL - 1))} layers "
            f"({dilated_depth(n)} dilated) to connect n positions",
        ),
    ]  # fmt: skip
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _range(values: tuple[int, ...]) -> str:
    return f"{values[0]}..{values[-1]}" if values else "-"


def slope_table(fits: list[Fit]) -> str:
    rows = [
        ("measure", "layer", "sweep", "fit range", "outside the fit", "slope", "Table 1",
         "expected", f"within {TOLERANCE}"),
        ("---",) * 9,
    ]  # fmt: skip
    for fit in fits:
        axis = fit.sweep.axis
        rows.append(
            (
                QUANTITIES[fit.quantity].split(" (")[0], LABELS[fit.kind], fit.sweep.title,
                f"{axis} = {_range(fit.fitted)} ({len(fit.fitted)} pts)",
                f"{axis} = {_range(fit.outside)}" if fit.outside else "-",
                f"{fit.slope:.2f}", "-" if fit.table1 is None else str(fit.table1),
                f"{fit.expected:.2f}", "yes" if fit.ok else "NO",
            )
        )  # fmt: skip
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def report(
    grid: Grid,
    points: list[Point],
    fits: list[Fit],
    speed: dict[str, float],
    header: str,
) -> tuple[str, dict[str, float]]:
    """The printed report (markdown) and the metrics to log."""
    metrics = {f"{f.quantity}_slope_{f.sweep.name}/{f.kind}": f.slope for f in fits}
    metrics |= {f"flop_slope_{f.sweep.name}/{f.kind}": f.expected for f in fits if f.table1}
    lines = [header, "", slope_table(fits), ""]
    spread = sorted(
        ((max(p.times) / p.time, p) for p in points if len(p.times) > 1), key=lambda s: s[0]
    )
    if spread:
        worst, p = spread[-1]
        lines.append(
            f"Rounds: the slower round of a point took {spread[len(spread) // 2][0] - 1:.0%} "
            f"longer at the median point, {worst - 1:.0%} at most ({LABELS[p.kind]}, n = {p.n}, "
            f"d = {p.d}); each point keeps its fastest round."
        )
    lines.append(
        "Fits: least squares on log-log over the upper half of each sweep (at least 3 points); "
        "points below it were measured and are plotted but not fitted. 'expected' for time is "
        "the slope of the FLOP model over the same points (attention 8nd² + 4n²d with its "
        "projections, GRU 12nd², conv 6nd²), for memory the exponent. The fused kernel keeps "
        "a log-sum-exp per query for backward, not the n×n weights."
    )
    by = {(p.sweep, p.kind, p.n): p.time for p in points}
    t_attention = np.array([by["n", "attention", n] for n in grid.lengths])
    t_gru = np.array([by["n", "gru", n] for n in grid.lengths])
    found, slopes = crossover_fits(grid, by)
    d = grid.width
    cross = found.get(d)
    lines.append("")
    if cross is None:
        faster = "attention" if t_attention[-1] < t_gru[-1] else "the GRU"
        lines.append(
            f"Crossover at d = {d}: none on n = {_range(grid.lengths)}; {faster} is faster at "
            f"n = {grid.lengths[-1]}."
        )
    else:
        metrics["crossover_n"] = cross
        lines.append(
            f"Crossover at d = {d}: attention becomes slower than the GRU at n ≈ {cross:.0f} "
            f"(n/d = {cross / d:.1f}; log-log interpolation of the measured times)."
        )
    metrics |= {f"crossover_n/d{width}": n_star for width, n_star in found.items()} | slopes
    crossings = ", ".join(f"d = {width}: n ≈ {n_star:.0f}" for width, n_star in found.items())
    lines.append(
        f"Crossover against the width ({crossings or 'none on the grid'}): "
        + (
            f"n* grows as d^{slopes['crossover_slope_d']:.2f}; the FLOP model's n* = d grows "
            f"as d^{slopes['flop_crossover_slope_d']:.2f}."
            if slopes
            else "fewer than two widths cross on the grid, so no slope."
        )
    )
    if d in grid.lengths:  # equal FLOPs: 8nd² + 4n²d = 12nd² at n = d
        ratio = by["n", "gru", d] / by["n", "attention", d]
        metrics["gru_over_attention_time_at_n_eq_d"] = ratio
        lines.append(
            f"At n = d = {d} both layers do the same FLOPs (12nd²), where the FLOP model puts "
            f"the crossover; the GRU took {ratio:.1f}x the attention layer's time there."
        )
    n = grid.speedup_length
    ms = {name: f"{seconds * 1e3:.2f} ms" for name, seconds in speed.items()}
    queries = metrics["speedup/sdpa_all_vs_per_query"] = speed["sdpa_per_query"] / speed["sdpa_all"]
    steps = metrics["speedup/attention_vs_gru_cells"] = speed["gru_cells"] / speed["attention"]
    flops = forward_flops("attention", n, d) / forward_flops("gru", n, d)
    lines += [
        "",
        f"Parallel vs sequential (forward, no_grad, batch {grid.batch}, n = {n}, d = {d}):",
        f"- attention weights and output for all {n} queries in one call {ms['sdpa_all']} vs one "
        f"query per call {ms['sdpa_per_query']}: speed-up {queries:.1f}x (the same products)",
        f"- one MultiHeadAttention call {ms['attention']} vs {n} GRUCell steps {ms['gru_cells']}: "
        f"speed-up {steps:.1f}x, doing {flops:.1f}x the GRU's FLOPs (fused nn.GRU, still {n} "
        f"sequential steps: {ms['gru_fused']})",
        "",
        sequential_table(grid.lengths[-1]),
    ]
    return "\n".join(lines), metrics


def plot(points: list[Point], fits: list[Fit], out: Path) -> list[Path]:
    """One log-log figure per measure and axis: filled markers were fitted, hollow were not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for quantity, name in QUANTITIES.items():
        for axis in ("n", "d"):
            chosen = [f for f in fits if f.quantity == quantity and f.sweep.axis == axis]
            if not chosen:
                continue
            fig, ax = plt.subplots(figsize=(7, 5))
            for fit in chosen:
                rows = [p for p in points if p.sweep == fit.sweep.name and p.kind == fit.kind]
                x = np.array([getattr(p, axis) for p in rows], float)
                y = np.array([getattr(p, quantity) for p in rows])
                label = f"{LABELS[fit.kind]}, {fit.sweep.title}: slope {fit.slope:.2f}"
                (line,) = ax.plot(x, y, "o", mfc="none", label=label)
                inside = x >= fit.fitted[0]
                ax.plot(x[inside], y[inside], "o", color=line.get_color())
                xs = np.array([fit.fitted[0], fit.fitted[-1]], float)
                ax.plot(xs, np.exp(fit.intercept) * xs**fit.slope, "--", color=line.get_color())
            ax.set(xscale="log", yscale="log", xlabel=axis, ylabel=name)
            ax.set_title(f"{name.split(' (')[0]} vs {axis} (dashed: fit; hollow: not fitted)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"{quantity}_vs_{axis}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            paths.append(path)
    return paths


def write_points(points: list[Point], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sweep", "layer", "n", "d", "seconds", "saved_bytes", "peak_bytes"])
        for p in points:
            writer.writerow([p.sweep, p.kind, p.n, p.d, p.time, p.saved, p.peak])


DESCRIPTION = """\
Time forward + backward (torch.utils.benchmark) and count the activations saved for backward of
one self-attention layer (attnlab's MultiHeadAttention, heads = d/64), one GRU and one Conv1d
(k=3) over sequence lengths n and widths d; fit log-log slopes and compare them with Vaswani et
al. 2017, Table 1; find the n at which attention becomes slower than the GRU; time parallel vs
sequential execution. Writes table.md, points.csv and log-log plots to --out and logs an MLflow
run (experiment "bench"; $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)."""


def main(argv: list[str] | None = None) -> int:
    grids = "\n".join(
        textwrap.fill(f"{name} grid: {grid.describe()}.", 96)
        for name, grid in (("default (3-5 minutes on 2 CPU cores)", DEFAULT), ("--quick", QUICK))
    )
    parser = command_parser(
        "attnlab bench complexity",
        DESCRIPTION,
        epilog=grids,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="the tiny grid: seconds, a smoke test whose small "
        "sizes are overhead-bound, so its slopes say little",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench/complexity"),
                        help="output folder (default: %(default)s)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda also measures peak memory (default: %(default)s)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads (default: torch's, %(default)s here)")  # fmt: skip
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    parser.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="an MLflow tag of the run (attnlab claim run sets a few)")  # fmt: skip
    argv = sys.argv[1:] if argv is None else argv
    opts = parser.parse_args(argv)
    if opts.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if opts.threads < 1:
        parser.error("--threads must be at least 1")
    if any("=" not in tag for tag in opts.tag):
        parser.error("--tag takes KEY=VALUE")
    tags = dict(tag.split("=", 1) for tag in opts.tag)
    grid = QUICK if opts.quick else DEFAULT
    device = torch.device(opts.device)
    torch.set_num_threads(opts.threads)
    memory = "saved activations (autograd saved-tensor hooks)"
    if device.type == "cuda":
        memory += " and peak memory (torch.cuda.max_memory_allocated)"
    header = (
        f"attnlab bench complexity{' --quick' if opts.quick else ''}: "
        f"{datetime.date.today()}, {opts.device}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}\n"
        f"grid: {grid.describe()}\nmemory: {memory}"
    )
    print(header, flush=True)
    started_ms, load = int(time.time() * 1000), os.getloadavg()[0]
    points = measure(grid, device, opts.threads, log=lambda line: print(line, flush=True))
    fits = fit_all(points, grid.sweeps())
    speed = speedups(grid, device, opts.threads)
    text, metrics = report(grid, points, fits, speed, header)
    text += (
        f"\n\nLoad average (1 min) {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end, "
        f"on {os.cpu_count()} CPUs: more than this process means other work shared the cores."
    )
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "table.md").write_text(text + "\n")
    write_points(points, opts.out / "points.csv")
    plots = plot(points, fits, opts.out)
    print("\n" + text)
    print(f"\nwrote {opts.out / 'table.md'}, points.csv and {len(plots)} plots to {opts.out}")
    if not opts.no_mlflow:
        params = {
            "device": opts.device, "threads": str(opts.threads), "quick": str(opts.quick),
            "torch": torch.__version__, **{k: str(v) for k, v in asdict(grid).items()},
        }  # fmt: skip
        command = ["attnlab", "bench", "complexity", *argv]
        from attnlab.tracking.mlflow_run import record_finished_run

        run_id = record_finished_run(
            "complexity", command, params, metrics, opts.out, started_ms, tags
        )
        print(f"MLflow run {run_id} in experiment 'bench'")
    return 0
