"""What every attnlab DataModule shares: one ``_loader(split, shuffle)`` serves all splits."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.core.registry import Settings

SPLIT_SIZES = ("n_train", "n_val", "n_test")


def stateful_loader(dataset: Dataset, **options) -> StatefulDataLoader:
    """torchdata's loader that a checkpoint can resume mid-epoch, its workers started each epoch.

    Not persistent workers: a loader whose workers persist keeps one iterator for the whole
    run, and creating it draws a seed from the global generator; a resumed run creates it at
    the resume, one draw the uninterrupted run made at its start, so from the next epoch on it
    shuffled other batches (seen with ``data.num_workers=2``: 10 of 30 losses differed).
    Without persistence both runs create an iterator, and draw, at every epoch's start.
    """
    return StatefulDataLoader(dataset, persistent_workers=False, **options)


def check_loading(c: Settings) -> None:
    """What every data module's config shares: positive split sizes and batch, workers >= 0."""
    c.positive("batch_size", *(name for name in SPLIT_SIZES if name in c))
    c.non_negative("num_workers")


def check_split_fractions(c: Settings) -> None:
    """Validation and test fractions of one series or file, leaving rows to train on."""
    c.fraction("val_fraction", low_open=True)
    c.fraction("test_fraction", low_open=True)
    if c.val_fraction + c.test_fraction >= 1.0:
        c.fail("test_fraction", f"< 1 - data.val_fraction={c.val_fraction}, leaving training rows")


class SplitLoaders(ABC):
    """Mixin for a LightningDataModule (put it first among the bases): the train, val and test
    loaders come from ``self._loader(split, shuffle)``; only training batches are shuffled."""

    @abstractmethod
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """The DataLoader of one split."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
