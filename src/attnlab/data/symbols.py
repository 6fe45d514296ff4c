"""Seq2seq toys over random strings: copy, reverse and sort (character level)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Literal

from attnlab.core.registry import Settings, register
from attnlab.data.loaders import check_loading
from attnlab.data.sampling import split_rng
from attnlab.data.seq2seq import Pairs, PairsDataModule

SYMBOL_TASKS: dict[str, Callable[[str], str]] = {
    "copy": lambda text: text,
    "reverse": lambda text: text[::-1],
    "sort": lambda text: "".join(sorted(text)),
}
ALPHABET = string.ascii_lowercase


def make_symbol_pairs(
    task: str, size: int, n_symbols: int, min_len: int, max_len: int, rng: random.Random
) -> Pairs:
    """``size`` random strings over the first ``n_symbols`` letters and their transforms."""
    transform = SYMBOL_TASKS[task]
    symbols = ALPHABET[:n_symbols]
    sources = ["".join(rng.choices(symbols, k=rng.randint(min_len, max_len))) for _ in range(size)]
    return [(source, transform(source)) for source in sources]


def check_symbols(c: Settings) -> None:
    check_loading(c)
    if not 1 <= c.n_symbols <= len(ALPHABET):
        c.fail("n_symbols", f"1 to {len(ALPHABET)} (letters a-z)")
    if c.min_len < 1:
        c.fail("min_len", ">= 1")
    if c.max_len < c.min_len:
        c.fail("max_len", f">= data.min_len={c.min_len}")


@register("data", "symbols", check=check_symbols)
class SymbolsDataModule(PairsDataModule):
    """copy / reverse / sort strings of ``min_len``..``max_len`` symbols (character level)."""

    def __init__(
        self,
        task: Literal["copy", "reverse", "sort"] = "reverse",
        n_symbols: int = 10,
        min_len: int = 5,
        max_len: int = 20,
        n_train: int = 10000,
        n_val: int = 500,
        n_test: int = 1000,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        bucketing: bool = False,
    ):
        super().__init__(batch_size=batch_size, num_workers=num_workers, bucketing=bucketing)
        self.task, self.n_symbols = task, n_symbols
        self.min_len, self.max_len = min_len, max_len
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = seed

    def make_splits(self) -> dict[str, Pairs]:
        shape = (self.n_symbols, self.min_len, self.max_len)
        return {
            split: make_symbol_pairs(self.task, size, *shape, split_rng(self.seed, split))
            for split, size in self.sizes.items()
        }
