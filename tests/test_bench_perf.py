"""attnlab bench perf: incremental decoding equals full decoding, thread budgets, the table."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from omegaconf import OmegaConf

from attnlab.bench import perf
from attnlab.bench import references as ref
from attnlab.models.decoding import beam_search, greedy_decode
from attnlab.models.rnn import AttentionSeq2Seq, RNNEncoderDecoder
from attnlab.models.transformer import Seq2SeqTransformer
from attnlab.training.threads import processes_sharing_cores, set_thread_budget, thread_budget

VOCAB = 23
FAMILIES = {
    "transformer": lambda **kw: Seq2SeqTransformer(VOCAB, VOCAB, width=32, heads=4, **kw),
    "transformer_pre_ln_learned": lambda: Seq2SeqTransformer(
        VOCAB, VOCAB, width=32, heads=4, norm_first=True, positional="learned"
    ),
    "transformer_batchnorm": lambda: Seq2SeqTransformer(VOCAB, VOCAB, width=32, norm="batch"),
    "rnn_gru": lambda: RNNEncoderDecoder(VOCAB, VOCAB, width=32, cell="gru"),
    "rnn_lstm_2_layers": lambda: RNNEncoderDecoder(VOCAB, VOCAB, width=32, cell="lstm", depth=2),
    "attention_gru": lambda: AttentionSeq2Seq(VOCAB, VOCAB, width=32, cell="gru"),
}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(3, VOCAB, (5, 9), generator=g)
    src[0, 6:] = 0  # one padded source
    return src, torch.randint(3, VOCAB, (5, 7), generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_step_gives_the_logits_of_decoding_the_whole_prefix(family):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    src, tgt_in = _batch()
    memory = model.encode(src)
    full = model.decode(tgt_in, memory)  # (B, T, V)
    steps = []
    for t in range(tgt_in.size(1)):
        logits, memory = model.decode_step(tgt_in[:, t], memory)  # (B, V)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-4, rtol=1e-4)


class PrefixOnly(torch.nn.Module):
    """The same model seen without ``decode_step``: decoders re-read the whole prefix."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def encode(self, src):
        return self.model.encode(src)

    def decode(self, tgt_in, memory):
        return self.model.decode(tgt_in, memory)


@pytest.mark.parametrize("family", FAMILIES)
def test_decoding_uses_the_decoder_state_and_finds_the_same_tokens(family, monkeypatch):
    torch.manual_seed(0)
    model = FAMILIES[family]().eval()
    src, _ = _batch(1)
    args = (src, 1, 2, 0, 8)  # bos, eos, pad, max_len
    expected_greedy = greedy_decode(PrefixOnly(model), *args)
    expected_beam = beam_search(PrefixOnly(model), *args, width=3)

    def no_prefix_pass(*_args, **_kwargs):
        raise AssertionError("decoding re-read the prefix instead of stepping its state")

    monkeypatch.setattr(model, "decode", no_prefix_pass)
    assert torch.equal(greedy_decode(model, *args), expected_greedy)
    assert torch.equal(beam_search(model, *args, width=3), expected_beam)


@pytest.mark.parametrize(
    "reference",
    [
        lambda: ref.TorchTransformer(VOCAB, 32, 4, 2, 64),
        lambda: ref.TorchRNNSeq2Seq(VOCAB, 8, 32),
        lambda: ref.TorchAttentionSeq2Seq(VOCAB, 8, 32),
    ],
)
def test_reference_decoders_step_as_their_forward_pass(reference):
    """The bench's incremental references compute what their full forward pass computes."""
    torch.manual_seed(0)
    model = reference().eval()
    src, tgt_in = _batch()
    with torch.no_grad():
        full = model(src, tgt_in)
        state = model.start(src)
        steps = []
        for t in range(tgt_in.size(1)):
            logits, state = model.step(tgt_in[:, t], state)
            steps.append(logits)
        torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-4, rtol=1e-4)
        # beam of width 1 is greedy decoding
        assert torch.equal(ref.beam(model, src, 1, 6, 1), ref.greedy(model, src, 1, 6))


def test_thread_budget_divides_the_cores_and_keeps_a_smaller_preset(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [thread_budget(p, cores=8) for p in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert thread_budget(1, cores=8) == 2  # a launcher's or user's smaller budget stands
    assert thread_budget(8, cores=8) == 1


def test_processes_sharing_cores_counts_ddp_ranks_and_parallel_jobs():
    trainer = OmegaConf.create({"accelerator": "cpu", "devices": 2, "num_nodes": 1})
    assert processes_sharing_cores(trainer) == 2
    assert processes_sharing_cores(trainer, {"n_jobs": 3}) == 6
    single = OmegaConf.create({"accelerator": "cpu", "devices": 1, "num_nodes": 4})
    assert processes_sharing_cores(single, {"n_jobs": 1}) == 1  # other nodes have other cores
    assert processes_sharing_cores(single, {"n_jobs": -1}) == os.cpu_count()


def test_set_thread_budget_sets_torch_and_the_children_s_pools(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    try:
        assert set_thread_budget(2, cores=2) == 1
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def _check_table(out, sections: set[str]) -> list[dict]:
    rows = json.loads((out / "perf.json").read_text())
    assert {row["section"] for row in rows} == sections
    for row in rows:
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row
        assert row["attnlab"] > 0 and row["reference"] > 0, row
        assert row["met"] in ("yes", "no", ""), row
    lines = (out / "perf.md").read_text().splitlines()
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == len(rows) + 1  # the header and one line per row
    assert all(line.count("|") == table[0].count("|") for line in table)
    return rows


def test_quick_bench_prints_every_ratio_and_logs_them_to_mlflow(tmp_path, monkeypatch, capsys):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    out = tmp_path / "perf"
    sections = ["models", "decoding", "threads"]
    assert perf.main(["--quick", "--only", *sections, "--out", str(out)]) == 0
    rows = _check_table(out, set(sections))
    cases = {row["case"] for row in rows}
    assert {"Transformer d=64 train step", "ResNet-8 train step", "Transformer beam 2"} <= cases
    assert "| section | case |" in capsys.readouterr().out
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert len(run.data.metrics) == len(rows)
    first = perf.Row(**{key: value for key, value in rows[0].items() if key != "met"})
    assert run.data.metrics[perf.metric_name(first)] == pytest.approx(first.ratio)


@pytest.mark.slow
def test_quick_platform_section_times_attnlab_train_against_the_bare_loop(tmp_path):
    """Subprocess runs of ``attnlab train``, of the bare loop under a bare Trainer and without
    one, and of a claim (~2 min): per-epoch times come from inside each run, so the ratio is
    positive however busy the machine is."""
    out = tmp_path / "perf"
    assert perf.main(["--quick", "--only", "platform", "--out", str(out), "--no-mlflow"]) == 0
    rows = _check_table(out, {"platform"})
    assert [row["case"] for row in rows] == [
        "digits_mlp: seconds per epoch",
        "digits_mlp: a bare Lightning Trainer per epoch",
        "digits_mlp: 1-epoch run beyond imports",
        "claim norm_noniid: wall time / its runs' time",
    ]
    claim = rows[-1]
    assert claim["attnlab"] >= claim["reference"] > 0  # the claim took longer than its runs


def test_quick_cli_section_times_each_command_against_its_reference(tmp_path, monkeypatch):
    """Fresh processes of the commands that answer at once (a few seconds; the tests' own
    model, registered through $ATTNLAB_COMPONENTS, would make attnlab train import torch)."""
    monkeypatch.delenv("ATTNLAB_COMPONENTS")
    out = tmp_path / "perf"
    assert perf.main(["--quick", "--only", "cli", "--out", str(out), "--no-mlflow"]) == 0
    rows = _check_table(out, {"cli"})
    assert [(row["case"], row["goal"]) for row in rows] == [
        ("attnlab --help", "<= 0.3"),
        ("attnlab claim list", "<= 0.3"),
        ("attnlab train --help beyond import hydra", "<= 1.5"),
        ("attnlab train --cfg job beyond import hydra", "<= 1.5"),
    ]


def test_steady_state_epoch_time_leaves_the_first_epoch_out():
    assert perf.seconds_per_epoch([10.0, 13.0, 12.0, 11.0]) == pytest.approx(1.0)
    output = "epoch 0: val/loss 1.0 val/acc 0.5 at 100.500\nepoch 1: val/loss 0.9 at 101.250\n"
    assert perf.bare_epoch_ends(output) == [100.5, 101.25]


def test_a_job_of_a_parallel_sweep_gets_its_share_of_the_cores(make_cfg, monkeypatch):
    """What ``train.run`` calls first: under ``-m`` with 2 joblib jobs, half the cores each."""
    from attnlab.training.threads import available_cores, set_run_thread_budget

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    cfg = make_cfg(
        "experiment=digits_mlp", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
        "hydra.mode=MULTIRUN",
    )  # fmt: skip
    try:
        assert set_run_thread_budget(cfg.trainer) == max(1, available_cores() // 2)
        assert os.environ["OMP_NUM_THREADS"] == str(max(1, available_cores() // 2))
    finally:
        torch.set_num_threads(before)


def test_starting_a_run_imports_neither_scikit_learn_nor_the_sweep_s_pruning():
    """What a run needs only sometimes is imported when used (docs: Performance)."""
    import subprocess
    import sys

    code = (
        "import sys, attnlab.training.train, attnlab.training.callbacks, "
        "attnlab.tracking.mlflow_run, attnlab.tracking.logger; "
        "print(sorted({'sklearn', 'optuna_integration'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
