"""Forecasters on every series module, and forecast/corpus runs through the real config tree."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from attnlab.core.errors import ConfigError
from attnlab.data.adding import AddingDataModule
from attnlab.data.series import SineDataModule
from attnlab.data.tables import (
    CSVPricesDataModule,
    PricesDataModule,
    StatsmodelsSeriesDataModule,
    random_walk_prices,
)
from attnlab.models.forecast import RNNForecaster, Seq2SeqForecaster
from attnlab.training.train import run

WINDOW = dict(input_len=12, horizon=4, batch_size=6)


def csv_module(tmp_path: Path) -> CSVPricesDataModule:
    path = tmp_path / "prices.csv"
    random_walk_prices(200, seed=0).to_csv(path, index=False)
    return CSVPricesDataModule(str(path), features=["High", "Low"], **WINDOW)


SERIES = {
    "sines": lambda _: SineDataModule(n_train=24, n_val=6, n_test=6, **WINDOW),
    "prices": lambda _: PricesDataModule(n_steps=200, features=["Open", "Volume"], **WINDOW),
    "csv": csv_module,
    "sunspots": lambda _: StatsmodelsSeriesDataModule("sunspots", **WINDOW),
    "co2": lambda _: StatsmodelsSeriesDataModule("co2", **WINDOW),
    "adding": lambda _: AddingDataModule(length=20, n_train=24, n_val=6, n_test=6, batch_size=6),
}
FORECASTERS = {
    "gru": partial(RNNForecaster, width=8, cell="gru"),
    "lstm": partial(RNNForecaster, width=8, cell="lstm", depth=2, dropout=0.1),
    "seq2seq": partial(Seq2SeqForecaster, width=8),
    "gru_layernorm": partial(RNNForecaster, width=8, cell="gru", norm="layer"),
    "seq2seq_batchnorm": partial(Seq2SeqForecaster, width=8, norm="batch"),
    "seq2seq_teacher_forced": partial(Seq2SeqForecaster, width=8, depth=2),
}


@pytest.mark.parametrize("series", SERIES)
@pytest.mark.parametrize("forecaster", FORECASTERS)
def test_forecaster_on_series(forecaster: str, series: str, tmp_path: Path):
    data = SERIES[series](tmp_path)
    data.setup("fit")
    torch.manual_seed(0)
    dims = data.dims
    model = FORECASTERS[forecaster](in_features=dims.in_features, horizon=dims.horizon)
    inputs, targets = next(iter(data.train_dataloader()))  # (B, L, F), (B, H, 1)
    if forecaster == "seq2seq_teacher_forced":
        predicted = model(inputs, targets, teacher_forcing=0.5)
    else:
        predicted = model(inputs)
    assert predicted.shape == targets.shape == (6, data.dims.horizon, 1)
    loss = F.mse_loss(predicted, targets)
    assert torch.isfinite(loss)
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name


def test_full_teacher_forcing_feeds_the_true_values():
    torch.manual_seed(0)
    model = Seq2SeqForecaster(in_features=2, horizon=5, width=8).eval()
    inputs, targets = torch.randn(3, 7, 2), torch.randn(3, 5, 1)
    forced = model(inputs, targets, teacher_forcing=1.0)
    changed = targets.clone()
    changed[:, 2] += 10.0  # seen by the decoder only at step 3
    forced_again = model(inputs, changed, teacher_forcing=1.0)
    torch.testing.assert_close(forced[:, :3], forced_again[:, :3])
    assert not torch.allclose(forced[:, 3:], forced_again[:, 3:])
    torch.testing.assert_close(model(inputs, targets, teacher_forcing=0.0), model(inputs))


@pytest.mark.parametrize("forecaster", [RNNForecaster, Seq2SeqForecaster])
def test_a_relative_forecaster_adds_its_output_to_the_last_value(forecaster):
    inputs = torch.randn(3, 7, 2)  # the target is column 1
    last = inputs[:, -1:, 1:2].expand(3, 5, 1)  # (B, H, 1): the repeat-last forecast
    torch.manual_seed(0)
    absolute = forecaster(in_features=2, horizon=5, width=8).eval()
    torch.manual_seed(0)
    relative = forecaster(in_features=2, horizon=5, width=8, relative=True, target_column=1)
    relative.eval()
    torch.testing.assert_close(relative(inputs), absolute(inputs) + last)  # same weights
    for parameter in relative.head.parameters():
        torch.nn.init.zeros_(parameter)
    torch.testing.assert_close(relative(inputs), last)  # a silent network repeats the last value


def test_prices_relative_to_the_last_close_train(make_cfg):
    cfg = make_cfg("experiment=prices", "model.relative=true", "debug=fdr", "logger=none", *QUIET)
    assert math.isfinite(run(cfg))


def test_relative_forecasting_needs_the_target_among_the_inputs(make_cfg):
    cfg = make_cfg("experiment=adding", "model.relative=true", "logger=none")
    with pytest.raises(ConfigError, match="model.relative=True .* its target is not one of"):
        run(cfg)


SINES_RNN = [  # what experiment=sines_rnn holds, typed by hand over no experiment
    "~experiment",
    "data=sines",
    "model=rnn_forecaster",
    "task=forecast",
    "objective.metric=test/mse",
    "objective.direction=minimize",
    "callbacks.model_checkpoint.monitor=val/loss",
    "callbacks.model_checkpoint.mode=min",
    "callbacks.early_stopping.monitor=val/loss",
    "callbacks.early_stopping.mode=min",
    "callbacks.attention_maps=null",
]
QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


def test_sines_rnn_experiment_holds_exactly_the_deltas(make_cfg):
    by_hand = make_cfg(*SINES_RNN)
    experiment = make_cfg("experiment=sines_rnn")
    for key in ("data", "model", "task", "objective", "callbacks", "optim", "trainer"):
        assert OmegaConf.to_container(experiment[key]) == OmegaConf.to_container(by_hand[key])


def test_sines_rnn_fast_dev_run_plots_the_forecast(make_cfg, tmp_path: Path):
    value = run(make_cfg(*SINES_RNN, *QUIET, "data.n_train=64", "debug=fdr", "logger=none"))
    assert 0.0 < value < 10.0
    assert (tmp_path / "output" / "plots" / "forecast.png").is_file()


def test_teacher_forced_seq2seq_on_prices_is_tracked(make_cfg, tracking_uri: str):
    from mlflow import MlflowClient

    cfg = make_cfg(
        "experiment=sines_rnn", "data=prices", "data.n_steps=400", "data.input_len=16",
        "data.horizon=4", "model=seq2seq_forecaster", "model.width=16",
        "task.teacher_forcing=0.5", "debug=limit", "trainer.max_epochs=1",
        "logger.log_model=false", *QUIET,
    )  # fmt: skip
    value = run(cfg)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("sines_rnn")
    (record,) = client.search_runs([experiment.experiment_id], max_results=5)
    assert record.data.metrics["test/mse"] == pytest.approx(value)
    assert {"val/loss", "val/mse", "val/mae", "test/mae", "train/loss_step"} <= set(
        record.data.metrics
    )
    plots = {a.path for a in client.list_artifacts(record.info.run_id, "plots")}
    assert "plots/forecast.png" in plots


def test_adding_problem_runs_through_the_forecast_task(make_cfg):
    cfg = make_cfg(
        "experiment=sines_rnn", "data=adding", "data.length=30", "data.n_train=64",
        "model.cell=lstm", "debug=fdr", "logger=none", *QUIET,
    )  # fmt: skip
    assert run(cfg) >= 0.0


def test_teacher_forcing_needs_a_model_that_takes_it(make_cfg):
    cfg = make_cfg("experiment=sines_rnn", "task.teacher_forcing=0.5", "logger=none")
    with pytest.raises(ConfigError, match="task.teacher_forcing=0.5"):
        run(cfg)


def test_corpus_fast_dev_run_with_the_transformer(make_cfg, tmp_path: Path):
    pairs = [(f"I see {n} cats.", f"Je vois {n} chats.") for n in range(40)]
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    cfg = make_cfg(
        "data=corpus", f"data.path={path}", "data.batch_size=8", "model=transformer",
        "model.width=32", "model.heads=2", "model.ff_width=64", "model.depth=1", "debug=fdr",
        "logger=none", *QUIET,
    )  # fmt: skip
    assert 0.0 <= run(cfg) <= 1.0
    assert (tmp_path / "output" / "plots" / "attention_layer1.png").is_file()
