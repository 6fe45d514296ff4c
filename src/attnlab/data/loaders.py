"""What every attnlab DataModule shares: one ``_loader(split, shuffle)`` serves all splits."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch.utils.data import DataLoader


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
