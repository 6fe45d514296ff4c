"""``attnlab claim plan``: every claim composes at its GPU preset, FLOPs are counted, and bad
input is one line.

The FLOPs of a step are counted on 4 rows of its batch and scaled to the batch (the command
counts the whole batch); the scaling is checked against the whole batch below."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from test_image_data import write_cifar

from attnlab.claims import plan, spec
from attnlab.claims.cli import main as claim_main

ROWS = 4


def value_overrides(overrides: list[str]) -> dict[str, object]:
    """``key.path=value`` overrides as key -> value (the last wins), parsed as Hydra does."""
    parser = OverridesParser.create()
    values = {}
    for override in overrides:
        key = override.partition("=")[0]
        if "." in key and not key.startswith("+"):
            values[key] = parser.parse_override(override).value()
    return values


@pytest.mark.parametrize("name", spec.names())
def test_every_claim_plans_its_gpu_preset_with_counted_flops_and_its_commands(name):
    claim = spec.load(name)
    plans = plan.plan_claim(claim, "gpu", claim.seeds, [], measure_rows=ROWS)
    text, total = plan.report(claim, plans, "gpu", claim.seeds, 100.0)
    seeds = " ".join(map(str, claim.seeds))
    assert f"attnlab claim run {name} --scale gpu --seeds {seeds}" in text
    assert [p.variant for p in plans] == list(claim.variants)
    preset = claim.scales["gpu"]
    for variant_plan in plans:
        if claim.command:  # a benchmark: its command, no FLOPs
            assert variant_plan.run_flops is None and "FLOPs not estimated" in variant_plan.note
            assert f"attnlab {' '.join(claim.command)} {' '.join(preset)}" in text
            continue
        cfg = variant_plan.cfg
        expected = value_overrides([*claim.overrides, *claim.variants[variant_plan.variant]])
        expected |= value_overrides(preset)  # the preset comes last: it wins
        for key, value in expected.items():
            assert OmegaConf.select(cfg, key) == value, (variant_plan.variant, key)
        groups = [o.split("=") for o in preset if "." not in o.partition("=")[0]]
        assert all(variant_plan.choices[group] == option for group, option in groups)
        assert cfg.trainer.accelerator == "gpu" and cfg.tags.claim_scale == "gpu"
        assert f"{variant_plan.variant}: attnlab train -m " in text
        if variant_plan.step_flops is None:  # the data is not on this machine
            assert "no data in data.data_dir=" in variant_plan.note and total is None
        else:
            assert variant_plan.step_flops > 0 and variant_plan.batches > 0
            assert variant_plan.run_flops == variant_plan.batches * variant_plan.step_flops


def test_a_cifar_claim_is_counted_where_the_data_is_and_its_steps_or_epochs_end_it(tmp_path):
    """ResNet-110 on (stand-in) CIFAR-10 files: 90 training images, one batch per epoch. The
    preset trains He et al.'s 64000 steps (max_epochs=-1); with a bound on the epochs, the
    epochs end the run first."""
    write_cifar(tmp_path / "cifar")
    claim = spec.load("resnet_v1_v2")
    extra = [f"data.data_dir={tmp_path / 'cifar'}"]
    plans = plan.plan_claim(claim, "gpu", [0, 1, 2], extra, measure_rows=2)
    assert [p.cfg.model.depth for p in plans] == [110, 110]
    assert [p.batches for p in plans] == [64000, 64000]
    assert all(p.step_flops > 0 for p in plans)
    _, total = plan.report(claim, plans, "gpu", [0, 1, 2], 50.0)
    hours = 3 * sum(p.run_flops for p in plans) / 50e12 / 3600
    assert total == pytest.approx(hours)
    bounded = plan.plan_claim(claim, "gpu", [0, 1], [*extra, "trainer.max_epochs=160"], 2)
    assert [p.batches for p in bounded] == [160, 160]


def test_a_step_counted_on_some_rows_scales_to_the_whole_batch():
    """Exactly where a step's FLOPs grow with its rows at the batch's padded width (not for a
    packed RNN, whose FLOPs follow each row's length)."""
    claim = spec.load("agreement")
    small = replace(claim, variants={"transformer": claim.variants["transformer"]})
    extra = ["data.n_train=64", "data.batch_size=16"]
    (whole,) = plan.plan_claim(small, "cpu", [0, 1], extra)
    (part,) = plan.plan_claim(small, "cpu", [0, 1], extra, measure_rows=3)
    assert part.step_flops == pytest.approx(whole.step_flops, rel=1e-9)


def test_cpu_attention_and_lstm_kernels_are_counted():
    """torch's counter leaves the CPU's fused attention and oneDNN's LSTM at 0 FLOPs."""
    b, h, s, d = 2, 4, 16, 8
    q = torch.randn(b, h, s, d, requires_grad=True)
    attention = plan.count_flops(
        lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
    )
    # forward QK^T and AV; backward the scores again and four products (torch's formulas)
    assert attention == (2 + 5) * 2 * b * h * s * s * d
    lstm, x = torch.nn.LSTM(8, 16, batch_first=True), torch.randn(3, 5, 8)
    with torch.no_grad():
        forward = plan.count_flops(lambda: lstm(x))
    assert forward == 2 * 3 * 5 * 4 * 16 * (8 + 16)  # 4 gates: input and hidden products


def test_the_command_prints_the_table_the_assumption_and_the_total(capsys):
    assert claim_main(["plan", "position", "--measure-rows", "2", "--peak-tflops", "40"]) == 0
    out = capsys.readouterr().out
    variants = len(spec.load("position").variants)
    assert f"claim position at scale gpu: {variants} variants x 3 seeds" in out
    assert "GPU h/run" in out and "at 40 TFLOPS" in out and "assumed: 40 TFLOPS" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["plan", "no_such_claim"], "claim='no_such_claim' is not allowed: one of"),
        (["plan", "position", "--scale", "tpu"], "--scale='tpu' is not allowed: one of cpu, gpu"),
        (["plan", "position", "--peak-tflops", "0"], "--peak-tflops=0.0 is not allowed"),
        (["plan", "position", "--peak-tflops", "-5"], "--peak-tflops=-5.0 is not allowed"),
        (["plan", "position", "--measure-rows", "0"], "--measure-rows=0 is not allowed"),
        (["plan", "position", "model.colour=red"], "model.colour"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        claim_main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and err.count("\n") == 1, err
