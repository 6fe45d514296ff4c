"""Sequence regression data: seeded generators, leak-free chronological splits, train-only
standardisation, the CSV reader, statsmodels series and the adding problem's baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from attnlab.core.config import validate
from attnlab.core.contracts import SeriesDims
from attnlab.core.errors import ConfigError
from attnlab.data.adding import ADDING_BASELINE_MSE, AddingDataModule, adding_problem
from attnlab.data.series import SPLITS, SineDataModule, noisy_sines
from attnlab.data.tables import (
    CSVPricesDataModule,
    PricesDataModule,
    StatsmodelsSeriesDataModule,
    random_walk_prices,
)

WINDOW = dict(input_len=10, horizon=3, batch_size=8)


def write_prices(path: Path, frame: pd.DataFrame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def ramp_frame(n: int) -> pd.DataFrame:
    """Close = 1000 + row index, so every value names the time step it came from."""
    close = 1000.0 + np.arange(n)
    dates = pd.bdate_range("2020-01-01", periods=n)
    return pd.DataFrame({"Date": dates, "Open": close - 0.5, "Close": close, "Volume": close * 10})


def window_steps(data, split: str) -> set[int]:
    """The time steps (Close - 1000) of every value in every window of a split."""
    steps = set()
    for inputs, targets in data.datasets[split]:
        values = torch.cat([data.unscale(inputs[:, 0]), data.unscale(targets[:, 0])])
        steps.update(int(v) for v in torch.round(values - 1000).tolist())
    return steps


def test_generators_are_seeded():
    assert np.array_equal(noisy_sines(5, 20, seed=1), noisy_sines(5, 20, seed=1))
    assert not np.array_equal(noisy_sines(5, 20, seed=1), noisy_sines(5, 20, seed=2))
    pd.testing.assert_frame_equal(random_walk_prices(50, seed=3), random_walk_prices(50, seed=3))
    assert not random_walk_prices(50, seed=3).equals(random_walk_prices(50, seed=4))
    for a, b in zip(adding_problem(8, 12, seed=5), adding_problem(8, 12, seed=5), strict=True):
        assert np.array_equal(a, b)


def test_sines_without_noise_stay_within_their_amplitude():
    curves = noisy_sines(200, 60, noise_std=0.0, seed=0)
    assert curves.shape == (200, 60, 1) and curves.dtype == np.float32
    assert np.abs(curves).max() <= 1.5
    assert np.abs(noisy_sines(200, 60, noise_std=0.5, seed=0)).max() > 1.5


def test_random_walk_prices_look_like_daily_bars():
    frame = random_walk_prices(500, seed=0)
    assert list(frame.columns) == ["Date", "Open", "High", "Low", "Close", "Volume"]
    assert (frame["High"] >= frame[["Open", "Close"]].max(axis=1)).all()
    assert (frame["Low"] <= frame[["Open", "Close"]].min(axis=1)).all()
    assert (frame[["Open", "High", "Low", "Close", "Volume"]] > 0).all().all()
    assert frame["Date"].is_monotonic_increasing and frame["Date"].dt.dayofweek.max() < 5


def test_sine_module_splits_curves_and_batches():
    data = SineDataModule(n_train=40, n_val=8, n_test=8, noise_std=0.1, **WINDOW)
    data.setup("fit")
    assert data.dims == SeriesDims(in_features=1, input_len=10, horizon=3, target_column=0)
    assert {name: len(data.datasets[name]) for name in SPLITS} == {"train": 40, "val": 8, "test": 8}
    inputs, targets = next(iter(data.train_dataloader()))
    assert inputs.shape == (8, 10, 1) and targets.shape == (8, 3, 1)
    assert inputs.dtype == targets.dtype == torch.float32


def test_chronological_split_has_no_leakage(tmp_path: Path):
    """Every value of a window lies in its own split's rows, and the splits follow in time."""
    n = 200
    data = CSVPricesDataModule(write_prices(tmp_path / "ramp.csv", ramp_frame(n)), **WINDOW)
    data.setup("fit")
    assert data.bounds == {"train": (0, 140), "val": (140, 170), "test": (170, 200)}
    steps = {split: window_steps(data, split) for split in SPLITS}
    for split, (start, stop) in data.bounds.items():
        assert steps[split] == set(range(start, stop)), split  # every row used, none outside
    assert max(steps["train"]) < min(steps["val"]) <= max(steps["val"]) < min(steps["test"])
    # windows stay inside a split: 140 - 13 + 1 training windows, not more
    assert len(data.datasets["train"]) == 140 - 13 + 1


def test_repeat_last_baseline_of_a_ramp_is_off_by_the_steps_ahead(tmp_path: Path):
    """Close rises by 1 per row: repeating the last close misses step h of the horizon by h."""
    data = CSVPricesDataModule(write_prices(tmp_path / "ramp.csv", ramp_frame(200)), **WINDOW)
    data.setup("fit")
    step = 1 / float(data.std[data.target_index])  # one row's rise, standardised
    baselines = data.baselines()
    assert baselines["test/mae/repeat_last"] == pytest.approx((1 + 2 + 3) / 3 * step)
    assert baselines["test/mse/repeat_last"] == pytest.approx((1 + 4 + 9) / 3 * step**2)


def test_standardisation_uses_training_rows_only(tmp_path: Path):
    frame = ramp_frame(200)
    changed = frame.copy()
    changed.loc[140:, ["Open", "Close", "Volume"]] *= 100.0  # val and test rows only
    a = CSVPricesDataModule(write_prices(tmp_path / "a.csv", frame), features=["Open"], **WINDOW)
    b = CSVPricesDataModule(write_prices(tmp_path / "b.csv", changed), features=["Open"], **WINDOW)
    a.setup("fit")
    b.setup("fit")
    train = frame.loc[:139, ["Close", "Open"]].to_numpy()
    np.testing.assert_allclose(a.mean, train.mean(0))
    np.testing.assert_allclose(a.std, train.std(0))
    np.testing.assert_allclose(b.mean, a.mean)
    np.testing.assert_allclose(b.std, a.std)
    standardised = a.datasets["train"].series[0]  # (140, F)
    torch.testing.assert_close(standardised.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    # unscale returns the target in the file's units
    inputs, targets = a.datasets["test"][0]
    torch.testing.assert_close(a.unscale(targets[:, 0]), torch.tensor([1180.0, 1181.0, 1182.0]))


def test_csv_reader_sorts_by_date_and_chooses_columns(tmp_path: Path):
    frame = random_walk_prices(120, seed=1)
    path = write_prices(tmp_path / "prices.csv", frame.iloc[::-1])  # newest first, as some sites
    data = CSVPricesDataModule(path, target="Close", features=["Volume", "High"], **WINDOW)
    data.setup("fit")
    assert data.dims.in_features == 3
    inputs, targets = data.datasets["train"][0]
    expected = torch.tensor(frame["Close"].to_numpy()[:13], dtype=torch.float32)
    torch.testing.assert_close(data.unscale(torch.cat([inputs[:, 0], targets[:, 0]])), expected)


@pytest.mark.parametrize(
    "make_file, options, key, detail",
    [
        (None, {}, "data.csv_path", "an existing CSV file"),
        (lambda f: f.drop(columns="Close"), {}, "data.target='Close'", "a column of"),
        (lambda f: f, {"features": ["Adj Close"]}, "data.features='Adj Close'", "columns of"),
        (lambda f: f.head(60), {}, "data.csv_path", "60 rows give"),
        (lambda f: f.assign(Close=["n/a", *f["Close"][1:]]), {}, "data.csv_path", "data row 1"),
        (lambda f: f.drop(columns="Date"), {}, "data.date_column='Date'", "or null"),
    ],
    ids=["missing file", "missing target", "missing feature", "too few rows", "not a number",
         "no date column"],
)  # fmt: skip
def test_csv_reader_names_the_key_of_each_mistake(tmp_path, make_file, options, key, detail):
    path = tmp_path / "prices.csv"
    if make_file is not None:
        write_prices(path, make_file(random_walk_prices(100, seed=0)))
    data = CSVPricesDataModule(str(path), **options, **WINDOW)
    with pytest.raises(ConfigError) as error:
        data.setup("fit")
    assert str(error.value).startswith(key) and detail in str(error.value)


def test_prices_module_is_multivariate_and_seeded():
    a = PricesDataModule(n_steps=300, seed=2, features=["Open", "High", "Low", "Volume"], **WINDOW)
    b = PricesDataModule(n_steps=300, seed=2, features=["Open", "High", "Low", "Volume"], **WINDOW)
    a.setup("fit")
    b.setup("fit")
    assert a.dims.in_features == 5
    assert torch.equal(a.datasets["val"].series, b.datasets["val"].series)


@pytest.mark.parametrize("name, rows", [("sunspots", 309), ("co2", 2284)])
def test_statsmodels_series_load_and_window(name: str, rows: int):
    data = StatsmodelsSeriesDataModule(name, input_len=24, horizon=6, batch_size=16)
    data.setup("fit")
    assert data.bounds["test"][1] == rows  # co2's missing weeks are filled, not dropped
    for split in SPLITS:
        assert torch.isfinite(data.datasets[split].series).all()
    inputs, targets = next(iter(data.val_dataloader()))
    assert inputs.shape == (16, 24, 1) and targets.shape == (16, 6, 1)


def test_statsmodels_series_names_its_mistakes(make_cfg):
    with pytest.raises(ConfigError, match="data.name='nile' .*one of sunspots, co2"):
        validate(make_cfg("experiment=sines_rnn", "data=statsmodels_series", "data.name=nile"))
    with pytest.raises(ConfigError, match="data.input_len=60"):
        StatsmodelsSeriesDataModule("sunspots", input_len=60, horizon=6).setup("fit")


def test_adding_problem_targets_and_markers():
    inputs, targets = adding_problem(500, 30, seed=0)
    assert inputs.shape == (500, 30, 2) and targets.shape == (500, 1, 1)
    markers = inputs[..., 1]
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :15].sum(1) == 1).all() and (markers[:, 15:].sum(1) == 1).all()
    np.testing.assert_allclose(targets[:, 0, 0], (inputs[..., 0] * markers).sum(1), rtol=1e-6)


def test_adding_problem_constant_baseline_is_one_sixth():
    """Predicting 1.0 (the mean sum) scores Var(u1 + u2) = 1/6 ~ 0.167: the level to beat."""
    _, targets = adding_problem(50000, 20, seed=1)
    baseline = float(((targets - 1.0) ** 2).mean())
    assert baseline == pytest.approx(ADDING_BASELINE_MSE, abs=0.004)
    assert baseline == pytest.approx(0.167, abs=0.004)


def test_adding_module_batches():
    data = AddingDataModule(length=25, n_train=32, n_val=8, n_test=8, batch_size=4)
    data.setup("fit")
    assert data.dims == SeriesDims(in_features=2, input_len=25, horizon=1)
    inputs, targets = next(iter(data.test_dataloader()))
    assert inputs.shape == (4, 25, 2) and targets.shape == (4, 1, 1)
