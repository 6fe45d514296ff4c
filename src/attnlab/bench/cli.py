"""``attnlab bench NAME [options]``: run one benchmark of attnlab.bench."""

from __future__ import annotations

from attnlab.cli import Command, dispatch

BENCHMARKS = (
    Command(
        "complexity",
        "attnlab.bench.complexity",
        "time and memory of attention, GRU and conv layers vs n and d (notes §9.4)",
    ),
    Command(
        "perf",
        "attnlab.bench.perf",
        "attnlab vs plain PyTorch as ratios: models, decoding, train overhead, sweep threads",
    ),
)


def main(argv: list[str]) -> int:
    description = (
        "Each benchmark prints a table, writes it under --out and logs an MLflow run "
        "(unless --no-mlflow)."
    )
    return dispatch("attnlab bench", "benchmark", BENCHMARKS, argv, description)
