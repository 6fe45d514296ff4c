"""``attnlab report --claim NAME`` / ``--claims``: verdicts from the runs of any MLflow store.

For each claim: the latest finished run of every (variant, seed) of the chosen scale, the mean
and confidence interval over seeds of every compared metric, the comparisons with the effect,
its interval, the best shortcut baseline and the verdict (rule: attnlab.claims.verdict), the
metric per bucket and the training curves read from the logged history. Written as Markdown
(plots beside it as PNG files) and as one self-contained HTML file (plots inlined), a page of
each per claim; the claims table of the output folder's ``claims.md`` and, with ``--readme``, of
the README (between the claims markers) gets the reported claims' rows, the other rows kept.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run

from attnlab.claims import spec, verdict
from attnlab.claims.spec import Claim, Comparison
from attnlab.claims.verdict import Judgement, mean_interval, percent
from attnlab.core import metric_keys
from attnlab.core.metric_keys import bucket_order

GAP = metric_keys.GAP
BASELINE = metric_keys.PREFIX
README_BEGIN, README_END = "<!-- claims:begin -->", "<!-- claims:end -->"


def run_metrics(run: Run) -> dict[str, float]:
    """A run's last value of every metric, plus the train-test gap where both errors exist."""
    metrics = dict(run.data.metrics)
    gap = metric_keys.train_test_gap(metrics)
    if gap is not None:
        metrics[GAP] = gap
    return metrics


def find_runs(
    client: MlflowClient,
    claim: Claim,
    scale: str,
    seeds: list[int] | None = None,
    finished: bool = True,
) -> dict[str, dict[int, Run]]:
    """variant -> seed -> the latest FINISHED run (any run, unless ``finished``) of that claim,
    variant, seed and scale (only ``seeds`` when given)."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = f"tags.claim = '{claim.name}'"
    if finished:
        query += " and attributes.status = 'FINISHED'"
    found: dict[str, dict[int, Run]] = defaultdict(dict)
    if not experiments:
        return found
    page = client.search_runs(
        experiments, query, max_results=5000, order_by=["attributes.start_time DESC"]
    )
    for run in page:
        tags = run.data.tags
        variant, seed = tags.get("variant"), tags.get("seed", "")
        if variant not in claim.variants or tags.get("claim_scale") != scale:
            continue
        if not seed.lstrip("-").isdigit() or (seeds and int(seed) not in seeds):
            continue
        found[variant].setdefault(int(seed), run)
    return found


def seeds_best_baseline(runs: list[Run], metric: str, direction: str) -> tuple[str, float] | None:
    """The best shortcut baseline of ``metric`` (logged ``baseline/<metric>/<name>``), each
    baseline's score averaged over ``runs`` (its data's seeds)."""
    sums: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        for key, value in run.data.metrics.items():
            if key.startswith(BASELINE):
                sums[key].append(value)
    means = {key: sum(values) / len(values) for key, values in sums.items()}
    return metric_keys.best_baseline(means, metric, higher_is_better=direction == "maximize")


@dataclass
class ClaimResult:
    claim: Claim
    scale: str
    runs: dict[str, dict[int, Run]]
    judgements: list[Judgement] = field(default_factory=list)
    baselines: list[tuple[str, float] | None] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return verdict.overall([j.verdict for j in self.judgements])

    def scores_by_seed(self, side: str, metric: str) -> dict[int, float]:
        """seed -> the value of ``metric`` for a variant (runs without it are left out); for a
        contrast of variants ``A - B`` or of metrics ``m - n``, the first's value minus the
        second's at each seed both have."""
        variants, metrics = spec.terms(side), spec.terms(metric)
        if len(variants) == 2 or len(metrics) == 2:
            parts = (
                [(v, metric) for v in variants]
                if len(variants) == 2
                else [(side, m) for m in metrics]
            )
            first, second = (self.scores_by_seed(*part) for part in parts)
            return {seed: first[seed] - second[seed] for seed in first if seed in second}
        by_seed = self.runs.get(side, {})
        values = {seed: run_metrics(by_seed[seed]).get(metric) for seed in sorted(by_seed)}
        return {seed: value for seed, value in values.items() if value is not None}

    def comparison_scores(self) -> list[tuple[dict[int, float], dict[int, float]]]:
        """Per comparison, the per-seed scores of its two sides, as the verdict takes them."""
        return [
            (
                self.scores_by_seed(comparison.better, comparison.metric),
                self.scores_by_seed(comparison.than, comparison.than_metric or comparison.metric),
            )
            for comparison in self.claim.comparisons
        ]

    def scores(self, variant: str, metric: str) -> list[float]:
        """Per-seed values of ``metric`` for ``variant``, in the order of the seeds."""
        return list(self.scores_by_seed(variant, metric).values())

    def all_runs(self) -> list[Run]:
        return [run for by_seed in self.runs.values() for run in by_seed.values()]

    def seeds(self) -> list[int]:
        return sorted({seed for by_seed in self.runs.values() for seed in by_seed})

    def wall_minutes(self) -> float:
        """The summed duration of the runs the verdict uses."""
        seconds = sum((r.info.end_time - r.info.start_time) / 1000 for r in self.all_runs())
        return seconds / 60

    def tag_values(self, key: str) -> list[str]:
        return sorted({run.data.tags.get(key, "?") for run in self.all_runs()})

    def last_date(self) -> str:
        end = max(run.info.end_time for run in self.all_runs())
        return datetime.fromtimestamp(end / 1000, timezone.utc).strftime("%Y-%m-%d")


def evaluate(
    client: MlflowClient, claim: Claim, scale: str, seeds: list[int] | None = None
) -> ClaimResult:
    """The judgements of ``claim``'s comparisons from its runs of ``scale`` (``seeds`` only)."""
    result = ClaimResult(claim, scale, find_runs(client, claim, scale, seeds))
    result.baselines = [
        seeds_best_baseline(
            list(result.runs.get(comparison.better, {}).values()),
            comparison.metric,
            comparison.direction,
        )
        for comparison in claim.comparisons
    ]
    result.judgements = verdict.judge_claim(
        claim.comparisons,
        result.comparison_scores(),
        claim.confidence,
        [  # a winner beats the baseline; a contrast is no model that could, and a failure
            # rate is no score of the baseline's metric
            baseline
            if comparison.expect == "better"
            and len(spec.terms(comparison.better)) == 1
            and comparison.fails_beyond is None
            else None
            for comparison, baseline in zip(claim.comparisons, result.baselines, strict=True)
        ],
    )
    return result


# --- tables ----------------------------------------------------------------------------------


def expectation(comparison: Comparison) -> str:
    arrow = "higher" if comparison.direction == "maximize" else "lower"
    better, than = comparison.better, comparison.than
    if comparison.than_metric:
        better, than = f"{better} {comparison.metric}", f"{than} {comparison.than_metric}"
    if comparison.fails_beyond is not None:
        fails = f"(a seed fails at {failure_text(comparison)})"
        if comparison.expect == "equal":
            return f"{better} and {than} fail as often (within ±{comparison.size:g}) {fails}"
        return f"{better} fails less often than {than} by > {comparison.size:g} {fails}"
    if comparison.expect == "equal":
        return f"{better} ≈ {than} (within ±{comparison.size:g})"
    return f"{better} {arrow} than {than} by > {comparison.size:g}"


def failure_text(comparison: Comparison) -> str:
    """The failure condition of a "trains / fails" comparison, e.g. ``test/error > 0.5``."""
    worse = ">" if comparison.direction == "minimize" else "<"
    return f"{comparison.metric} {worse} {comparison.fails_beyond:g}"


def effect_text(judgement: Judgement) -> str:
    """The effect with its interval and the interval's level, or why there is none."""
    effect = judgement.effect
    if effect is None:
        return "-"
    if not effect.decidable:
        return f"{effect.effect:+.4f} (no spread)"
    interval = f"[{effect.low:+.4f}, {effect.high:+.4f}]"
    return f"{effect.effect:+.4f} {interval} at {percent(effect.level)}"


def design_text(judgement: Judgement) -> str:
    """The test and its seeds, and the smallest distance from the size it resolves."""
    effect = judgement.effect
    if effect is None:
        return "-"
    if not effect.decidable:
        return f"{effect.test}, {effect.seeds} seeds"
    power = f"{verdict.POWER:.0%}"
    reach = "nothing" if math.isinf(effect.resolvable) else f"{effect.resolvable:.3g}"
    return f"{effect.test}, {effect.seeds} seeds; resolves {reach} at {power} power"


def variant_rows(result: ClaimResult) -> tuple[list[str], list[list[str]]]:
    compared = [(c.metric, c.than_metric or c.metric) for c in result.claim.comparisons]
    metrics = list(dict.fromkeys(m for pair in compared for m in pair))
    pct = int(round(result.claim.confidence * 100))
    headers = ["variant", "overrides", "seeds", *(f"{m} (mean ± {pct}% CI)" for m in metrics)]
    comparisons = result.claim.comparisons
    failing = {failure_text(c): c for c in comparisons if c.fails_beyond is not None}.values()
    headers += [f"seeds failing ({failure_text(c)})" for c in failing]
    rows = []
    for variant, overrides in result.claim.variants.items():
        seeds = sorted(result.runs.get(variant, {}))
        cells = [variant, " ".join(overrides), ", ".join(map(str, seeds)) or "none"]
        for metric in metrics:
            values = result.scores(variant, metric)
            if not values:
                cells.append("-")
                continue
            centre, half = mean_interval(values, result.claim.confidence)
            cells.append(f"{centre:.4f} ± {half:.4f}")
        for comparison in failing:
            values = result.scores(variant, comparison.metric)
            failed = verdict.count_failures(values, comparison)
            cells.append(f"{failed} of {len(values)}" if values else "-")
        rows.append(cells)
    return headers, rows


def buckets_of(result: ClaimResult) -> list[str]:
    prefix = f"{result.claim.buckets}/"
    keys = {k for run in result.all_runs() for k in run.data.metrics if k.startswith(prefix)}
    return sorted((k[len(prefix) :] for k in keys), key=bucket_order)


def bucket_rows(result: ClaimResult) -> tuple[list[str], list[list[str]]]:
    """Mean ± CI of the bucketed metric: a row per variant, then the best baseline."""
    buckets = buckets_of(result) if result.claim.buckets else []
    headers = [f"{result.claim.buckets} (mean ± CI)", *buckets]
    rows = []
    for variant in result.claim.variants:
        cells = [variant]
        for bucket in buckets:
            values = result.scores(variant, f"{result.claim.buckets}/{bucket}")
            centre, half = mean_interval(values, result.claim.confidence) if values else (0, 0)
            cells.append(f"{centre:.3f} ± {half:.3f}" if values else "-")
        rows.append(cells)
    direction = result.claim.comparisons[0].direction
    best = [
        seeds_best_baseline(result.all_runs(), f"{result.claim.buckets}/{b}", direction)
        for b in buckets
    ]
    if buckets and all(best):
        rows.append(["best baseline", *(f"{name} {value:.3f}" for name, value in best)])
    return headers, rows


def comparison_rows(result: ClaimResult) -> tuple[list[str], list[list[str]]]:
    headers = ["metric", "expected", "effect [CI]", "design", "best baseline", "verdict", "why"]
    rows = []
    for comparison, judgement, baseline in zip(
        result.claim.comparisons, result.judgements, result.baselines, strict=True
    ):
        base = "-" if baseline is None else f"{baseline[0]} {baseline[1]:.4f}"
        rows.append(
            [
                comparison.metric,
                expectation(comparison),
                effect_text(judgement),
                design_text(judgement),
                base,
                judgement.verdict,
                judgement.reason,
            ]
        )
    return headers, rows


def command(claim: Claim, scale: str) -> str:
    suffix = "" if scale == "cpu" else f" --scale {scale}"
    return f"attnlab claim run {claim.name}{suffix}"


def compared(comparison: Comparison) -> str:
    """What a comparison sets against what: two variants on a metric, or two metrics of one."""
    if comparison.than_metric:
        return f"{comparison.metric} vs {comparison.than_metric}"
    if comparison.fails_beyond is not None:
        rate = f"failure rate ({failure_text(comparison)})"
        return f"{comparison.better} vs {comparison.than}, {rate}"
    return f"{comparison.better} vs {comparison.than}, {comparison.metric}"


TABLE_HEADERS = ["claim", "command", "verdict", "effect [CI]", "seeds", "wall", "date", "machine"]


def table_rows(results: list[ClaimResult], link_pages: bool = False) -> list[list[str]]:
    """The claims table's Markdown row of each result; ``link_pages``: the claim's title links
    to its page (``<name>.md`` beside the table)."""
    rows = []
    for result in results:
        effects = "; ".join(
            f"{compared(c)}: {effect_text(j)}"
            for c, j in zip(result.claim.comparisons, result.judgements, strict=True)
        )
        title = f"{result.claim.title} (notes {result.claim.notes})"
        rows.append(
            [
                f"[{title}]({result.claim.name}.md)" if link_pages else title,
                f"`{command(result.claim, result.scale)}`",
                f"**{result.verdict}**",
                effects,
                ", ".join(map(str, result.seeds())),
                f"{result.wall_minutes():.1f} min",
                result.last_date(),
                ", ".join(result.tag_values("machine")),
            ]
        )
    return rows


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = [markdown_row(headers), "|" + "---|" * len(headers)]
    return "\n".join(lines + [markdown_row(row) for row in rows])


def html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- plots -----------------------------------------------------------------------------------


def bucket_figure(result: ClaimResult):
    """Mean ± CI of the bucketed metric per variant, with the best baseline per bucket."""
    prefix = f"{result.claim.buckets}/"
    buckets = sorted(
        {
            k[len(prefix) :]
            for r in result.all_runs()
            for k in r.data.metrics
            if k.startswith(prefix)
        },
        key=bucket_order,
    )
    if not buckets:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for index, variant in enumerate(result.claim.variants):
        means, halves = [], []
        for bucket in buckets:
            values = result.scores(variant, prefix + bucket)
            centre, half = (
                mean_interval(values, result.claim.confidence) if values else (float("nan"), 0)
            )
            means.append(centre)
            halves.append(half)
        ax.errorbar(
            buckets, means, yerr=halves, marker="o", capsize=3, color=f"C{index}", label=variant
        )
    baselines = [
        seeds_best_baseline(
            result.all_runs(), prefix + bucket, result.claim.comparisons[0].direction
        )
        for bucket in buckets
    ]
    if all(baselines):
        ax.plot(buckets, [b[1] for b in baselines], "k--", label="best baseline")
    ax.set_xlabel(result.claim.buckets.rpartition("_by_")[2] or "bucket")
    ax.set_ylabel(result.claim.buckets.rpartition("_by_")[0])
    ax.legend(fontsize=8)
    ax.set_title(f"{result.claim.name}: per bucket, mean ± CI over seeds", fontsize=9)
    fig.tight_layout()
    return fig


def curve_figure(client: MlflowClient, result: ClaimResult, metric: str):
    """``metric`` against the step, averaged over seeds per variant, from the logged history."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = False
    for index, variant in enumerate(result.claim.variants):  # the bucket plot's colours
        by_seed = result.runs.get(variant, {})
        series: dict[int, list[float]] = defaultdict(list)
        for run in by_seed.values():
            for point in client.get_metric_history(run.info.run_id, metric):
                series[point.step].append(point.value)
        if series:
            steps = sorted(series)
            means = [np.mean(series[s]) for s in steps]
            ax.plot(steps, means, color=f"C{index}", label=f"{variant} (n={len(by_seed)})")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(f"{result.claim.name}: {metric}, mean over seeds", fontsize=9)
    fig.tight_layout()
    return fig


def figures(client: MlflowClient, result: ClaimResult) -> list[tuple[str, bytes]]:
    """(file name, PNG bytes) of the claim's plots."""
    import matplotlib.pyplot as plt

    made = []
    if result.claim.buckets:
        made.append((f"{result.claim.name}_buckets.png", bucket_figure(result)))
    for metric in result.claim.curves:
        slug = re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_")
        made.append((f"{result.claim.name}_{slug}.png", curve_figure(client, result, metric)))
    pngs = []
    for name, fig in made:
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        pngs.append((name, buffer.getvalue()))
    return pngs


# --- documents -------------------------------------------------------------------------------

RULE = (
    "Rule: the effect is the expected winner's score minus the other's, signed so + is the "
    "claimed direction; the size is the smallest effect of interest. Where two variants share "
    "{seeds} seeds or more (a seed is the same data draw for both), the effect is the mean of the "
    "per-seed differences over those seeds, with Student's paired t interval (Student 1908); "
    "otherwise Welch's. Each decision is a one-sided test at α = {alpha:.4g} (half of "
    "1 − {pct}), and Holm's step-down (Holm 1979) corrects it over the claim's comparisons: "
    "ordered by p-value, the one of rank j of k is decided at α/(k − j) and the first that "
    "fails leaves it and the rest undecided. Each interval is printed at the level that "
    "decides it (1 − 2 × its α). better: reproduced when the interval lies above the size and "
    "the winner beats the best shortcut baseline; not reproduced when it lies below the size. "
    "equal: reproduced when it lies inside ±size (two one-sided tests, Schuirmann 1987); not "
    "reproduced when it lies wholly beyond one bound. Else inconclusive. Differences that do "
    "not vary over seeds (a floor or ceiling) give no interval and no verdict: the metric or "
    "the task must change. 'resolves' is the smallest distance from the size that the design "
    "(its seeds, the observed spread, its α) detects with {power} power; a finer size is reported "
    "with the seeds that would resolve it. A trains / fails comparison (fails_beyond) is on "
    "failure rates over seeds: its bounds are each rate's exact Clopper-Pearson bound (1934) at "
    "α/2, joined by Bonferroni, so they hold however the outcomes are spread or paired, and its "
    "'resolves' is summed exactly over the failure counts. A claim is reproduced when every "
    "comparison is, not "
    "reproduced when any is; {seeds} seeds per variant at least."
)


def rule_text(claim: Claim) -> str:
    return RULE.format(
        alpha=(1 - claim.confidence) / 2,
        pct=percent(claim.confidence),
        seeds=verdict.MIN_SEEDS,
        power=percent(verdict.POWER),
    )


def header_lines(result: ClaimResult) -> list[tuple[str, str]]:
    claim = result.claim
    return [
        ("source", claim.source),
        ("run", f"{command(claim, result.scale)}   (report: attnlab claim report {claim.name})"),
        (
            "runs",
            f"{len(result.all_runs())} over seeds {', '.join(map(str, result.seeds()))}; "
            f"{result.wall_minutes():.1f} min of training",
        ),  # fmt: skip
        ("commit", ", ".join(c[:10] for c in result.tag_values("git_commit"))),
        ("machine", ", ".join(result.tag_values("machine"))),
    ]


def claim_markdown(result: ClaimResult, plots: list[tuple[str, bytes]], plot_dir: str) -> str:
    claim = result.claim
    lines = [f"# {claim.title} (notes {claim.notes}): **{result.verdict}**", ""]
    lines += [f"- {key}: {value}" for key, value in header_lines(result)]
    lines += [
        "",
        markdown_table(*variant_rows(result)),
        "",
        markdown_table(*comparison_rows(result)),
    ]
    lines += ["", rule_text(claim), ""]
    lines += [f"![{name}]({plot_dir}/{name})" for name, _ in plots]
    return "\n".join(lines) + "\n"


def claim_html(result: ClaimResult, plots: list[tuple[str, bytes]]) -> str:
    claim = result.claim
    slug = result.verdict.replace(" ", "-")
    parts = [
        f"<section><h1>{html.escape(claim.title)} (notes {html.escape(claim.notes)}): "
        f"<span class='{slug}'>{html.escape(result.verdict)}</span></h1><ul>",
        *(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in header_lines(result)),
        "</ul>",
        html_table(*variant_rows(result)),
        html_table(*bucket_rows(result)) if result.claim.buckets and buckets_of(result) else "",
        html_table(*comparison_rows(result)),
        f"<p class='rule'>{html.escape(rule_text(claim))}</p>",
    ]
    for name, png in plots:
        data = base64.b64encode(png).decode()
        parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    return "\n".join(parts) + "</section>"


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;text-align:left}th{background:#f3f3f3}.reproduced{color:#17702a}
.not-reproduced{color:#a31515}.inconclusive{color:#8a6d00}.rule{font-size:12px;color:#555}
img{max-width:100%;display:block;margin:.5em 0}"""


def store_label(store: str) -> str:
    """The store as a report names it: a local store's path relative to the working directory,
    or only its file name when it lies outside; a server's URI as given."""
    scheme = "sqlite:///" if store.startswith("sqlite:///") else ""
    if not scheme and "://" in store and not store.startswith("file://"):
        return store
    path = Path(store.removeprefix("sqlite:///").removeprefix("file://"))
    if not path.is_absolute():
        return store
    try:
        return scheme + str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return scheme + path.name


INDEX_HEAD = (
    "# attnlab claims\n\nOne row per claim, rewritten by `attnlab claim report` for the claims "
    "it reports (the other rows are kept); each title links to the claim's page: its runs, the "
    "per-variant and per-bucket tables, the comparisons, the rule and the plots.\n"
)


def write_documents(
    client: MlflowClient, results: list[ClaimResult], out: Path, store: str, index: bool = True
) -> list[Path]:
    """Per claim ``<name>.md`` (plots under ``plots/``) and ``<name>.html`` (plots inlined);
    with ``index``, its row in the claims table of ``claims.md``. ``store`` is named without an
    absolute path. Returns the pages written."""
    store = store_label(store)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    written = []
    for result in results:
        name = result.claim.name
        plots = figures(client, result)
        remove_stale_plots(out / "plots", name, {plot for plot, _ in plots})
        for plot, png in plots:
            (out / "plots" / plot).write_bytes(png)
        origin = f"Store: {store}; written {when}."
        markdown = claim_markdown(result, plots, "plots")
        (out / f"{name}.md").write_text(f"{markdown}\n{origin}\n")
        (out / f"{name}.html").write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>attnlab claim {name}"
            f"</title><style>{STYLE}</style></head><body>{claim_html(result, plots)}"
            f"<p class='rule'>{html.escape(origin)}</p></body></html>"
        )
        written += [out / f"{name}.md", out / f"{name}.html"]
    if index:
        rewrite_table(out / "claims.md", results, link_pages=True, head=INDEX_HEAD)
    return written


VERDICTS_EXPERIMENT = "claims"  # where each report's verdicts are logged, one run a claim


def verdict_metrics(result: ClaimResult) -> dict[str, float]:
    """``<better>_vs_<than>/<metric>/effect`` (and ``low``, ``high``: its interval) of every
    comparison that has them."""
    metrics = {}
    for comparison, judgement in zip(result.claim.comparisons, result.judgements, strict=True):
        if judgement.effect is None:
            continue
        better, than, metric = (
            name.replace(spec.CONTRAST, "_minus_")
            for name in (comparison.better, comparison.than, comparison.metric)
        )
        if comparison.fails_beyond is not None:
            metric = f"{metric}/failure_rate"
        key = f"{better}_vs_{than}/{metric}"
        effect = judgement.effect
        values = {"effect": effect.effect, "low": effect.low, "high": effect.high}
        metrics |= {f"{key}/{name}": v for name, v in values.items() if math.isfinite(v)}
    return metrics


def log_verdicts(
    client: MlflowClient, results: list[ClaimResult], store: str, command: list[str]
) -> dict[str, str]:
    """One run per claim in the store's ``claims`` experiment, beside the claim's runs: tagged
    with the claim, its verdict and the commits its runs ran at; the effects and intervals as
    metrics; the claim's report (Markdown, HTML, plots) as artifacts. Returns claim -> run id."""
    from attnlab.tracking.mlflow_run import record_finished_run

    started_ms = int(time.time() * 1000)
    logged = {}
    for result in results:
        name = result.claim.name
        commits = sorted({run.data.tags.get("git_commit", "unknown") for run in result.all_runs()})
        with tempfile.TemporaryDirectory() as folder:
            write_documents(client, [result], Path(folder), store, index=False)
            logged[name] = record_finished_run(
                f"claim:{name}",
                command,
                params={"scale": result.scale, "seeds": " ".join(map(str, result.seeds()))},
                metrics=verdict_metrics(result),
                folder=Path(folder),
                started_ms=started_ms,
                extra_tags={
                    "claim_report": name,
                    "verdict": result.verdict,
                    "claim_commits": " ".join(commits),
                },
                experiment=VERDICTS_EXPERIMENT,
                tracking_uri=store,
            )
    return logged


def check_table(path: Path, text: str | None = None) -> None:
    """Refuse (``ConfigError`` on ``--readme``) a file without both claims markers."""
    from attnlab.core.errors import ConfigError

    if not path.is_file() and text is None:
        raise ConfigError("--readme", str(path), "an existing file")
    text = path.read_text() if text is None else text
    if README_BEGIN not in text or README_END not in text:
        raise ConfigError("--readme", str(path), f"a file holding {README_BEGIN} ... {README_END}")


def remove_stale_plots(folder: Path, claim: str, current: set[str]) -> None:
    """Delete the claim's plots (``<claim>_*.png``) that its report no longer draws, such as
    the curve of a metric it no longer compares; another claim's plots are kept."""
    longer = [other for other in spec.names() if other.startswith(f"{claim}_")]
    for plot in folder.glob(f"{claim}_*.png"):
        if plot.name not in current and not any(plot.name.startswith(f"{o}_") for o in longer):
            plot.unlink()


CLAIM_OF_ROW = re.compile(r"`attnlab claim run (\w+)")


def rewrite_table(
    path: Path, results: list[ClaimResult], link_pages: bool = False, head: str | None = None
) -> None:
    """Rewrite the claims table between ``path``'s claims markers: the rows of the reported
    claims replaced or added, the rows of every other claim of ``claims/`` kept as they were,
    in the order of the claim names. A missing file is created with ``head`` above the table
    when ``head`` is given."""
    text = path.read_text() if path.exists() or head is None else f"{head}\n"
    if head is not None and README_BEGIN not in text and README_END not in text:
        text += f"{README_BEGIN}\n{README_END}\n"
    check_table(path, text)
    before, _, rest = text.partition(README_BEGIN)
    table, _, after = rest.partition(README_END)
    rows = {m[1]: line for line in table.splitlines() if (m := CLAIM_OF_ROW.search(line))}
    for result, row in zip(results, table_rows(results, link_pages), strict=True):
        rows[result.claim.name] = markdown_row(row)
    lines = [markdown_row(TABLE_HEADERS), "|" + "---|" * len(TABLE_HEADERS)]
    lines += [rows[name] for name in spec.names() if name in rows]
    path.write_text(f"{before}{README_BEGIN}\n" + "\n".join(lines) + f"\n{README_END}{after}")
