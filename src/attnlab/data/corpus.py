"""Translation from a tab-separated parallel corpus (``source<TAB>target`` per line)."""

from __future__ import annotations

import random
from functools import partial
from typing import Literal

from attnlab.core.errors import ConfigError
from attnlab.core.registry import Settings, register
from attnlab.data.loaders import check_loading, check_split_fractions
from attnlab.data.seq2seq import SPLITS, Pairs, PairsDataModule
from attnlab.data.text import Vocab, read_parallel_corpus


def check_corpus(c: Settings) -> None:
    check_loading(c)
    check_split_fractions(c)
    c.positive("min_freq")


@register("data", "corpus", check=check_corpus)
class CorpusDataModule(PairsDataModule):
    """Sentence pairs of one file, dealt to train/val/test by a seeded shuffle.

    ``tokenizer`` is "char" or "word"; tokens seen fewer than ``min_freq`` times in the
    training split become <unk>.
    """

    def __init__(
        self,
        path: str,
        tokenizer: Literal["char", "word"] = "word",
        min_freq: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        vocabs = partial(Vocab, tokenizer=tokenizer, min_freq=min_freq)
        super().__init__(batch_size=batch_size, num_workers=num_workers, vocab_factory=vocabs)
        self.path = path
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.seed = seed

    def make_splits(self) -> dict[str, Pairs]:
        pairs = read_parallel_corpus(self.path)
        random.Random(self.seed).shuffle(pairs)
        n_val, n_test = int(len(pairs) * self.val_fraction), int(len(pairs) * self.test_fraction)
        sizes = {"train": len(pairs) - n_val - n_test, "val": n_val, "test": n_test}
        if min(sizes.values()) == 0:
            allowed = f"enough sentence pairs for every split; {len(pairs)} pairs give {sizes}"
            raise ConfigError("data.path", self.path, allowed)
        splits, start = {}, 0
        for name in SPLITS:
            splits[name] = pairs[start : start + sizes[name]]
            start += sizes[name]
        return splits
