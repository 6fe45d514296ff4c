"""Seeded synthetic tasks that tell sequence models apart.

Seq2seq (strings -> strings, through PairsDataModule): copy, reverse and sort random strings.
Classification (token ids -> a label, with a group per example for per-bucket scores):
long-range agreement (notes §9.1) and order vs count (notes §4.8, §9.2). Every split is drawn
from its own stream seeded by (seed, split), so each split is reproducible on its own.
"""

from __future__ import annotations

import random
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import partial

import lightning.pytorch as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from attnlab.data.bucketing import bucketed_loader
from attnlab.data.loaders import SplitLoaders
from attnlab.data.seq2seq import SPLITS, Pairs, PairsDataModule
from attnlab.data.text import pad_batch

SYMBOL_TASKS: dict[str, Callable[[str], str]] = {
    "copy": lambda text: text,
    "reverse": lambda text: text[::-1],
    "sort": lambda text: "".join(sorted(text)),
}
ALPHABET = string.ascii_lowercase

Example = tuple[list[int], int, int]  # token ids, label, group (bucket index)


def split_rng(seed: int, split: str) -> random.Random:
    """The random stream of one split: the same for a seed whatever the other splits' sizes."""
    return random.Random(f"{seed}:{split}")


def _check_range(name: str, low: int, high: int, least: int) -> None:
    if not least <= low <= high:
        raise ValueError(f"{name}: need {least} <= min ({low}) <= max ({high})")


def bucket_ranges(low: int, high: int, edges: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive ranges cut at ``edges`` (the first value of every bucket after the first).

    bucket_ranges(1, 40, [5, 9, 14, 21]) -> [(1, 4), (5, 8), (9, 13), (14, 20), (21, 40)].
    """
    edges = list(edges)
    if edges != sorted(set(edges)) or any(not low < edge <= high for edge in edges):
        raise ValueError(f"bucket edges {edges}: increasing, each in ({low}, {high}]")
    return list(zip([low, *edges], [edge - 1 for edge in edges] + [high], strict=True))


def make_symbol_pairs(
    task: str, size: int, n_symbols: int, min_len: int, max_len: int, rng: random.Random
) -> Pairs:
    """``size`` random strings over the first ``n_symbols`` letters and their transforms."""
    transform = SYMBOL_TASKS[task]
    symbols = ALPHABET[:n_symbols]
    sources = ["".join(rng.choices(symbols, k=rng.randint(min_len, max_len))) for _ in range(size)]
    return [(source, transform(source)) for source in sources]


class SymbolsDataModule(PairsDataModule):
    """copy / reverse / sort strings of ``min_len``..``max_len`` symbols (character level)."""

    def __init__(
        self,
        task: str = "reverse",
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
        if task not in SYMBOL_TASKS:
            raise ValueError(f"task={task!r}; allowed: {', '.join(SYMBOL_TASKS)}")
        if not 1 <= n_symbols <= len(ALPHABET):
            raise ValueError(f"n_symbols={n_symbols}; allowed: 1 to {len(ALPHABET)}")
        _check_range("length", min_len, max_len, 1)
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
    every bucket and chance is 50% everywhere; the examples are shuffled afterwards. After
    ``setup``, ``dims`` holds vocab_size, num_classes, pad_id, group_names and max_src_len.
    """

    pad_id = 0
    num_classes = 2

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

    @abstractmethod
    def make_example(self, label: int, value: int, rng: random.Random) -> list[int]:
        """Token ids of one example with this label and bucketed variable ``value``."""

    def make_split(self, size: int, rng: random.Random) -> list[Example]:
        examples = []
        for i in range(size):
            label, group = i % 2, (i // 2) % len(self.ranges)
            value = rng.randint(*self.ranges[group])
            examples.append((self.make_example(label, value, rng), label, group))
        rng.shuffle(examples)
        return examples

    def setup(self, stage: str | None = None) -> None:
        if self.examples:
            return
        self.examples = {
            split: self.make_split(self.sizes[split], split_rng(self.seed, split))
            for split in SPLITS
        }
        self.datasets = {split: ExampleDataset(ex) for split, ex in self.examples.items()}

    @property
    def group_names(self) -> list[str]:
        return [f"{low}-{high}" for low, high in self.ranges]

    @property
    def dims(self) -> dict:
        every = (ids for examples in self.examples.values() for ids, _, _ in examples)
        return {
            "vocab_size": len(self.itos),
            "num_classes": self.num_classes,
            "pad_id": self.pad_id,
            "group_names": self.group_names,
            "max_src_len": max(map(len, every)),
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        collate = partial(collate_examples, pad_id=self.pad_id)
        if split == "train" and self.bucketing:
            data = self.datasets[split]
            lengths = [len(ids) for ids, _, _ in data.examples]
            return bucketed_loader(
                data, lengths, self.batch_size, collate, self.num_workers, self.trainer
            )
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
        )


VERB = 1
SUBJECTS = (2, 3)  # singular, plural subject


class AgreementDataModule(SequenceClassificationDataModule):
    """Long-range agreement (notes §9.1): which number must the verb at the end take?

    A sequence is ``prefix, subject, d tokens, <verb>``; the subject is a marked token
    (<subj:sg> or <subj:pl>), the label its number (0 singular, 1 plural), the group the
    bucket of d. Shortcuts are closed by construction:

    - the d tokens are drawn without looking at the label: each is, with probability
      ``attractor_rate``, a noun of random number (at least one is a noun), else a filler. So
      nothing after the subject tells the label, and the last noun before the verb is a coin;
    - the prefix (1..``max_prefix`` tokens, before the subject) holds one noun of the
      subject's opposite number, so how many singular and plural markers a sequence holds does
      not depend on the label: the majority number is at chance too.

    A model must carry the subject d + 1 tokens to the verb: a causal CNN read at the verb
    sees it only when its receptive field exceeds d + 1.
    """

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
    ):
        _check_range("distance", min_distance, max_distance, 1)
        if not 0.0 <= attractor_rate <= 1.0:
            raise ValueError(f"attractor_rate={attractor_rate}; allowed: [0, 1]")
        if min(n_nouns, n_fillers, max_prefix) < 1:
            raise ValueError("n_nouns, n_fillers and max_prefix must be >= 1")
        itos = [
            "<pad>", "<verb>", "<subj:sg>", "<subj:pl>",
            *(f"sg{i}" for i in range(n_nouns)),
            *(f"pl{i}" for i in range(n_nouns)),
            *(f"w{i}" for i in range(n_fillers)),
        ]  # fmt: skip
        super().__init__(
            bucket_ranges(min_distance, max_distance, bucket_edges),
            itos,
            n_train, n_val, n_test, seed, batch_size, num_workers, bucketing,
        )  # fmt: skip
        first = len(SUBJECTS) + 2
        self.nouns = (
            range(first, first + n_nouns),  # singular
            range(first + n_nouns, first + 2 * n_nouns),  # plural
        )
        self.fillers = range(first + 2 * n_nouns, len(itos))
        self.attractor_rate = attractor_rate
        self.max_prefix = max_prefix

    def make_example(self, label: int, value: int, rng: random.Random) -> list[int]:
        def noun(number: int) -> int:
            return rng.choice(self.nouns[number])

        def noun_or_filler() -> int:
            if rng.random() < self.attractor_rate:
                return noun(rng.randrange(2))
            return rng.choice(self.fillers)

        middle = [noun_or_filler() for _ in range(value)]
        if all(self.number(token) is None for token in middle):
            middle[rng.randrange(value)] = noun(rng.randrange(2))
        prefix = [noun_or_filler() for _ in range(rng.randint(1, self.max_prefix) - 1)]
        prefix.insert(rng.randint(0, len(prefix)), noun(1 - label))
        return [*prefix, SUBJECTS[label], *middle, VERB]

    def number(self, token: int) -> int | None:
        """0 for a singular noun or subject, 1 for a plural one, None otherwise."""
        for number, nouns in enumerate(self.nouns):
            if token in nouns or token == SUBJECTS[number]:
                return number
        return None

    def baselines(self) -> dict[str, float]:
        """Test accuracy of chance and of the shortcuts: what a model must beat."""
        return {f"test/acc_{name}": value for name, value in self.shortcut_accuracies().items()}

    def shortcut_accuracies(self, split: str = "test") -> dict[str, float]:
        """Accuracy of the heuristics a model might fall back on, next to chance.

        ``last_noun``: the number of the last noun before the verb; ``majority``: the number
        with more markers in the sequence (a tie counts as half right, a coin's expectation).
        """
        last = majority = 0.0
        for ids, label, _ in self.examples[split]:
            numbers = [n for n in map(self.number, ids) if n is not None]
            last += numbers[-1] == label
            plural = sum(numbers)
            singular = len(numbers) - plural
            majority += 0.5 if plural == singular else float((plural > singular) == label)
        size = len(self.examples[split])
        return {"chance": 0.5, "last_noun": last / size, "majority": majority / size}


A, B = 1, 2
QUESTIONS = ("order", "count")


class OrderCountDataModule(SequenceClassificationDataModule):
    """Order vs count (notes §4.8, §9.2): the same tokens, two questions; group = length bucket.

    ``order``: exactly one A and one B at random places among fillers; label 1 if A comes
    first. Both labels have the same bag of tokens, so only positions can tell them apart.
    ``count``: m A's and n B's (m != n, both >= 1) at random places; label 1 if A is in the
    majority. Positions do not matter: a bag of tokens suffices.
    """

    def baselines(self) -> dict[str, float]:
        """Balanced labels: chance is 50% for both questions."""
        return {"test/acc_chance": 0.5}

    def __init__(
        self,
        question: str = "order",
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
    ):
        if question not in QUESTIONS:
            raise ValueError(f"question={question!r}; allowed: {', '.join(QUESTIONS)}")
        _check_range("length", min_len, max_len, 2 if question == "order" else 3)
        if n_fillers < 1:
            raise ValueError(f"n_fillers={n_fillers}; allowed: >= 1")
        itos = ["<pad>", "A", "B", *(f"w{i}" for i in range(n_fillers))]
        super().__init__(
            bucket_ranges(min_len, max_len, bucket_edges),
            itos,
            n_train, n_val, n_test, seed, batch_size, num_workers, bucketing,
        )  # fmt: skip
        self.question = question
        self.fillers = range(3, len(itos))

    def make_example(self, label: int, value: int, rng: random.Random) -> list[int]:
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
