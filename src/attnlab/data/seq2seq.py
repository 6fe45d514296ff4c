"""A DataModule for string pairs (source -> target), shared by every seq2seq data set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import partial

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset

from attnlab.data.text import CharVocab, pad_batch

Pairs = list[tuple[str, str]]
SPLITS = ("train", "val", "test")


@dataclass
class Seq2SeqBatch:
    src: torch.Tensor  # (B, S) source ids, right-padded
    tgt_in: torch.Tensor  # (B, T) BOS + target ids (teacher-forcing input)
    tgt_out: torch.Tensor  # (B, T) target ids + EOS (what is predicted)

    def to(self, device: torch.device) -> Seq2SeqBatch:
        return Seq2SeqBatch(*(t.to(device) for t in (self.src, self.tgt_in, self.tgt_out)))


class PairDataset(Dataset):
    def __init__(self, pairs: Pairs, src_vocab: CharVocab, tgt_vocab: CharVocab):
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


class PairsDataModule(L.LightningDataModule, ABC):
    """Character-level seq2seq data; subclasses implement ``make_splits``.

    After ``setup`` the module publishes ``dims``: the sizes a model and a task need.
    Vocabularies are built from the training split only; unseen characters become <unk>.
    """

    def __init__(self, batch_size: int = 128, num_workers: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.splits: dict[str, Pairs] = {}

    @abstractmethod
    def make_splits(self) -> dict[str, Pairs]:
        """The (source, target) pairs of each split in SPLITS."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.splits = self.make_splits()
        train = self.splits["train"]
        self.src_vocab = CharVocab(s for s, _ in train)
        self.tgt_vocab = CharVocab(t for _, t in train)
        self.datasets = {
            name: PairDataset(pairs, self.src_vocab, self.tgt_vocab)
            for name, pairs in self.splits.items()
        }

    @property
    def dims(self) -> dict[str, int]:
        every_pair = [pair for pairs in self.splits.values() for pair in pairs]
        return {
            "src_vocab_size": len(self.src_vocab),
            "tgt_vocab_size": len(self.tgt_vocab),
            "pad_id": self.src_vocab.pad_id,
            "bos_id": self.tgt_vocab.bos_id,
            "eos_id": self.tgt_vocab.eos_id,
            "max_src_len": max(len(s) for s, _ in every_pair),
            "max_tgt_len": max(len(t) for _, t in every_pair) + 1,  # + EOS
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=partial(collate, pad_id=self.src_vocab.pad_id),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
