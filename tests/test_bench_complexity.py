"""attnlab bench complexity: exact memory counts, slope fits, the CLI, a --quick run end to end."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from torch import nn

from attnlab.bench.complexity import (
    DEFAULT,
    Layer,
    crossover,
    crossover_fits,
    fit_slope,
    flop_crossover,
    saved_activation_bytes,
    upper_part,
)
from attnlab.cli import main


def test_saved_activations_of_a_linear_layer_are_its_input():
    batch, n, d = 3, 5, 7
    x = torch.randn(batch, n, d, requires_grad=True)
    assert saved_activation_bytes(nn.Linear(d, d), x) == batch * n * d * 4  # weight not counted
    assert saved_activation_bytes(Layer("conv", d), x) == batch * n * d * 4


def test_memory_slopes_attention_weights_quadratic_gru_and_fused_attention_linear():
    lengths = (128, 256, 512, 1024)
    fitted, outside = upper_part(lengths)
    assert (fitted, outside) == ((256, 512, 1024), (128,))
    slopes = {}
    for kind in ("attention_explicit", "attention", "gru"):
        torch.manual_seed(0)
        layer = Layer(kind, 8, heads=1)
        inputs = [torch.randn(1, n, 8, requires_grad=True) for n in fitted]  # (B, n, d)
        saved = [saved_activation_bytes(layer, x) for x in inputs]
        slopes[kind] = fit_slope(np.array(fitted, float), np.array(saved, float))[0]
    assert abs(slopes["attention_explicit"] - 2) < 0.15  # the (n, n) weights
    assert abs(slopes["attention"] - 1) < 0.05  # the fused kernel keeps no (n, n) tensor
    assert abs(slopes["gru"] - 1) < 0.05


def test_fit_slope_recovers_a_known_exponent():
    x = 2.0 ** np.arange(4, 13)
    noise = np.random.default_rng(0).uniform(0.97, 1.03, x.size)
    slope, intercept = fit_slope(x, 3e-6 * x**1.7 * noise)
    assert slope == pytest.approx(1.7, abs=0.02)
    assert np.exp(intercept) == pytest.approx(3e-6, rel=0.2)


def test_crossover_where_quadratic_overtakes_linear():
    n = 2.0 ** np.arange(4, 13)
    assert crossover(n, n**2 / 300, n) == pytest.approx(300)  # n^2 / 300 = n at n = 300
    assert crossover(n, n / 2, n) is None  # attention faster everywhere


def test_the_crossover_grows_with_the_width_as_the_times_say():
    """Times shaped like the FLOP model's leading terms, attention n²d / 2 against the GRU's
    3nd²: they cross at n = 6d, so n* grows as d¹, which is also the FLOP model's slope."""
    by = {}
    for d, sweep in DEFAULT.crossover_sweeps().items():
        assert sweep.fixed == d and sweep.values[0] <= d  # from where the FLOPs are equal
        for n in sweep.values:
            by[sweep.name, "attention", n] = n * n * d / 2
            by[sweep.name, "gru", n] = 3 * n * d * d
    found, slopes = crossover_fits(DEFAULT, by)
    assert found == pytest.approx({32: 192, 64: 384, 128: 768}, rel=1e-6)
    assert slopes == pytest.approx({"crossover_slope_d": 1.0, "flop_crossover_slope_d": 1.0})
    assert [flop_crossover(d) for d in (64, 512)] == pytest.approx([64, 512])


def test_bench_rejects_an_unknown_name(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "nope"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'nope'" in err and "complexity" in err


def test_quick_run_writes_table_plots_and_an_mlflow_run(tmp_path: Path, tracking_uri: str, capsys):
    out = tmp_path / "out"
    started = time.time()
    assert main(["bench", "complexity", "--quick", "--threads", "1", "--out", str(out)]) == 0
    measured = time.time() - started
    printed = capsys.readouterr().out
    assert "torch threads 1" in printed
    assert "| time | self-attention (fused) | n (d=64) |" in printed
    assert (out / "table.md").read_text().strip() in printed
    plots = {p.name for p in out.glob("*.png")}
    assert plots == {f"{q}_vs_{a}.png" for q in ("time", "saved") for a in ("n", "d")}
    client = mlflow.MlflowClient(tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["quick"] == "True"
    duration = (run.info.end_time - run.info.start_time) / 1000
    assert measured / 2 < duration <= measured + 1  # the run spans the measurement, not ~0 s
    assert {"time_slope_n/attention", "saved_slope_n/attention_explicit"} <= set(run.data.metrics)
    assert "speedup/sdpa_all_vs_per_query" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert plots | {"table.md", "points.csv"} <= artifacts


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "complexity", "--device", "cuda", "--no-mlflow"])
    assert stop.value.code == 2
    assert "torch sees no CUDA device" in capsys.readouterr().err
