"""Penalties and ensembles applied by the tasks."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from attnlab.regularization import Ensemble, weight_penalty
from attnlab.train import build_model, run


def test_weight_penalty_skips_biases():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.fill_(-2.0)
        layer.bias.fill_(5.0)
    assert weight_penalty(layer, l1=1.0).item() == pytest.approx(8.0)
    assert weight_penalty(layer, l2=0.5).item() == pytest.approx(8.0)


def test_ensemble_averages_member_probabilities():
    torch.manual_seed(0)
    ensemble = Ensemble([nn.Linear(4, 3) for _ in range(3)])
    x = torch.randn(5, 4)
    mean_probs = torch.stack([m(x).softmax(-1) for m in ensemble.members]).mean(0)
    torch.testing.assert_close(ensemble(x).exp(), mean_probs)


def test_bagging_weights_are_poisson_counts_in_training_only():
    ensemble = Ensemble([nn.Linear(1, 1) for _ in range(2)], bagging=True)
    torch.manual_seed(0)
    weights = ensemble.member_weights(10000, torch.device("cpu"))
    assert weights.shape == (2, 10000)
    assert weights.mean().item() == pytest.approx(1.0, abs=0.03)  # Poisson(1): mean 1 ...
    assert (weights == 0).float().mean().item() == pytest.approx(0.368, abs=0.02)  # P(0)=1/e
    ensemble.eval()
    assert (ensemble.member_weights(10, torch.device("cpu")) == 1).all()
    assert (Ensemble([nn.Linear(1, 1)], bagging=False).member_weights(3, "cpu") == 1).all()


def test_an_ensemble_run_logs_member_and_ensemble_metrics(make_cfg, tracking_uri):
    cfg = make_cfg(
        "experiment=digits_mlp",
        "regularization.ensemble_size=2",
        "regularization.ensemble_mode=bagging",
        "debug=limit",
        "logger.log_model=false",
    )
    run(cfg)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("digits_mlp")
    (record,) = client.search_runs([experiment.experiment_id], max_results=2)
    metrics = record.data.metrics
    assert {"test/acc", "test/member0/acc", "test/member1/acc", "val/member1/acc"} <= set(metrics)


def test_ensemble_members_start_from_different_weights(make_cfg):
    cfg = make_cfg("experiment=digits_mlp", "regularization.ensemble_size=2")
    ensemble = build_model(cfg, {"in_channels": 1, "image_size": 8, "num_classes": 10})
    first, second = (member.first_layer.weight for member in ensemble.members)
    assert isinstance(ensemble, Ensemble) and not ensemble.bagging
    assert not torch.equal(first, second)
