"""Sequence classification probes that tell sequence models apart, each with a group per
example for per-bucket scores: long-range agreement (notes §9.1) and order vs count (notes §4.8,
§9.2). Every split is drawn from its own stream seeded by (seed, split).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import partial
from typing import Literal

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.core.contracts import TokenDims
from attnlab.core.registry import Settings, register
from attnlab.data.baselines import bag_of_tokens_predictions, classification_baselines, one_hot
from attnlab.data.bucketing import bucketed_loader
from attnlab.data.loaders import SplitLoaders, check_loading, stateful_loader
from attnlab.data.sampling import bucket_ranges, check_buckets, split_rng
from attnlab.data.seq2seq import SPLITS
from attnlab.data.text import pad_batch

Example = tuple[list[int], int, int]  # token ids, label, group (bucket index)


class ExampleDataset(Dataset):
    def __init__(self, examples: list[Example]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


def collate_examples(items: list[Example], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """-> tokens (B, S) right-padded with pad_id, labels (B,), groups (B,)."""
    tokens = pad_batch([ids for ids, _, _ in items], pad_id)  # (B, S)
    labels = torch.tensor([label for _, label, _ in items])  # (B,)
    groups = torch.tensor([group for _, _, group in items])  # (B,)
    return tokens, labels, groups


class SequenceClassificationDataModule(SplitLoaders, L.LightningDataModule, ABC):
    """Synthetic binary sequence classification with a bucketed variable (a distance, a length).

    Example i has label i % 2 and bucket (i // 2) % n_buckets, so labels are balanced within
    every bucket and chance is 50% everywhere; the examples are shuffled afterwards. Buckets in
    ``test_only`` (after ``ranges``) are drawn in the test split alone: values no model trained
    or was selected on. After ``setup``, ``dims`` holds vocab_size, num_classes, pad_id,
    group_names and max_src_len (over every split).
    """

    pad_id = 0
    num_classes = 2
    class_names: tuple[str, ...] = ()  # the labels' names, if they have names

    def __init__(
        self,
        ranges: list[tuple[int, int]],
        itos: list[str],
        n_train: int,
        n_val: int,
        n_test: int,
        seed: int,
        batch_size: int,
        num_workers: int,
        bucketing: bool,
    ):
        super().__init__()
        self.ranges = ranges
        self.itos = itos
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.bucketing = bucketing
        self.examples: dict[str, list[Example]] = {}
        self.test_only: list[tuple[int, int]] = []

    @abstractmethod
    def make_example(self, label: int, value: int, group: int, rng: random.Random) -> list[int]:
        """Token ids of one example with this label and bucketed variable ``value`` in bucket
        ``group`` (an index into ``ranges + test_only``)."""

    def make_split(self, split: str, rng: random.Random) -> list[Example]:
        ranges = self.ranges + self.test_only if split == "test" else self.ranges
        examples = []
        for i in range(self.sizes[split]):
            label, group = i % 2, (i // 2) % len(ranges)
            value = rng.randint(*ranges[group])
            examples.append((self.make_example(label, value, group, rng), label, group))
        rng.shuffle(examples)
        return examples

    def setup(self, stage: str | None = None) -> None:
        if self.examples:
            return
        self.examples = {
            split: self.make_split(split, split_rng(self.seed, split)) for split in SPLITS
        }
        self.datasets = {split: ExampleDataset(ex) for split, ex in self.examples.items()}

    @property
    def group_names(self) -> list[str]:
        return [f"{low}-{high}" for low, high in self.ranges + self.test_only]

    def baselines(self) -> dict[str, float]:
        """Test accuracy (and error) of chance, of a logistic regression on token counts fitted
        on train (``bag_of_tokens``) and of the task's :meth:`heuristics`, overall and per
        bucket: what a model must beat."""
        train, test = self.examples["train"], self.examples["test"]
        bag = bag_of_tokens_predictions(
            [(ids, y) for ids, y, _ in train], [(ids, y) for ids, y, _ in test], len(self.itos)
        )
        predictions = {
            "chance": np.full((len(test), self.num_classes), 1 / self.num_classes),
            "bag_of_tokens": one_hot(bag, self.num_classes),
            **self.heuristics(test),
        }
        labels = [y for _, y, _ in test]
        groups = [group for _, _, group in test]
        return classification_baselines(predictions, labels, groups, self.group_names)

    def heuristics(self, examples: list[Example]) -> dict[str, np.ndarray]:
        """{name: class probabilities (N, num_classes)} of rules a model might fall back on;
        none unless the task names some."""
        return {}

    @property
    def dims(self) -> TokenDims:
        every = (ids for examples in self.examples.values() for ids, _, _ in examples)
        return TokenDims(
            vocab_size=len(self.itos),
            num_classes=self.num_classes,
            pad_id=self.pad_id,
            max_src_len=max(map(len, every)),
            group_names=tuple(self.group_names),
        )

    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        collate = partial(collate_examples, pad_id=self.pad_id)
        if split == "train" and self.bucketing:
            data = self.datasets[split]
            lengths = [len(ids) for ids, _, _ in data.examples]
            return bucketed_loader(
                data, lengths, self.batch_size, collate, self.num_workers, self.trainer
            )
        return stateful_loader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate,
        )


VERB, MARK = 1, 2  # the verb's slot closes a sequence; the marker stands before the subject


def check_agreement(c: Settings) -> None:
    check_loading(c)
    check_buckets(c, "distance", 1)
    c.positive("n_nouns", "n_fillers", "max_prefix")
    c.fraction("attractor_rate", high_open=False)


@register("data", "agreement", check=check_agreement)
class AgreementDataModule(SequenceClassificationDataModule):
    """Long-range agreement (notes §9.1): which number must the verb at the end take?

    A sequence is ``prefix, <subj>, subject, d tokens, <verb>``; the subject is a noun drawn
    from the same nouns as every other noun of the sequence, told apart only by its place: the
    token right after the marker ``<subj>`` (which is the same in every sequence and carries
    no number). The label is the subject's number (0 singular, 1 plural), the group the bucket
    of d. The other tokens (a prefix of 1..``max_prefix`` and the d between) are each, with
    probability ``attractor_rate``, a noun of random number, else a filler (at least one of the
    d is a noun); then one of them, at a uniformly drawn place, becomes a noun of the number
    opposite to the subject's. So every sequence holds as many singular as plural nouns
    besides its coin attractors, whatever its label: the counts of tokens, a linear model on
    them and the majority number tell nothing, and the evening noun, unmarked among the
    attractors, cannot be read in the subject's stead. It is sometimes the last noun before the
    verb, so the number opposite to the last noun is right more often than chance, the more so
    the shorter the distance (``last_noun`` is logged per bucket: 0.29 at distances 1-9, 0.45
    at 30-40, data seed 3).

    A model must find the subject by its place and carry it d + 1 tokens to the verb: a
    causal CNN read at the verb sees it only when its receptive field exceeds d + 1. Beyond the
    field it sees some attractors and, often, the evening noun: leaning against the nouns it
    sees tips it a little above chance, no further.

    ``diagnostic``: the test split also holds a copy of every bucket, named
    ``attracted_<bucket>``, where every noun but the subject has the opposite number (the
    attractor case of Linzen et al. 2016, §6, at its strongest): the last noun is always wrong
    there and the majority nearly always. A model that reads the subject scores as on the plain
    buckets; one that reads the other nouns moves far from its plain score (down if it follows
    them, up if it leans against them, as the evening noun teaches).
    """

    class_names = ("singular", "plural")

    def __init__(
        self,
        min_distance: int = 1,
        max_distance: int = 40,
        bucket_edges: Sequence[int] = (5, 9, 14, 21),
        n_nouns: int = 4,
        n_fillers: int = 8,
        attractor_rate: float = 0.25,
        max_prefix: int = 3,
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 5000,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        bucketing: bool = False,
        diagnostic: bool = False,
    ):
        itos = [
            "<pad>", "<verb>", "<subj>",
            *(f"sg{i}" for i in range(n_nouns)),
            *(f"pl{i}" for i in range(n_nouns)),
            *(f"w{i}" for i in range(n_fillers)),
        ]  # fmt: skip
        super().__init__(
            bucket_ranges(min_distance, max_distance, bucket_edges),
            itos,
            n_train, n_val, n_test, seed, batch_size, num_workers, bucketing,
        )  # fmt: skip
        first = MARK + 1
        self.nouns = (
            range(first, first + n_nouns),  # singular
            range(first + n_nouns, first + 2 * n_nouns),  # plural
        )
        self.fillers = range(first + 2 * n_nouns, len(itos))
        self.attractor_rate = attractor_rate
        self.max_prefix = max_prefix
        if diagnostic:
            self.test_only = list(self.ranges)

    @property
    def group_names(self) -> list[str]:
        names = [f"{low}-{high}" for low, high in self.ranges]
        return names + [f"attracted_{name}" for name in names[: len(self.test_only)]]

    def make_example(self, label: int, value: int, group: int, rng: random.Random) -> list[int]:
        attracted = group >= len(self.ranges)  # the diagnostic copy of a bucket

        def noun(number: int) -> int:
            return rng.choice(self.nouns[number])

        def other() -> int:
            if rng.random() < self.attractor_rate:
                return noun(1 - label if attracted else rng.randrange(2))
            return rng.choice(self.fillers)

        others = [other() for _ in range(rng.randint(1, self.max_prefix) + value)]
        others[rng.randrange(len(others))] = noun(1 - label)  # evens the singular/plural counts
        prefix, middle = others[: len(others) - value], others[len(others) - value :]
        if all(self.number(token) is None for token in middle):  # a noun stands between
            middle[rng.randrange(value)] = noun(1 - label if attracted else rng.randrange(2))
        return [*prefix, MARK, noun(label), *middle, VERB]

    def number(self, token: int) -> int | None:
        """0 for a singular noun, 1 for a plural one, None otherwise."""
        for number, nouns in enumerate(self.nouns):
            if token in nouns:
                return number
        return None

    def subject(self, ids: Sequence[int]) -> int:
        """The subject of a sequence: the token after the marker."""
        return ids[list(ids).index(MARK) + 1]

    def heuristics(self, examples: list[Example]) -> dict[str, np.ndarray]:
        """``last_noun``: the number of the last noun before the verb (below chance, as the
        evening noun is sometimes last); ``majority``: the number with more nouns in the
        sequence (a tie is a coin, (0.5, 0.5)), at chance. Both are wrong on the ``attracted``
        buckets."""
        last, majority = [], []
        for ids, _, _ in examples:
            numbers = [n for n in map(self.number, ids) if n is not None]
            last.append(numbers[-1])
            plural = sum(numbers)
            singular = len(numbers) - plural
            majority.append(0.5 if plural == singular else float(plural > singular))
        p_plural = np.array(majority)[:, None]  # (N, 1)
        return {
            "last_noun": one_hot(last, self.num_classes),
            "majority": np.hstack([1 - p_plural, p_plural]),
        }


A, B = 1, 2


def check_order_count(c: Settings) -> None:
    check_loading(c)
    check_buckets(c, "len", 2 if c.question == "order" else 3)
    c.positive("n_fillers")
    if c.test_max_len is not None and c.test_max_len <= c.max_len:
        c.fail("test_max_len", f"null or > data.max_len={c.max_len}")


@register("data", "order_count", check=check_order_count)
class OrderCountDataModule(SequenceClassificationDataModule):
    """Order vs count (notes §4.8, §9.2): the same tokens, two questions; group = length bucket.

    ``order``: exactly one A and one B at random places among fillers; label 1 if A comes
    first. Both labels have the same bag of tokens, so only positions can tell them apart.
    ``count``: m A's and n B's (m != n, both >= 1) at random places; label 1 if A is in the
    majority. Positions do not matter: a bag of tokens suffices. ``test_max_len``: lengths
    max_len + 1 .. test_max_len are drawn in the test split alone, as its last bucket (length
    extrapolation: positions no model trained on).
    """

    def __init__(
        self,
        question: Literal["order", "count"] = "order",
        min_len: int = 8,
        max_len: int = 32,
        bucket_edges: Sequence[int] = (16, 24),
        n_fillers: int = 8,
        n_train: int = 10000,
        n_val: int = 1000,
        n_test: int = 2000,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        bucketing: bool = False,
        test_max_len: int | None = None,
    ):
        itos = ["<pad>", "A", "B", *(f"w{i}" for i in range(n_fillers))]
        super().__init__(
            bucket_ranges(min_len, max_len, bucket_edges),
            itos,
            n_train, n_val, n_test, seed, batch_size, num_workers, bucketing,
        )  # fmt: skip
        self.question = question
        self.fillers = range(3, len(itos))
        if test_max_len is not None:
            self.test_only = [(max_len + 1, test_max_len)]

    def make_example(self, label: int, value: int, group: int, rng: random.Random) -> list[int]:
        tokens = [rng.choice(self.fillers) for _ in range(value)]
        first, second = (A, B) if label else (B, A)
        if self.question == "order":
            i, j = sorted(rng.sample(range(value), 2))
            tokens[i], tokens[j] = first, second
            return tokens
        minority = rng.randint(1, (value - 1) // 2)
        majority = rng.randint(minority + 1, value - minority)
        places = rng.sample(range(value), majority + minority)
        for k, place in enumerate(places):
            tokens[place] = first if k < majority else second
        return tokens
