"""Sequence regression as seq2seq: a window of ``input_len`` steps -> the next ``horizon`` steps.

Sources: noisy sines (notes §2.4.1, many short curves, each its own sample), a seeded geometric
random walk shaped like daily prices, price CSV files and real series shipped with statsmodels
(notes §2.4.2, on data available offline), plus the adding problem for long memory.

A single series is split chronologically into train | val | test segments and every window lies
wholly inside one segment: no value is seen by two splits, and every value of a later split
comes after every value of an earlier one. Values are standardised with the mean and standard
deviation of the training split only; ``unscale`` maps target values back for plots.

Batches: ``(inputs (B, input_len, F), targets (B, horizon, 1))``, float32.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from attnlab.data.loaders import SplitLoaders
from attnlab.errors import ConfigError

SPLITS = ("train", "val", "test")
PRICE_COLUMNS = ("Open", "High", "Low", "Close", "Volume")
SINE_FREQUENCY = (0.01, 0.1)  # cycles per step: periods of 10 to 100 steps
SINE_AMPLITUDE = (0.5, 1.5)
# name -> (module of statsmodels.datasets, column); co2 is weekly with gaps, sunspots yearly.
STATSMODELS_SERIES = {"sunspots": ("sunspots", "SUNACTIVITY"), "co2": ("co2", "co2")}
# Predicting the constant 1.0 on the adding problem: Var(u1 + u2) = 2/12 for u ~ U[0, 1].
ADDING_BASELINE_MSE = 1 / 6


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


def random_walk_prices(
    n_steps: int, seed: int = 0, start_price: float = 100.0, volatility: float = 0.01
) -> pd.DataFrame:
    """Daily ``Date,Open,High,Low,Close,Volume`` rows of a geometric random walk (business days).

    log(Close_t / Close_t-1) ~ N(0, volatility^2); Open is the previous close with a small gap;
    High and Low lie above and below both; Volume is log-normal.
    """
    rng = np.random.default_rng(seed)
    close = start_price * np.exp(np.cumsum(rng.normal(0.0, volatility, n_steps)))
    previous = np.concatenate([[start_price], close[:-1]])
    open_ = previous * np.exp(rng.normal(0.0, volatility / 4, n_steps))
    wick = np.exp(np.abs(rng.normal(0.0, volatility / 2, (2, n_steps))))
    return pd.DataFrame(
        {
            "Date": pd.bdate_range("2000-01-03", periods=n_steps),
            "Open": open_,
            "High": np.maximum(open_, close) * wick[0],
            "Low": np.minimum(open_, close) / wick[1],
            "Close": close,
            "Volume": rng.lognormal(13.0, 0.3, n_steps).round(),
        }
    )


def adding_problem(n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015).

    Each step holds (value ~ U[0, 1], marker); exactly two markers are 1, one in each half of
    the sequence, and the target is the sum of the two marked values. Returns inputs
    (n, length, 2) and targets (n, 1, 1), float32. Predicting 1.0 scores ADDING_BASELINE_MSE.
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    rows = np.arange(n)
    first = rng.integers(0, length // 2, n)
    second = rng.integers(length // 2, length, n)
    markers = np.zeros_like(values)
    markers[rows, first] = markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    inputs = np.stack([values, markers], axis=-1)  # (n, length, 2)
    return inputs.astype(np.float32), targets.reshape(n, 1, 1).astype(np.float32)


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

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
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
    def dims(self) -> dict[str, int]:
        return {
            "in_features": int(self.mean.size),
            "out_features": 1,
            "input_len": self.input_len,
            "horizon": self.horizon,
            "target_column": self.target_index,
        }

    def baselines(self) -> dict[str, float]:
        """Test MSE and MAE (standardised, like the model's) of repeating the last observed
        value of the target over the whole horizon: the naive forecast a model must beat."""
        windows = self.datasets["test"]
        errors = torch.cat(
            [target - inputs[-1:, self.target_index : self.target_index + 1]  # (H, 1)
             for inputs, target in windows]
        )  # fmt: skip
        return {
            "test/mse_repeat_last": float(errors.pow(2).mean()),
            "test/mae_repeat_last": float(errors.abs().mean()),
        }

    def unscale(self, values: Tensor) -> Tensor:
        """Standardised target values -> the series' own units (any shape)."""
        index = self.target_index
        return values * float(self.std[index]) + float(self.mean[index])


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


class TableSeriesDataModule(SeriesDataModule):
    """One table of columns over time, split chronologically by fractions.

    The inputs are the ``target`` column's own history followed by the ``features`` columns;
    the target is the first input column. ``bounds`` keeps each split's [start, stop) rows.
    """

    # The config key to name when a split of the table is too short for one window.
    source_key = "data.input_len"

    def __init__(
        self,
        target: str,
        features: list[str] | tuple[str, ...] = (),
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        input_len: int = 48,
        horizon: int = 12,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(input_len, horizon, batch_size, num_workers)
        self.target = target
        self.columns = list(dict.fromkeys([target, *features]))
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    @abstractmethod
    def load_frame(self) -> pd.DataFrame:
        """The table, oldest row first; it holds at least ``self.columns``."""

    @property
    def source(self) -> object:
        """The value of ``source_key``, for error messages."""
        return getattr(self, self.source_key.removeprefix("data."))

    def make_splits(self) -> dict[str, np.ndarray]:
        frame = self.load_frame()
        if self.target not in frame.columns:
            raise ConfigError("data.target", self.target, f"a column of {list(frame.columns)}")
        for name in self.columns[1:]:
            if name not in frame.columns:
                raise ConfigError("data.features", name, f"columns of {list(frame.columns)}")
        values = frame[self.columns].to_numpy(dtype=np.float64)  # (T, F)
        sizes = split_sizes(len(values), self.val_fraction, self.test_fraction)
        span = self.input_len + self.horizon
        if min(sizes.values()) < span:
            raise ConfigError(
                self.source_key,
                self.source,
                f"a series whose train/val/test segments each hold one window of "
                f"data.input_len + data.horizon = {span} rows; {len(values)} rows give {sizes}",
            )
        self.bounds: dict[str, tuple[int, int]] = {}
        start = 0
        for name in SPLITS:
            self.bounds[name] = (start, start + sizes[name])
            start += sizes[name]
        return {name: values[None, start:stop] for name, (start, stop) in self.bounds.items()}


class PricesDataModule(TableSeriesDataModule):
    """A seeded geometric random walk of daily prices (notes §2.4.2 without a download)."""

    source_key = "data.n_steps"

    def __init__(
        self,
        n_steps: int = 3000,
        seed: int = 0,
        target: str = "Close",
        features: list[str] | tuple[str, ...] = (),
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        input_len: int = 48,
        horizon: int = 12,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(
            target, features, val_fraction, test_fraction, input_len, horizon, batch_size,
            num_workers,
        )  # fmt: skip
        self.n_steps, self.seed = n_steps, seed

    def load_frame(self) -> pd.DataFrame:
        return random_walk_prices(self.n_steps, self.seed)


class CSVPricesDataModule(TableSeriesDataModule):
    """A ``Date,Open,High,Low,Close,Volume`` CSV file (any numeric columns, chosen by name).

    Rows are sorted by ``date_column`` when it is given; every chosen value must be a number.
    """

    source_key = "data.csv_path"

    def __init__(
        self,
        csv_path: str,
        target: str = "Close",
        features: list[str] | tuple[str, ...] = (),
        date_column: str | None = "Date",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        input_len: int = 48,
        horizon: int = 12,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(
            target, features, val_fraction, test_fraction, input_len, horizon, batch_size,
            num_workers,
        )  # fmt: skip
        self.csv_path, self.date_column = csv_path, date_column

    def load_frame(self) -> pd.DataFrame:
        path = Path(self.csv_path)
        if not path.is_file():
            raise ConfigError("data.csv_path", self.csv_path, "an existing CSV file")
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            reason = str(error).strip().splitlines()[0]
            allowed = f"a readable CSV file ({reason})"
            raise ConfigError("data.csv_path", self.csv_path, allowed) from None
        if self.date_column is not None:
            if self.date_column not in frame.columns:
                allowed = f"a column of {list(frame.columns)}, or null for file order"
                raise ConfigError("data.date_column", self.date_column, allowed)
            try:
                dates = pd.to_datetime(frame[self.date_column])
            except (ValueError, TypeError):
                allowed = "a column of dates (e.g. 2026-11-27)"
                raise ConfigError("data.date_column", self.date_column, allowed) from None
            order = dates.argsort(kind="stable")
            frame = frame.iloc[order].reset_index(drop=True)
        for name in self.columns:
            if name not in frame.columns:
                continue  # make_splits names the missing column
            numbers = pd.to_numeric(frame[name], errors="coerce")
            if numbers.isna().any():
                row = int(numbers.isna().to_numpy().argmax())
                allowed = f"a file whose column {name} holds numbers; data row {row + 1} does not"
                raise ConfigError("data.csv_path", self.csv_path, allowed)
            frame[name] = numbers
        return frame


class StatsmodelsSeriesDataModule(TableSeriesDataModule):
    """A real series shipped inside statsmodels, chosen by ``name`` (see STATSMODELS_SERIES).

    sunspots: yearly sunspot numbers 1700-2008; co2: weekly Mauna Loa CO2 (ppm) 1958-2001,
    its missing weeks filled with the last observed value.
    """

    def __init__(
        self,
        name: str = "sunspots",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        input_len: int = 24,
        horizon: int = 6,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        if name not in STATSMODELS_SERIES:
            raise ConfigError("data.name", name, f"one of {', '.join(STATSMODELS_SERIES)}")
        super().__init__(
            STATSMODELS_SERIES[name][1], (), val_fraction, test_fraction, input_len, horizon,
            batch_size, num_workers,
        )  # fmt: skip
        self.name = name

    def load_frame(self) -> pd.DataFrame:
        module, column = STATSMODELS_SERIES[self.name]
        data = importlib.import_module(f"statsmodels.datasets.{module}").load_pandas().data
        series = data[column]
        if isinstance(series.index, pd.DatetimeIndex):
            # forward fill uses past weeks only, so no split sees values from a later one
            series = series.ffill().bfill()
        return series.to_frame()


class AddingDataModule(RegressionDataModule):
    """The adding problem as regression with horizon 1: (B, length, 2) -> (B, 1, 1).

    The splits are disjoint draws of one seeded generator. Values are not standardised; the
    constant prediction 1.0 scores ADDING_BASELINE_MSE (about 0.167), the level to beat.
    """

    def __init__(
        self,
        length: int = 100,
        n_train: int = 10000,
        n_val: int = 1000,
        n_test: int = 1000,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        self.length, self.seed = length, seed
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        inputs, targets = adding_problem(sum(self.sizes.values()), self.length, self.seed)
        cuts = np.cumsum([self.sizes[name] for name in SPLITS])[:-1]
        parts = zip(np.split(inputs, cuts), np.split(targets, cuts), strict=True)
        self.datasets = {
            name: TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
            for name, (x, y) in zip(SPLITS, parts, strict=True)
        }

    @property
    def dims(self) -> dict[str, int]:
        return {"in_features": 2, "out_features": 1, "input_len": self.length, "horizon": 1}

    def baselines(self) -> dict[str, float]:
        """The MSE of always answering 1.0, the mean of the target."""
        return {"test/mse_predict_1": ADDING_BASELINE_MSE}
