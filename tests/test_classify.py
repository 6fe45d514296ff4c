"""Classification task, gradient-norm callback, He et al.'s schedule and the image experiments."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch
import yaml
from mlflow import MlflowClient
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from attnlab.core.config import validate
from attnlab.core.paths import sweeps_dir
from attnlab.tasks.classify import ClassifyTask
from attnlab.training.callbacks import BlockLesion, GradientNorms
from attnlab.training.schedules import warmup_multistep
from attnlab.training.train import run

QUICK = ["model.depth=8", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


class Lookup(nn.Module):
    """Predicts class ``x[:, 0]``: a model whose accuracy a test can choose exactly."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.one_hot(x[:, 0].long(), self.num_classes).float()


def test_error_is_one_minus_accuracy_and_groups_are_scored_apart():
    # 8 examples: group 0 ("short") all right, group 1 ("long") one right out of four.
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    predicted = torch.tensor([0, 1, 2, 0, 1, 0, 1, 2])
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    loader = DataLoader(TensorDataset(predicted[:, None], y, group), batch_size=3)
    task = ClassifyTask(Lookup(3), torch.optim.SGD, num_classes=3, group_names=["short", "long"])
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(task, dataloaders=loader, verbose=False)
    assert metrics["val/acc"] == pytest.approx(5 / 8)
    assert metrics["val/error"] == pytest.approx(3 / 8)
    assert metrics["val/acc_by_group/short"] == pytest.approx(1.0)
    assert metrics["val/acc_by_group/long"] == pytest.approx(1 / 4)
    assert set(ClassifyTask.metric_names) == {"loss", "acc", "error"}


def test_warmup_multistep_follows_he_et_al():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = warmup_multistep(optimizer, total_steps=100, warmup_steps=10)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[10] == pytest.approx(0.1) and lrs[49] == pytest.approx(0.1)
    assert lrs[50] == pytest.approx(0.01) and lrs[74] == pytest.approx(0.01)
    assert lrs[75] == pytest.approx(0.001) and lrs[99] == pytest.approx(0.001)


def lrs_of(total_steps: int, warmup_steps: int) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_multistep(optimizer, total_steps=total_steps, warmup_steps=warmup_steps)
    lrs = []
    for _ in range(total_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("total_steps", [4, 9, 120, 1000])
def test_a_run_shorter_than_its_warmup_still_decays_at_each_milestone(total_steps):
    """120 steps with 100 of warmup once gave 1.0 at step 100 and 0.1 from step 101 on."""
    lrs = lrs_of(total_steps, warmup_steps=100)
    half, three_quarters = round(0.5 * total_steps), round(0.75 * total_steps)
    assert lrs[half - 1] == pytest.approx(1.0)
    assert lrs[half] == pytest.approx(0.1) and lrs[three_quarters - 1] == pytest.approx(0.1)
    assert lrs[three_quarters] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.01)
    assert lrs[0] < 1.0 or total_steps < 4  # some warmup is left where there is room for it


def test_lr_follows_the_batch_size(make_cfg):
    cfg = make_cfg("experiment=norm_batch", "data.batch_size=32")
    assert cfg.optim.lr == pytest.approx(0.1 * 32 / 128)


SWEPT = sorted(  # the basic sweeper's grids of sweeps/: every value of every key
    (path.stem, key, value)
    for path in sweeps_dir().glob("*.yaml")
    if "override /hydra/sweeper: optuna" not in path.read_text()
    for key, values in yaml.safe_load(path.read_text())["hydra"]["sweeper"]["params"].items()
    for value in str(values).split(",")
)


def test_the_grids_are_found():
    assert {sweep for sweep, _, _ in SWEPT} >= {"degradation", "resnet_v1_v2", "shortcuts"}


@pytest.mark.parametrize("sweep, key, value", SWEPT, ids=["-".join(s) for s in SWEPT])
def test_every_grid_value_is_a_valid_config(sweep: str, key: str, value: str, make_cfg):
    cfg = make_cfg(f"sweep={sweep}", f"{key}={value}")
    validate(cfg)
    assert str(cfg[key.split(".")[0]][key.split(".")[1]]) == value


def test_gradient_norms_skip_models_without_first_and_last_layer(caplog):
    callback = GradientNorms()
    module = SimpleNamespace(model=nn.Linear(2, 2))
    with caplog.at_level(logging.INFO):
        callback.on_fit_start(SimpleNamespace(loggers=[]), module)
    assert not callback.active
    assert "no first_layer/last_layer" in caplog.text
    callback.on_before_optimizer_step(None, module, None)  # does nothing


def test_block_lesion_logs_the_error_of_each_deleted_block_and_the_rises(make_cfg, tracking_uri):
    lesion = "callbacks.lesion={_target_:attnlab.training.callbacks.BlockLesion}"
    cfg = make_cfg("experiment=digits_resnet", "debug=limit", *QUICK, "model.depth=14", lesion)
    value = run(cfg)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("digits_resnet")
    (record,) = client.search_runs([experiment.experiment_id], max_results=5)
    metrics = record.data.metrics
    per_block = {k: v for k, v in metrics.items() if k.startswith("test/lesion/error_b")}
    # ResNet-14: 2 blocks a stage; the first of stages 2 and 3 changes the shape
    assert sorted(per_block) == [f"test/lesion/error_b{i:02d}" for i in (0, 1, 3, 5)]
    rises = [error - (1 - value) for error in per_block.values()]
    assert metrics["test/lesion/error_rise_mean"] == pytest.approx(sum(rises) / 4, abs=1e-6)
    assert metrics["test/lesion/error_rise_max"] == pytest.approx(max(rises), abs=1e-6)


def test_block_lesion_skips_models_without_deletable_blocks(caplog):
    callback = BlockLesion()
    module = SimpleNamespace(model=nn.Linear(2, 2))
    with caplog.at_level(logging.INFO):
        callback.on_test_epoch_start(None, module)
    assert "no deletable blocks" in caplog.text
    callback.on_test_batch_end(None, module, None, (torch.zeros(1, 2), torch.zeros(1)), 0)
    callback.on_test_epoch_end(None, module)  # nothing was scored: nothing is logged
    assert callback.errors == {}


@pytest.mark.parametrize("experiment", ["digits_resnet", "digits_mlp"])
def test_fast_dev_run(experiment: str, make_cfg):
    value = run(make_cfg(f"experiment={experiment}", "debug=fdr", "logger=none", *QUICK))
    assert 0.0 <= value <= 1.0


def test_tracked_resnet_run_logs_errors_grad_norms_and_norm_params(make_cfg, tracking_uri):
    cfg = make_cfg(
        "experiment=digits_resnet", "debug=limit", *QUICK, "model.norm=group", "model.groups=4"
    )
    value = run(cfg)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("digits_resnet")
    (record,) = client.search_runs([experiment.experiment_id], max_results=5)
    assert record.info.status == "FINISHED"
    params, metrics = record.data.params, record.data.metrics
    assert (params["norm"], params["batch_size"], params["norm_group_size"]) == ("group", "64", "4")
    assert metrics["test/acc"] == pytest.approx(value)
    assert metrics["test/error"] == pytest.approx(1 - value)
    for name in ("train/error", "val/error", "train/grad_norm_first", "train/grad_norm_last"):
        assert name in metrics, name
    assert metrics["train/grad_norm_first"] > 0
    history = client.get_metric_history(record.info.run_id, "train/grad_norm_last")
    assert len(history) == 2  # one mean per epoch
