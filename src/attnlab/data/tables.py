"""Tables over time, split chronologically: a seeded random walk of daily prices, price CSV
files, and real series shipped with statsmodels (notes §2.4.2, on data available offline)."""

from __future__ import annotations

import importlib
from abc import abstractmethod
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from attnlab.core.errors import ConfigError
from attnlab.core.registry import Settings, register
from attnlab.data.loaders import check_split_fractions
from attnlab.data.series import SPLITS, SeriesDataModule, check_windows, split_sizes

PriceColumn = Literal["Open", "High", "Low", "Close", "Volume"]
PRICE_COLUMNS = get_args(PriceColumn)
# name -> (module of statsmodels.datasets, column); co2 is weekly with gaps, sunspots yearly.
STATSMODELS_SERIES = {"sunspots": ("sunspots", "SUNACTIVITY"), "co2": ("co2", "co2")}


def check_table(c: Settings) -> None:
    check_windows(c)
    check_split_fractions(c)


def check_prices(c: Settings) -> None:
    check_table(c)
    for name in c.features:
        if name not in PRICE_COLUMNS:
            c.fail("features", f"columns among {', '.join(PRICE_COLUMNS)}")
    sizes = split_sizes(c.n_steps, c.val_fraction, c.test_fraction)
    span = c.input_len + c.horizon
    if min(sizes.values()) < span:
        allowed = f"one window of data.input_len + data.horizon = {span} steps in each split"
        c.fail("n_steps", f"{allowed}; it gives {sizes}")


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


@register("data", "prices", check=check_prices)
class PricesDataModule(TableSeriesDataModule):
    """A seeded geometric random walk of daily prices (notes §2.4.2 without a download)."""

    source_key = "data.n_steps"

    def __init__(
        self,
        n_steps: int = 3000,
        seed: int = 0,
        target: PriceColumn = "Close",
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


@register("data", "prices_csv", check=check_table)
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


@register("data", "statsmodels_series", check=check_table)
class StatsmodelsSeriesDataModule(TableSeriesDataModule):
    """A real series shipped inside statsmodels, chosen by ``name`` (see STATSMODELS_SERIES).

    sunspots: yearly sunspot numbers 1700-2008; co2: weekly Mauna Loa CO2 (ppm) 1958-2001,
    its missing weeks filled with the last observed value.
    """

    def __init__(
        self,
        name: Literal["sunspots", "co2"] = "sunspots",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        input_len: int = 24,
        horizon: int = 6,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
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
