"""Seeded sampling shared by the synthetic tasks: one random stream per split, buckets."""

from __future__ import annotations

import random
from collections.abc import Sequence

from attnlab.core.registry import Settings


def split_rng(seed: int, split: str) -> random.Random:
    """The random stream of one split: the same for a seed whatever the other splits' sizes."""
    return random.Random(f"{seed}:{split}")


def bucket_ranges(low: int, high: int, edges: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive ranges cut at ``edges`` (the first value of every bucket after the first).

    bucket_ranges(1, 40, [5, 9, 14, 21]) -> [(1, 4), (5, 8), (9, 13), (14, 20), (21, 40)].
    """
    edges = list(edges)
    if edges != sorted(set(edges)) or any(not low < edge <= high for edge in edges):
        raise ValueError(f"bucket edges {edges}: increasing, each in ({low}, {high}]")
    return list(zip([low, *edges], [edge - 1 for edge in edges] + [high], strict=True))


def check_buckets(c: Settings, name: str, least: int) -> None:
    """``data.min_<name>`` <= ``data.max_<name>`` and bucket edges inside that range."""
    low, high = c[f"min_{name}"], c[f"max_{name}"]
    if low < least:
        c.fail(f"min_{name}", f">= {least}")
    if high < low:
        c.fail(f"max_{name}", f">= data.min_{name}={low}")
    try:
        bucket_ranges(low, high, c.bucket_edges)
    except ValueError:
        c.fail("bucket_edges", f"increasing values, each in (data.min_{name}={low}, {high}]")
