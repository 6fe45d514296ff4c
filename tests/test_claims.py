"""Claims of the notes: their files compose, the verdict rule, and the report from a store."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from scipy import stats

from attnlab.claims import spec, verdict
from attnlab.claims.cli import main as claim_main
from attnlab.claims.report import README_BEGIN, README_END, effect_text, store_label
from attnlab.claims.run import launch, machine, train_command
from attnlab.claims.spec import Comparison
from attnlab.commands.report import main as report_main
from attnlab.core.config import validate
from attnlab.core.errors import ConfigError

CLAIMS = spec.names()
TRAINING_CLAIMS = [name for name in CLAIMS if not spec.load(name).command]


def test_every_claim_of_the_notes_has_a_file():
    expected = {
        "attention_vs_fixed", "position", "agreement", "degradation", "resnet_v1_v2",
        "shortcuts", "norm_batch", "multihead", "overfitting", "complexity",
    }  # fmt: skip
    assert expected <= set(CLAIMS)


@pytest.mark.parametrize("name", TRAINING_CLAIMS)
def test_every_variant_composes_and_validates_and_so_does_each_scale(name, make_cfg):
    """The overrides ``attnlab claim run`` passes, for every variant at the CPU scale and each
    other scale on its first variant (without CUDA here, on the CPU trainer: the data and
    model sizes the scale sets are still checked)."""
    claim = spec.load(name)
    first = next(iter(claim.variants))
    runs = [(variant, "cpu", []) for variant in claim.variants]
    runs += [(first, scale, no_gpu()) for scale in claim.scales]
    for variant, scale, extra in runs:
        command = train_command(claim, variant, [7, 8], scale, extra)
        overrides = command[command.index("train") + 2 :]  # after `train -m`
        assert "seed=7,8" in overrides
        overrides[overrides.index("seed=7,8")] = "seed=7"
        cfg = make_cfg(*overrides)
        validate(cfg)
        assert cfg.trainer.deterministic and cfg.data.seed == 7, (variant, scale)
        assert dict(cfg.tags) == {
            "claim": name, "variant": variant, "seed": "7", "claim_scale": scale,
            "machine": machine(),
        }  # fmt: skip


def no_gpu() -> list[str]:
    import torch

    return [] if torch.cuda.is_available() else ["trainer=cpu", "trainer.precision=32-true"]


@pytest.mark.parametrize("name", CLAIMS)
def test_every_claim_cites_a_source_and_a_section_and_compares_its_own_variants(name):
    claim = spec.load(name)
    assert claim.notes.startswith("§") and len(claim.source) > 40
    assert len(claim.seeds) >= verdict.MIN_SEEDS
    used = {v for c in claim.comparisons for side in (c.better, c.than) for v in spec.terms(side)}
    assert used <= set(claim.variants)


def write_claim(folder: Path, change: str) -> None:
    """GOOD with the line of ``change``'s key replaced by ``change`` (or added)."""
    key = change.partition(":")[0]
    lines = [line for line in GOOD.splitlines() if not line.startswith(f"{key}:")]
    (folder / "c.yaml").write_text("\n".join([*lines, change]))


GOOD = """
title: t
notes: §1
source: s
overrides: [experiment=digits_mlp]
variants: {a: [], b: [model.width=8]}
comparisons: [{metric: test/acc, better: a, than: b, size: 0.1}]
"""


@pytest.mark.parametrize(
    "change, message",
    [
        ("colour: red\n", "colour"),
        (
            "comparisons: [{metric: m, better: a, than: zz, size: 0.1}]\n",
            "comparisons[0].than='zz'",
        ),
        (
            "comparisons: [{metric: m, better: a - zz, than: b, size: 0.1}]\n",
            "comparisons[0].better='a - zz' is not allowed: a variant of the claim or a contrast",
        ),
        ("comparisons: [{metric: m, better: a - b - a, than: b, size: 0.1}]\n", "'A - B' of two"),
        ("comparisons: [{metric: m, better: a, than: b, size: 0.1, direction: up}]\n", "maximize"),
        ("comparisons: [{metric: m, better: a, than: b, size: -1}]\n", "size"),
        (
            "comparisons: [{metric: m, better: a - b, than: b, size: 0.1, fails_beyond: 0.5}]\n",
            "failure rates of two variants on one metric",
        ),
        ("comparisons: [{metric: m, better: a, than: b, size: 2, fails_beyond: 0.5}]\n", "[0, 1)"),
        ("seeds: [1, 1]\n", "two or more distinct seeds"),
        ("seeds: one\n", "seeds"),
        ("variants: [a, b\n", "valid YAML"),
    ],
)
def test_a_wrong_claim_file_is_one_error_naming_the_file_and_key(tmp_path, change, message):
    write_claim(tmp_path, change)
    with pytest.raises(ConfigError) as caught:
        spec.load("c", tmp_path)
    assert message in str(caught.value) and "c.yaml" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_unknown_claim_names_the_known_ones():
    with pytest.raises(ConfigError, match="one of .*degradation"):
        spec.load("no_such_claim")


# --- the rule --------------------------------------------------------------------------------

BETTER = Comparison(metric="m", better="a", than="b", size=0.1)
LOWER = Comparison(metric="m", better="a", than="b", size=0.1, direction="minimize")
EQUAL = Comparison(metric="m", better="a", than="b", size=0.05, expect="equal")


def seeded(*values: float, first: int = 0) -> dict[int, float]:
    return dict(enumerate(values, start=first))


def judge(comparison, better, than, baseline=None):
    """The judgement of a claim of this one comparison."""
    return verdict.judge_claim([comparison], [(better, than)], 0.95, [baseline])[0]


def test_shared_seeds_give_students_paired_interval_signed_by_the_direction():
    a, b = [0.9, 0.8, 0.85, 0.95], [0.5, 0.45, 0.4, 0.6]
    low, high = stats.ttest_rel(a, b).confidence_interval(0.95)
    up = judge(BETTER, seeded(*a), seeded(*b)).effect
    down = judge(LOWER, seeded(*a), seeded(*b)).effect
    assert up.paired and up.seeds == 4 and up.level == pytest.approx(0.95)
    assert (up.low, up.high) == pytest.approx((low, high))
    assert (down.low, down.high) == pytest.approx((-high, -low))
    assert up.effect == pytest.approx(-down.effect) == pytest.approx(0.875 - 0.4875)


def test_only_the_common_seeds_are_paired_and_disjoint_seeds_give_welchs_interval():
    a, b = [0.9, 0.8, 0.85], [0.5, 0.45, 0.4]
    extra = judge(BETTER, seeded(*a, 0.1), seeded(*b)).effect  # seed 3 of a has no partner
    paired = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert extra.paired and (extra.low, extra.high) == pytest.approx(tuple(paired))
    apart = judge(BETTER, seeded(*a, 0.95), seeded(*b, first=7)).effect
    welch = stats.ttest_ind([*a, 0.95], b, equal_var=False).confidence_interval(0.95)
    assert not apart.paired and (apart.low, apart.high) == pytest.approx(tuple(welch))


def test_pairing_removes_the_data_draw_that_welch_counts_as_noise():
    """Seed i shifts both variants alike: the paired interval is narrow, Welch's is not."""
    shifts = [0.0, 0.2, -0.15, 0.1]
    a = [0.6 + s for s in shifts]
    b = [0.45 + s + e for s, e in zip(shifts, [0.01, -0.01, 0.0, 0.005], strict=True)]
    assert judge(BETTER, seeded(*a), seeded(*b)).verdict == verdict.REPRODUCED
    apart = judge(BETTER, seeded(*a), seeded(*b, first=4))
    assert apart.verdict == verdict.INCONCLUSIVE and not apart.effect.paired


FAILS = Comparison(
    metric="error", better="a", than="b", size=0.2, direction="minimize", fails_beyond=0.5
)


@pytest.mark.parametrize("failures, seeds", [(0, 10), (3, 10), (10, 10), (7, 25)])
def test_failure_rate_bounds_are_scipys_clopper_pearson_joined_by_bonferroni(failures, seeds):
    """Each side's one-sided bound at alpha / 2 is the exact two-sided interval at 1 - alpha."""
    alpha = 0.05
    low, high = verdict.clopper_pearson(failures, seeds, alpha / 2)
    exact = stats.binomtest(failures, seeds).proportion_ci(1 - alpha, method="exact")
    assert (low, high) == pytest.approx((exact.low, exact.high))
    bounds = verdict.failure_bounds((2, 10, failures, seeds), alpha)
    other = stats.binomtest(2, 10).proportion_ci(1 - alpha, method="exact")
    assert bounds == pytest.approx((exact.low - other.high, exact.high - other.low))


def test_a_trains_or_fails_comparison_counts_failures_and_judges_their_rates_exactly():
    """b fails (error above 0.5) at all 10 seeds, a at none (0.5 itself is no failure): the
    rates differ by 1, and the exact bound at the 95% level (0.29) clears the size 0.2; at
    3 seeds no count could clear it, and one failure in 10 decides nothing."""
    a = seeded(*[0.02] * 9, 0.5)
    b = seeded(*[0.8] * 9, 0.51)
    judged = judge(FAILS, a, b)
    effect = judged.effect
    assert effect.failures == (0, 10, 10, 10) and effect.effect == pytest.approx(1.0)
    bounds = verdict.failure_bounds(effect.failures, 0.025)
    assert (effect.low, effect.high) == pytest.approx(bounds)
    assert judged.verdict == verdict.REPRODUCED and effect.low > 0.2
    assert verdict.p_above(effect, 0.2) < 0.025 < verdict.p_above(effect, effect.low + 1e-6)
    few = judge(FAILS, seeded(0.02, 0.02, 0.02), seeded(0.8, 0.8, 0.8))
    assert few.verdict == verdict.INCONCLUSIVE and math.isinf(few.effect.resolvable)
    assert "cannot show a difference of 0.2" in few.reason
    rare = judge(FAILS, a, seeded(0.8, *[0.1] * 9))
    assert rare.verdict == verdict.INCONCLUSIVE and rare.effect.low < 0.2 < rare.effect.high


def test_a_maximized_metric_fails_below_the_threshold():
    accuracy = Comparison(metric="acc", better="a", than="b", size=0.2, fails_beyond=0.5)
    effect = judge(accuracy, seeded(0.9, 0.9, 0.9), seeded(0.2, 0.9, 0.1)).effect
    assert effect.failures == (0, 3, 2, 3) and effect.than_mean == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "comparison, a, b, expected, why",
    [
        (BETTER, [0.9, 0.92, 0.91], [0.5, 0.52, 0.49], verdict.REPRODUCED, "lies above 0.1"),
        (BETTER, [0.5, 0.52, 0.49], [0.9, 0.92, 0.91], verdict.NOT_REPRODUCED, "lies below 0.1"),
        (BETTER, [0.6, 0.61, 0.6], [0.6, 0.6, 0.61], verdict.NOT_REPRODUCED, "lies below 0.1"),
        (BETTER, [0.65, 0.66, 0.64], [0.6, 0.6, 0.6], verdict.NOT_REPRODUCED, "lies below 0.1"),
        (BETTER, [0.9, 0.3, 0.7], [0.5, 0.6, 0.4], verdict.INCONCLUSIVE, "holds 0.1"),
        (LOWER, [0.1, 0.12, 0.11], [0.5, 0.52, 0.49], verdict.REPRODUCED, "lies above 0.1"),
        (LOWER, [0.5, 0.52, 0.49], [0.1, 0.12, 0.11], verdict.NOT_REPRODUCED, "lies below 0.1"),
        (EQUAL, [1.0, 0.99, 1.0], [0.99, 1.0, 1.0], verdict.REPRODUCED, "lies inside ±0.05"),
        (EQUAL, [1.0, 0.99, 1.0], [0.5, 0.52, 0.49], verdict.NOT_REPRODUCED, "lies beyond ±0.05"),
        (EQUAL, [0.5, 0.52, 0.49], [1.0, 0.99, 1.0], verdict.NOT_REPRODUCED, "lies beyond ±0.05"),
        (EQUAL, [1.0, 0.5, 1.0], [0.99, 1.0, 1.0], verdict.INCONCLUSIVE, "crosses ±0.05"),
    ],
)
def test_one_standard_decides_both_verdicts(comparison, a, b, expected, why):
    """better: the interval above the size reproduces, below it rules the claim out (an
    effect of +0.05, real but under the size, too); equal: inside ±size or wholly beyond."""
    judged = judge(comparison, seeded(*a), seeded(*b))
    assert judged.verdict == expected and why in judged.reason
    assert "at 95%" in judged.reason


@pytest.mark.parametrize(
    "a, b, than_seeds",
    [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 0),  # a floor: 0.000 at every seed
        ([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], 0),
        ([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], 5),  # Welch: neither side varies
        ([0.7, 0.8, 0.9], [0.6, 0.7, 0.8], 0),  # paired: the same difference at every seed
    ],
)
def test_differences_that_do_not_vary_give_no_interval_and_no_verdict(a, b, than_seeds):
    judged = judge(BETTER, seeded(*a), seeded(*b, first=than_seeds))
    assert judged.verdict == verdict.INCONCLUSIVE
    assert "floor or ceiling" in judged.reason and "change the metric or the task" in judged.reason
    assert math.isnan(judged.effect.low) and "(no spread)" in effect_text(judged)


def test_fewer_than_three_seeds_give_no_verdict():
    judged = judge(BETTER, seeded(0.9, 0.92), seeded(0.5, 0.52))
    assert judged.verdict == verdict.INCONCLUSIVE and judged.effect is None
    assert "too few seeds (a: 2, b: 2; 3 needed)" in judged.reason


def test_holm_decides_rank_j_at_alpha_over_k_minus_j_and_stops_at_the_first_failure():
    assert verdict.holm([0.001, 0.02, 0.5], 0.025) == [
        (0.025 / 3, True), (0.025 / 2, False), (0.025 / 2, False),
    ]  # fmt: skip
    assert verdict.holm([0.02, 0.001, 0.011], 0.025) == [
        (0.025, True), (0.025 / 3, True), (0.025 / 2, True),
    ]  # fmt: skip


def test_comparisons_after_holm_stops_are_inconclusive_at_the_stopping_level():
    """Each alone is reproduced at 95% (one-sided p 0.018 and 0.023); together the first fails
    at 97.5% (alpha / 2), Holm stops, and both are judged at 97.5%, where they hold the size."""
    first = (seeded(0.35, 0.40, 0.375), seeded(0.2, 0.2, 0.2))
    second = (seeded(0.345, 0.40, 0.37), seeded(0.2, 0.2, 0.2))
    for alone in (judge(BETTER, *first), judge(BETTER, *second)):
        assert alone.verdict == verdict.REPRODUCED and alone.effect.level == pytest.approx(0.95)
    both = verdict.judge_claim([BETTER] * 2, [first, second], 0.95, [None] * 2)
    assert [j.verdict for j in both] == [verdict.INCONCLUSIVE] * 2
    assert all("at 97.5% holds 0.1" in j.reason for j in both)
    clear = (seeded(0.9, 0.92, 0.91), seeded(0.5, 0.52, 0.49))
    three = verdict.judge_claim([BETTER] * 3, [first, clear, clear], 0.95, [None] * 3)
    assert [j.verdict for j in three] == [verdict.REPRODUCED] * 3
    assert [round(j.effect.level, 4) for j in three] == [0.95, 0.9833, 0.975]


def test_a_winner_that_does_not_beat_the_best_baseline_is_inconclusive():
    a, b = seeded(0.9, 0.92, 0.91), seeded(0.5, 0.52, 0.49)
    judged = judge(BETTER, a, b, baseline=("bag_of_tokens", 0.95))
    assert judged.verdict == verdict.INCONCLUSIVE and "does not beat the baseline" in judged.reason
    assert "bag_of_tokens (0.95)" in judged.reason
    assert judge(BETTER, a, b, baseline=("chance", 0.5)).verdict == verdict.REPRODUCED
    lower = judge(LOWER, b, a, baseline=("majority", 0.4))  # errors: the winner must be lower
    assert lower.verdict == verdict.INCONCLUSIVE and "majority" in lower.reason


def test_a_size_finer_than_the_design_resolves_says_how_many_seeds_would():
    fine = Comparison(metric="m", better="a", than="b", size=0.005)
    judged = judge(fine, seeded(0.91, 0.92, 0.91), seeded(0.90, 0.91, 0.905))
    effect = judged.effect
    assert effect.resolvable > 0.005 and "finer than this design resolves" in judged.reason
    seeds = int(re.search(r"about (\d+) seeds per variant", judged.reason).group(1))
    alpha = (1 - effect.level) / 2

    def resolvable_at(n: int) -> float:
        return verdict.resolvable(effect.se * math.sqrt(3 / n), n - 1, alpha)

    assert resolvable_at(seeds) <= 0.005 < resolvable_at(seeds - 1)
    coarse = judge(BETTER, seeded(0.9, 0.92, 0.91), seeded(0.5, 0.52, 0.49))
    assert "finer" not in coarse.reason and coarse.effect.resolvable < 0.1


def test_the_resolvable_effect_has_the_stated_power():
    """The noncentral t: a one-sided test at alpha detects the resolvable distance with 80%."""
    se, df, alpha = 0.02, 2, 0.025
    margin = verdict.resolvable(se, df, alpha)
    critical = stats.t.ppf(1 - alpha, df)
    assert stats.nct.sf(critical, df, margin / se) == pytest.approx(verdict.POWER)


def test_a_claim_is_reproduced_only_when_every_comparison_is():
    assert verdict.overall(["reproduced", "reproduced"]) == "reproduced"
    assert verdict.overall(["reproduced", "inconclusive"]) == "inconclusive"
    assert verdict.overall(["inconclusive", "not reproduced"]) == "not reproduced"
    assert verdict.overall([]) == "inconclusive"


# --- the report from a store -----------------------------------------------------------------

POSITION_SCORES = {  # variant -> per-seed test accuracy beyond the trained lengths, within
    "sinusoidal": {"33-64": [0.95, 0.97, 0.96], "8-32": [0.995, 0.997, 0.996]},
    "learned": {"33-64": [0.50, 0.49, 0.51], "8-32": [0.990, 0.996, 0.994]},
}


def fill_store(uri: str, machine: str = "x86_64 CPU, 2 cores") -> None:
    """Runs of claim 'position' as ``attnlab claim run`` tags them, with made-up scores."""
    client = MlflowClient(uri)
    experiment = client.create_experiment("order_count")
    for variant, buckets in POSITION_SCORES.items():
        pairs = zip(buckets["33-64"], buckets["8-32"], strict=True)
        for seed, (beyond, within) in enumerate(pairs):
            tags = {"claim": "position", "variant": variant, "seed": str(seed)}
            tags |= {"claim_scale": "cpu", "machine": machine, "git_commit": "abc"}
            run = client.create_run(experiment, tags=tags, run_name=f"{variant}-{seed}")
            run_id = run.info.run_id
            client.log_metric(run_id, "test/acc", (beyond + within) / 2)
            client.log_metric(run_id, "test/acc_by_group/8-32", within)
            client.log_metric(run_id, "test/acc_by_group/33-64", beyond)
            for bucket in ("8-32", "33-64"):
                client.log_metric(run_id, f"baseline/test/acc_by_group/{bucket}/chance", 0.5)
            for step in range(3):
                client.log_metric(run_id, "val/acc", within * (step + 1) / 3, step=step)
            client.set_terminated(run_id, "FINISHED")
    stale = client.create_run(experiment, tags={"claim": "position", "variant": "learned"})
    client.log_metric(stale.info.run_id, "test/acc_by_group/33-64", 0.99)  # RUNNING: not counted


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def report(monkeypatch, capsys):
    """``attnlab report ARGS`` in this process (a subprocess would import mlflow again)."""

    def run(*args: str, cwd: Path) -> Done:
        monkeypatch.chdir(cwd)
        try:
            code = report_main(list(args))
        except SystemExit as stop:
            code = stop.code
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return run


def test_the_report_gives_the_verdict_with_intervals_plots_and_escaped_html(tmp_path, report):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fill_store(uri, machine="<script>alert(1)</script>")
    done = report("--claim", "position", "--tracking-uri", uri, "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "claim position: reproduced" in done.stdout
    markdown = (tmp_path / "out/position.md").read_text()
    page = (tmp_path / "out/position.html").read_text()
    # beyond the trained lengths: 0.96 vs 0.50 at the same three seeds: Student's paired
    # interval, first of the claim's two comparisons in Holm's order, so at 1 - 2 * 0.025 / 2
    low, high = stats.ttest_rel(
        POSITION_SCORES["sinusoidal"]["33-64"], POSITION_SCORES["learned"]["33-64"]
    ).confidence_interval(0.975)
    assert f"+0.4600 [{low:+.4f}, {high:+.4f}] at 97.5%" in markdown
    assert "paired t, 3 seeds; resolves" in markdown and "Holm 1979" in markdown
    assert "Store: sqlite:///mlflow.db;" in markdown and str(tmp_path) not in markdown + page
    assert "0.9600 ± " in markdown and "chance 0.5000" in markdown
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 2  # per bucket, and val/acc over steps
    assert sorted(p.name for p in (tmp_path / "out/plots").iterdir()) == [
        "position_buckets.png", "position_val_acc.png",
    ]  # fmt: skip
    # the verdict lands in the store too, where the runs are compared
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("claims")
    (verdict_run,) = client.search_runs([experiment.experiment_id])
    tags, metrics = verdict_run.data.tags, verdict_run.data.metrics
    assert tags["claim_report"] == "position" and tags["verdict"] == "reproduced"
    assert tags["claim_commits"] == "abc"
    key = "sinusoidal_vs_learned/test/acc_by_group/33-64"
    assert metrics[f"{key}/effect"] == pytest.approx(0.46)
    assert metrics[f"{key}/low"] == pytest.approx(low)
    artifacts = {f.path for f in client.list_artifacts(verdict_run.info.run_id)}
    assert {"position.md", "position.html", "plots"} <= artifacts
    assert "claim report position --scale cpu" in tags["command"]


NONIID_ERRORS = {  # variant -> per-seed test error: a 2 x 2 whose claim is the interaction
    "batch_iid": [0.03, 0.02, 0.04, 0.03],
    "batch_by_class": [0.18, 0.15, 0.20, 0.16],
    "group_iid": [0.02, 0.03, 0.03, 0.02],
    "group_by_class": [0.05, 0.07, 0.04, 0.06],
}


def test_an_interaction_is_judged_on_the_per_seed_difference_of_two_contrasts(tmp_path, report):
    """norm_noniid: (batch_by_class - batch_iid) - (group_by_class - group_iid) at each seed,
    with Student's paired interval over those seeds, and no shortcut baseline to beat."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("norm_batch")
    for variant, errors in NONIID_ERRORS.items():
        for seed, error in enumerate(errors, start=10):
            tags = {"claim": "norm_noniid", "variant": variant, "seed": str(seed)}
            run = client.create_run(experiment, tags=tags | {"claim_scale": "cpu"})
            client.log_metric(run.info.run_id, "test/error", error)
            client.log_metric(run.info.run_id, "baseline/test/error/chance", 0.9)
            client.set_terminated(run.info.run_id, "FINISHED")
    done = report("--claim", "norm_noniid", "--tracking-uri", uri, "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    errors = {variant: np.array(values) for variant, values in NONIID_ERRORS.items()}
    batch_rise = errors["batch_by_class"] - errors["batch_iid"]
    group_rise = errors["group_by_class"] - errors["group_iid"]
    effect = (batch_rise - group_rise).mean()
    # second in Holm's order (batch norm's own rise has the smaller p-value): at 1 - 2 * 0.025
    low, high = stats.ttest_rel(batch_rise, group_rise).confidence_interval(0.95)
    markdown = (tmp_path / "out/norm_noniid.md").read_text()
    row = next(line for line in markdown.splitlines() if "batch_iid higher than" in line)
    assert "than group_by_class - group_iid by > 0.05" in row
    assert f"{effect:+.4f} [{low:+.4f}, {high:+.4f}]" in row and "paired t, 4 seeds" in row
    assert "| reproduced |" in row and "| - |" in row  # no baseline for a contrast
    verdict_run = client.search_runs([client.get_experiment_by_name("claims").experiment_id])[0]
    key = "batch_by_class_minus_batch_iid_vs_group_by_class_minus_group_iid/test/error/effect"
    assert verdict_run.data.metrics[key] == pytest.approx(effect)


def test_a_contrast_of_two_metrics_compares_each_variants_drop_seed_by_seed(tmp_path, report):
    """attention_vs_fixed: per run, short-source accuracy minus long-source accuracy; the fixed
    context's drop against attention's, paired over the seeds."""
    accuracy = {  # variant -> per-seed (lt15, ge30) per-token accuracy
        "attention": [(0.99, 0.95), (0.98, 0.96), (0.99, 0.93)],
        "fixed_context": [(0.90, 0.40), (0.85, 0.45), (0.92, 0.38)],
    }
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("reverse_attention")
    for variant, values in accuracy.items():
        for seed, (short, long) in enumerate(values):
            tags = {"claim": "attention_vs_fixed", "variant": variant, "seed": str(seed)}
            run = client.create_run(experiment, tags=tags | {"claim_scale": "cpu"})
            client.log_metric(run.info.run_id, "test/token_acc_by_len/lt15", short)
            client.log_metric(run.info.run_id, "test/token_acc_by_len/ge30", long)
            client.set_terminated(run.info.run_id, "FINISHED")
    done = report("--claim", "attention_vs_fixed", "--tracking-uri", uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    drops = {variant: np.subtract(*np.array(values).T) for variant, values in accuracy.items()}
    effect = (drops["fixed_context"] - drops["attention"]).mean()
    markdown = (tmp_path / "reports/claims/attention_vs_fixed.md").read_text()
    metric = "test/token_acc_by_len/lt15 - test/token_acc_by_len/ge30"
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {metric} |"))
    assert f"fixed_context higher than attention by > 0.1 | {effect:+.4f} [" in row
    assert "paired t, 3 seeds" in row and "| reproduced |" in row
    centre, _ = verdict.mean_interval(list(drops["fixed_context"]), 0.95)  # its own drop
    assert f"{centre:.4f} ± " in markdown


def test_a_report_names_its_store_without_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store_label(f"sqlite:///{tmp_path}/runs/mlflow.db") == "sqlite:///runs/mlflow.db"
    assert store_label("sqlite:////elsewhere/claimruns/mlflow.db") == "sqlite:///mlflow.db"
    assert store_label(f"file://{tmp_path}/mlruns") == "mlruns"
    assert store_label("/elsewhere/mlruns") == "mlruns"
    for as_given in ("sqlite:///mlflow.db", "mlruns", "http://127.0.0.1:5000"):
        assert store_label(as_given) == as_given


def test_the_readme_table_is_rewritten_between_its_markers(tmp_path, report):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fill_store(uri)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    done = report("--claims", "--tracking-uri", uri, "--readme", str(readme), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "old table" not in text and text.endswith(f"{README_END}\nafter\n")
    assert "`attnlab claim run position`" in text and "**reproduced**" in text
    assert "claim degradation: no finished runs" in done.stdout  # the others: one line each


def test_a_report_rewrites_its_claims_rows_and_keeps_the_others(tmp_path, report):
    """One claim rerun and reported: its row of the README's table and of the output folder's
    index is new, the rows of other claims stay, a row of a claim no longer in claims/ goes."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fill_store(uri)
    old_rows = [
        "| Position, earlier | `attnlab claim run position` | **inconclusive** | x | 0 | 1 min |",
        "| Degradation | `attnlab claim run degradation` | **reproduced** | y | 7 | 2 min |",
        "| Gone | `attnlab claim run gone_claim` | **reproduced** | z | 7 | 2 min |",
        "| Agreement | `attnlab claim run agreement` | **reproduced** | w | 7 | 2 min |",
    ]
    table = "| claim | command |\n|---|---|\n" + "\n".join(old_rows)
    for path in (tmp_path / "README.md", tmp_path / "out" / "claims.md"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"# x\n{README_BEGIN}\n{table}\n{README_END}\nafter\n")
    plots = tmp_path / "out" / "plots"
    plots.mkdir()
    for stale_or_other in ("position_val_loss.png", "degradation_buckets.png"):
        (plots / stale_or_other).write_bytes(b"png")
    done = report(
        "--claim", "position", "--tracking-uri", uri, "--out", "out", "--readme", "README.md",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "claims table of README.md: rows of position rewritten" in done.stdout
    for path, title in [
        (tmp_path / "README.md", "Learned and sinusoidal positions"),
        (tmp_path / "out" / "claims.md", "[Learned and sinusoidal positions"),
    ]:
        text = path.read_text()
        rows = text.partition(README_BEGIN)[2].partition(README_END)[0].strip().splitlines()
        assert rows[0].startswith("| claim | command | verdict |") and rows[1].startswith("|---|")
        # in the order of claims/: agreement, degradation, position; gone_claim dropped
        assert rows[2:4] == [old_rows[3], old_rows[1]], path
        assert rows[4].startswith(f"| {title}") and "**reproduced**" in rows[4], path
        assert len(rows) == 5 and text.endswith(f"{README_END}\nafter\n")
    assert "(position.md)" in (tmp_path / "out" / "claims.md").read_text()
    # the position curve of a metric it no longer plots is gone, another claim's plot stays
    assert sorted(p.name for p in plots.iterdir()) == [
        "degradation_buckets.png", "position_buckets.png", "position_val_acc.png",
    ]  # fmt: skip
    assert (tmp_path / "out" / "position.md").read_text().startswith("# Learned and sinusoidal")


def test_a_report_into_an_empty_folder_starts_its_claims_table(tmp_path, report):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fill_store(uri)
    done = report("--claim", "position", "--tracking-uri", uri, "--out", "new", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    index = (tmp_path / "new" / "claims.md").read_text()
    assert index.startswith("# attnlab claims") and index.count("`attnlab claim run ") == 1
    bad = tmp_path / "plain.md"
    bad.write_text("no markers\n")
    refused = report(
        "--claim", "position", "--tracking-uri", uri, "--readme", str(bad), cwd=tmp_path
    )
    assert refused.returncode == 2 and "--readme=" in refused.stderr
    assert bad.read_text() == "no markers\n"


def test_a_report_of_a_claim_without_runs_or_store_is_one_line(tmp_path, report):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    missing = report("--claim", "position", "--tracking-uri", uri, cwd=tmp_path)
    assert missing.returncode == 2 and "an existing MLflow store" in missing.stderr
    fill_store(uri)
    empty = report("--claim", "degradation", "--tracking-uri", uri, cwd=tmp_path)
    assert empty.returncode == 1
    assert empty.stdout.strip().splitlines() == [
        f"claim degradation: no finished runs of scale cpu in {uri} "
        "(run `attnlab claim run degradation`)"
    ]
    other_seeds = report(
        "--claim", "position", "--seeds", "7", "8", "--tracking-uri", uri, cwd=tmp_path
    )
    assert other_seeds.stdout.strip().splitlines() == [
        f"claim position: no finished runs of scale cpu at seeds 7 8 in {uri} "
        "(run `attnlab claim run position --seeds 7 8`)"
    ]
    unknown = report("--claim", "nope", "--tracking-uri", uri, cwd=tmp_path)
    assert unknown.returncode == 2 and "claim='nope'" in unknown.stderr


def test_claim_run_refuses_an_unknown_scale_and_too_few_seeds(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args, message in [
        (["position", "--scale", "tpu"], "--scale='tpu' is not allowed: one of cpu, gpu"),
        (["position", "--seeds", "3"], "two or more distinct seeds"),
    ]:
        with pytest.raises(SystemExit) as stop:
            claim_main(["run", *args])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no store, no output folder


TINY = [  # attention_vs_fixed at a size that runs in seconds, sources in all three buckets
    "data.n_train=200", "data.n_val=50", "data.n_test=60", "data.max_len=32",
    "trainer.max_epochs=1", "model.width=16",
]  # fmt: skip


@pytest.mark.slow
def test_the_same_claim_command_twice_gives_the_same_numbers_and_verdict(tmp_path):
    """Determinism end to end: two stores filled by the same command report the same tables.
    The two commands run side by side, one thread each (a thread count is part of what a
    seeded CPU run computes, so both get the same one)."""
    claim = [sys.executable, "-m", "attnlab.cli", "claim", "run", "attention_vs_fixed", *TINY]
    report = [sys.executable, "-m", "attnlab.cli", "report", "--claim", "attention_vs_fixed"]
    folders = [tmp_path / "first", tmp_path / "second"]
    envs = []
    for folder in folders:
        folder.mkdir()
        uri = f"sqlite:///{folder}/mlflow.db"
        envs.append({**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"})
    running = [
        subprocess.Popen(claim, cwd=folder, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for folder, env in zip(folders, envs, strict=True)
    ]  # fmt: skip
    tables = []
    for folder, env, process in zip(folders, envs, running, strict=True):
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, out[-2000:] + err[-2000:]
        done = subprocess.run(report, cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        markdown = (folder / "reports/claims/attention_vs_fixed.md").read_text()
        tables.append([line for line in markdown.splitlines() if line.startswith("| ")][2:])
    first, second = tables
    assert first == second and len(first) >= 4  # variant rows and comparison rows, all equal
    assert any(" ± " in line for line in first)


@pytest.mark.slow
def test_a_claim_on_a_benchmark_runs_each_seed_and_gets_a_verdict(tmp_path):
    """The complexity claim on the bench's tiny grid: three tagged runs, one verdict."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    run = [sys.executable, "-m", "attnlab.cli", "claim", "run", "complexity", "--", "--quick"]
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1", "2"]
    assert {r.data.tags["claim"] for r in runs} == {"complexity"}
    report = [sys.executable, "-m", "attnlab.cli", "report", "--claim", "complexity"]
    done = subprocess.run(report, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("  time_slope")]
    assert len(verdicts) == 3
    (crossing,) = [line for line in done.stdout.splitlines() if line.startswith("  crossover")]
    assert "inconclusive: too few seeds" in crossing  # the tiny grid's times never cross


def test_a_claim_trains_in_its_own_process_and_keeps_each_variants_exit_code(monkeypatch):
    """``attnlab train -m`` lines run in the claim's process (one import of torch, Lightning
    and MLflow a claim); a failing variant's exit code is the subprocess's, and the
    process's own arguments are left as they were."""

    def no_process(*args, **kwargs):
        raise AssertionError(f"a new process: {args}")

    monkeypatch.setattr(subprocess, "run", no_process)
    argv = list(sys.argv)
    line = [sys.executable, "-m", "attnlab.cli", "train", "-m", "model.width=30", "model.heads=4"]
    assert launch(line) == 2  # a config error, as `attnlab train` exits with it
    assert sys.argv == argv
