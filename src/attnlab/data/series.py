"""Sequence regression as seq2seq: a window of ``input_len`` steps -> the next ``horizon`` steps.

The shared machinery (windows, standardisation, loaders) and noisy sines (notes §2.4.1, many
short curves, each its own sample). Tables over time (prices, CSV files, statsmodels' series)
are in attnlab.data.tables, the adding problem in attnlab.data.adding.

A single series is split chronologically into train | val | test segments and every window lies
wholly inside one segment: no value is seen by two splits, and every value of a later split
comes after every value of an earlier one. Values are standardised with the mean and standard
deviation of the training split only; ``unscale`` maps target values back for plots.

Batches: ``(inputs (B, input_len, F), targets (B, horizon, 1))``, float32.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import lightning.pytorch as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.core.contracts import SeriesDims
from attnlab.core.registry import Settings, register
from attnlab.data.loaders import SplitLoaders, check_loading, stateful_loader

SPLITS = ("train", "val", "test")
SINE_FREQUENCY = (0.01, 0.1)  # cycles per step: periods of 10 to 100 steps
SINE_AMPLITUDE = (0.5, 1.5)


def check_windows(c: Settings) -> None:
    """What every windowed series shares: sizes of the window and the loaders."""
    check_loading(c)
    c.positive("input_len", "horizon")


def noisy_sines(n: int, length: int, noise_std: float = 0.1, seed: int = 0) -> np.ndarray:
    """``n`` curves a*sin(2*pi*f*t + phase) + N(0, noise_std^2), each with its own a, f, phase.

    Returns (n, length, 1) float32.
    """
    rng = np.random.default_rng(seed)
    freq = rng.uniform(*SINE_FREQUENCY, size=(n, 1))
    amplitude = rng.uniform(*SINE_AMPLITUDE, size=(n, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1))
    clean = amplitude * np.sin(2 * np.pi * freq * np.arange(length) + phase)  # (n, length)
    noisy = clean + rng.normal(0.0, noise_std, size=clean.shape)
    return noisy[..., None].astype(np.float32)


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Rows of each chronological segment; train takes what val and test leave."""
    n_val, n_test = int(n * val_fraction), int(n * test_fraction)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


class WindowDataset(Dataset):
    """Every window of ``input_len + horizon`` consecutive steps of each series (stride 1)."""

    def __init__(self, series: Tensor, input_len: int, horizon: int, target_index: int = 0):
        self.series = series  # (S, T, F)
        self.input_len, self.horizon, self.target_index = input_len, horizon, target_index
        n_starts = series.size(1) - input_len - horizon + 1
        self.starts = [(s, t) for s in range(series.size(0)) for t in range(n_starts)]

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        s, t = self.starts[index]
        window = self.series[s, t : t + self.input_len + self.horizon]  # (L + H, F)
        target = window[self.input_len :, self.target_index : self.target_index + 1]  # (H, 1)
        return window[: self.input_len], target  # (L, F), (H, 1)


class RegressionDataModule(SplitLoaders, L.LightningDataModule):
    """Loaders over ``datasets``: split name -> pairs (inputs (L, F), targets (H, 1))."""

    def __init__(self, batch_size: int = 64, num_workers: int = 0):
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.datasets: dict[str, Dataset] = {}

    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        return stateful_loader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
        )


class SeriesDataModule(RegressionDataModule, ABC):
    """Standardised windows over series; subclasses give the raw values of each split.

    After ``setup`` it publishes ``dims`` and keeps ``mean``/``std`` (per feature, training
    split only) so ``unscale`` can return predictions of the target to the series' units.
    """

    target_index = 0  # the column of the inputs that is predicted

    def __init__(self, input_len: int, horizon: int, batch_size: int = 64, num_workers: int = 0):
        super().__init__(batch_size, num_workers)
        self.input_len, self.horizon = input_len, horizon

    @abstractmethod
    def make_splits(self) -> dict[str, np.ndarray]:
        """Raw values of each split in SPLITS: (n_series, length, F)."""

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        splits = self.make_splits()
        self.mean = splits["train"].mean(axis=(0, 1))  # (F,)
        std = splits["train"].std(axis=(0, 1))  # (F,)
        self.std = np.where(std > 0, std, 1.0)  # a constant training column is only centred
        self.datasets = {
            name: WindowDataset(
                torch.from_numpy(((values - self.mean) / self.std).astype(np.float32)),
                self.input_len,
                self.horizon,
                self.target_index,
            )
            for name, values in splits.items()
        }

    @property
    def dims(self) -> SeriesDims:
        return SeriesDims(
            in_features=int(self.mean.size),
            input_len=self.input_len,
            horizon=self.horizon,
            target_column=self.target_index,
        )

    def baselines(self) -> dict[str, float]:
        """Test MSE and MAE (standardised, like the model's) of repeating the last observed
        value of the target over the whole horizon: the naive forecast a model must beat."""
        windows = self.datasets["test"]
        errors = torch.cat(
            [target - inputs[-1:, self.target_index : self.target_index + 1]  # (H, 1)
             for inputs, target in windows]
        )  # fmt: skip
        return {
            "test/mse/repeat_last": float(errors.pow(2).mean()),
            "test/mae/repeat_last": float(errors.abs().mean()),
        }

    def unscale(self, values: Tensor) -> Tensor:
        """Standardised target values -> the series' own units (any shape)."""
        index = self.target_index
        return values * float(self.std[index]) + float(self.mean[index])


def check_sines(c: Settings) -> None:
    check_windows(c)
    c.non_negative("noise_std")


@register("data", "sines", check=check_sines)
class SineDataModule(SeriesDataModule):
    """Noisy sines (notes §2.4.1): each sample is its own curve of ``input_len + horizon`` steps.

    The splits hold different curves, drawn from one seeded generator.
    """

    def __init__(
        self,
        n_train: int = 4000,
        n_val: int = 500,
        n_test: int = 500,
        noise_std: float = 0.1,
        seed: int = 0,
        input_len: int = 48,
        horizon: int = 12,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(input_len, horizon, batch_size, num_workers)
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.noise_std, self.seed = noise_std, seed

    def make_splits(self) -> dict[str, np.ndarray]:
        total = sum(self.sizes.values())
        curves = noisy_sines(total, self.input_len + self.horizon, self.noise_std, self.seed)
        cuts = np.cumsum([self.sizes[name] for name in SPLITS])[:-1]
        return dict(zip(SPLITS, np.split(curves, cuts), strict=True))
