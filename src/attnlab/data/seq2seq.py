"""A DataModule for string pairs (source -> target), shared by every seq2seq data set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import lightning.pytorch as L
import torch
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.core.contracts import PairDims
from attnlab.core.errors import ConfigError
from attnlab.data.baselines import copy_source_baselines
from attnlab.data.bucketing import bucketed_loader
from attnlab.data.loaders import SplitLoaders, stateful_loader
from attnlab.data.text import CharVocab, Vocab, pad_batch

Pairs = list[tuple[str, str]]
VocabFactory = Callable[[Iterable[str]], Vocab]
SPLITS = ("train", "val", "test")


@dataclass
class Seq2SeqBatch:
    src: torch.Tensor  # (B, S) source ids, right-padded
    tgt_in: torch.Tensor  # (B, T) BOS + target ids (teacher-forcing input)
    tgt_out: torch.Tensor  # (B, T) target ids + EOS (what is predicted)

    def to(self, device: torch.device) -> Seq2SeqBatch:
        return Seq2SeqBatch(*(t.to(device) for t in (self.src, self.tgt_in, self.tgt_out)))


class PairDataset(Dataset):
    def __init__(self, pairs: Pairs, src_vocab: Vocab, tgt_vocab: Vocab):
        self.pairs = pairs
        self.src = [src_vocab.encode(s) for s, _ in pairs]
        self.tgt = [tgt_vocab.encode(t, add_bos=True, add_eos=True) for _, t in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.src[index], self.tgt[index]


def collate(items: list[tuple[list[int], list[int]]], pad_id: int) -> Seq2SeqBatch:
    src = pad_batch([s for s, _ in items], pad_id)
    tgt = pad_batch([t for _, t in items], pad_id)
    return Seq2SeqBatch(src=src, tgt_in=tgt[:, :-1], tgt_out=tgt[:, 1:])


class PairsDataModule(SplitLoaders, L.LightningDataModule, ABC):
    """Seq2seq data over string pairs; subclasses implement ``make_splits``.

    After ``setup`` the module publishes ``dims``: the sizes a model and a task need.
    Vocabularies come from ``vocab_factory`` (characters by default) applied to the training
    split only; tokens it does not keep become <unk>. ``bucketing`` batches training examples
    by source length (attnlab.data.bucketing).
    """

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        vocab_factory: VocabFactory = CharVocab,
        bucketing: bool = False,
    ):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.vocab_factory = vocab_factory
        self.bucketing = bucketing
        self.splits: dict[str, Pairs] = {}

    @abstractmethod
    def make_splits(self) -> dict[str, Pairs]:
        """The (source, target) pairs of each split in SPLITS."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = self.make_splits()
        train = self.splits["train"]
        self.src_vocab = self.vocab_factory(s for s, _ in train)
        self.tgt_vocab = self.vocab_factory(t for _, t in train)
        self.datasets = {
            name: PairDataset(pairs, self.src_vocab, self.tgt_vocab)
            for name, pairs in self.splits.items()
        }

    def state_dict(self) -> dict[str, dict]:
        """The vocabularies, kept in every checkpoint: a checkpoint tested on data that builds
        other ids (``attnlab eval data=...``) is refused instead of read with the wrong ids."""
        return {"src_vocab": self.src_vocab.state(), "tgt_vocab": self.tgt_vocab.state()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for side in ("src_vocab", "tgt_vocab"):
            trained, built = state.get(side), getattr(self, side).state()
            if trained is not None and trained != built:
                raise ConfigError(
                    f"data ({side})",
                    f"{len(built['tokens'])} tokens",
                    f"the {len(trained['tokens'])} tokens, in the same order, the checkpoint "
                    "was trained with",
                )

    def baselines(self) -> dict[str, float]:
        """What copying each test source as its output scores (token accuracy, exact match,
        BLEU): a model that learned nothing but to copy gets this much."""
        return copy_source_baselines(self.splits["test"], self.tgt_vocab)

    @property
    def dims(self) -> PairDims:
        datasets = self.datasets.values()
        return PairDims(
            src_vocab_size=len(self.src_vocab),
            tgt_vocab_size=len(self.tgt_vocab),
            pad_id=self.src_vocab.pad_id,
            bos_id=self.tgt_vocab.bos_id,
            eos_id=self.tgt_vocab.eos_id,
            max_src_len=max(len(src) for data in datasets for src in data.src),
            max_tgt_len=max(len(tgt) for data in datasets for tgt in data.tgt) - 1,  # less BOS
        )

    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        collate_fn = partial(collate, pad_id=self.src_vocab.pad_id)
        data = self.datasets[split]
        if split == "train" and self.bucketing:  # batches of like source length (notes §3.3)
            lengths = [len(src) for src in data.src]
            return bucketed_loader(
                data, lengths, self.batch_size, collate_fn, self.num_workers, self.trainer
            )
        return stateful_loader(
            data,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate_fn,
        )
