"""Penalties and ensembles applied by the tasks."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from attnlab.core.contracts import ImageDims
from attnlab.tasks.build import build_model
from attnlab.tasks.regularization import Ensemble, weight_penalty
from attnlab.training.train import run


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
    ensemble = build_model(cfg, ImageDims(in_channels=1, image_size=8, num_classes=10))
    first, second = (member.first_layer.weight for member in ensemble.members)
    assert isinstance(ensemble, Ensemble) and not ensemble.bagging
    assert not torch.equal(first, second)


def test_weight_decay_falls_on_weight_matrices_only():
    """Biases, norm gains and embeddings (tied ones included) get no decay; matrices do."""
    from attnlab.models.transformer import Seq2SeqTransformer
    from attnlab.tasks.regularization import decay_groups

    model = Seq2SeqTransformer(9, 9, width=16, heads=2, depth=1, ff_width=32, tie_embeddings=True)
    decayed, rest = decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    rest_names = {names[id(p)] for p in rest["params"]}
    assert "weight_decay" not in decayed and rest["weight_decay"] == 0.0
    assert any(n.endswith("q_proj.weight") for n in decayed_names)
    assert all(not n.endswith("bias") and "norm" not in n for n in decayed_names)
    assert {"src_embed.weight", "tgt_embed.weight"} <= rest_names  # generator.weight is tgt's
    assert any(n.endswith("norm.weight") for n in rest_names)
    assert len(decayed_names) + len(rest_names) == len(list(model.parameters()))

    optimizer = torch.optim.AdamW(decay_groups(model), lr=0.1, weight_decay=0.5)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.5, 0.0]


def test_weight_norm_decays_directions_not_gains():
    """w = g v / ||v||: v is the matrix that decay shrinks; g is a gain, like a norm's."""
    from attnlab.models.resnet import ResNet
    from attnlab.tasks.regularization import decay_groups

    model = ResNet(1, 3, depth=8, norm="weight")
    decayed, rest = decay_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    rest_names = {names[id(p)] for p in rest["params"]}
    assert "stem.0.parametrizations.weight.original1" in decayed_names
    assert "stem.0.parametrizations.weight.original0" in rest_names
    assert not any(n.endswith("original0") for n in decayed_names)


def test_a_run_decays_only_what_the_groups_name(make_cfg):
    """A step with zero gradients and weight decay shrinks matrices; biases stay put."""
    from attnlab.tasks.build import build_task

    cfg = make_cfg("experiment=digits_mlp", "optim.weight_decay=0.5")
    dims = ImageDims(in_channels=1, image_size=8, num_classes=10)
    model = build_model(cfg, dims)
    task = build_task(cfg, model, dims)
    task.scheduler_factory = None  # a schedule needs a Trainer's step count; the groups do not
    optimizer = task.configure_optimizers()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (p.dim() > 1), name


def test_regularization_a_task_does_not_use_is_dropped_or_refused(make_cfg):
    """Forecasts take no label smoothing: left at the preset it is dropped from the run (and its
    params); named on the command line it is a one-line error."""
    from attnlab.core.config import validate
    from attnlab.core.errors import ConfigError

    cfg = make_cfg("experiment=sines_rnn", "regularization=default")
    validate(cfg)
    assert "label_smoothing" not in cfg.regularization and "l2" in cfg.regularization
    cfg = make_cfg("experiment=sines_rnn", "regularization.label_smoothing=0.2")
    with pytest.raises(ConfigError, match="regularization.label_smoothing=0.2 .*ForecastTask"):
        validate(cfg)
