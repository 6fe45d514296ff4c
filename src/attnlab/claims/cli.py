"""``attnlab claim``: the claims of the notes (claims/NAME.yaml): list them, plan one's cost,
run one over its seeds, report its verdict.

    attnlab claim list
    attnlab claim plan degradation              # the GPU preset: FLOPs, GPU hours, commands
    attnlab claim plan --all --peak-tflops 50   # every claim, at another assumed throughput
    attnlab claim run agreement                 # the claim's seeds, the CPU scale
    attnlab claim run agreement --seeds 10 11 12   # seeds nobody tuned for
    attnlab claim run degradation --scale gpu   # the claim's preset near the paper's sizes
    attnlab claim run position trainer.max_epochs=3   # extra overrides for every variant
    attnlab claim run agreement --until-decided # a pilot sizes fresh seeds; they alone judged
    attnlab claim report agreement              # its pages and row under reports/claims
    attnlab claim report agreement --readme README.md # ... and its row of the README's table
"""

from __future__ import annotations

import argparse
import shlex
import textwrap

from attnlab.claims import plan as claim_plan
from attnlab.claims import run as claim_run
from attnlab.claims import spec
from attnlab.cli import command_parser, plain
from attnlab.core.errors import ConfigError, report_config_errors

DEFAULT_MAX_SEEDS = 12  # fresh seeds of a confirmatory run (--until-decided) at most


def add_report_options(parser: argparse.ArgumentParser, condition: str = "") -> None:
    """Add --scale, --out and --seeds, the options of a claims report; ``condition`` (when
    they apply) starts their help."""
    parser.add_argument(
        "--scale",
        default=claim_run.DEFAULT_SCALE,
        help=f"{condition}the runs of this scale (default: %(default)s)",
    )
    parser.add_argument(
        "--out", default="reports/claims", help=f"{condition}output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", help=f"{condition}only these seeds (default: all)"
    )


def report_command(opts: argparse.Namespace) -> list[str]:
    """The ``attnlab claim report`` command line that ``opts`` stand for."""
    which = [opts.claim] if opts.claim else ["--all"]
    seeds = ["--seeds", *map(str, opts.seeds)] if opts.seeds else []
    return ["attnlab", "claim", "report", *which, "--scale", opts.scale, *seeds]


def report_verdicts(opts: argparse.Namespace) -> int:
    """Verdicts of claim ``opts.claim``, or of every claim with ``opts.claims``: a line per
    claim, its Markdown and HTML pages and its row of the claims table under ``opts.out``, and
    with ``opts.readme`` its row of that file's table."""
    from pathlib import Path

    from mlflow import MlflowClient

    from attnlab.claims import report
    from attnlab.tracking.store import check_existing_store

    with report_config_errors():
        check_existing_store("--tracking-uri", opts.tracking_uri)
        if opts.readme:  # before anything is written or logged
            report.check_table(Path(opts.readme))
        client = MlflowClient(opts.tracking_uri)
        claims = [spec.load(opts.claim)] if opts.claim else [spec.load(n) for n in spec.names()]
        results = []
        for claim in claims:
            result = report.evaluate(client, claim, opts.scale, opts.seeds)
            if not result.runs:
                seeds = " ".join(map(str, opts.seeds or ()))
                where = f" at seeds {seeds}" if seeds else ""
                command = f"attnlab claim run {claim.name}" + (f" --seeds {seeds}" if seeds else "")
                print(
                    f"claim {claim.name}: no finished runs of scale {opts.scale}{where} in "
                    f"{opts.tracking_uri} (run `{command}`)"
                )
                continue
            results.append(result)
            print(f"claim {claim.name}: {result.verdict}")
            for comparison, judgement in zip(claim.comparisons, result.judgements, strict=True):
                print(f"  {comparison.metric}: {judgement.verdict}: {judgement.reason}")
        if not results:
            return 1
        pages = report.write_documents(client, results, Path(opts.out), opts.tracking_uri)
        index = Path(opts.out) / "claims.md"
        print(f"written {', '.join(map(str, pages))} and the claims table of {index}")
        logged = report.log_verdicts(client, results, opts.tracking_uri, report_command(opts))
        runs = ", ".join(f"{name} {run_id}" for name, run_id in logged.items())
        print(f"verdicts logged in MLflow, experiment {report.VERDICTS_EXPERIMENT}: {runs}")
        if opts.readme:
            report.rewrite_table(Path(opts.readme), results)
            names = ", ".join(result.claim.name for result in results)
            print(f"claims table of {opts.readme}: rows of {names} rewritten")
    return 0


def plan_runs(opts: argparse.Namespace) -> int:
    """Plan claim ``opts.claim`` (or every claim with ``opts.claims``) at ``opts.scale``: one
    table per claim, then the total."""
    with report_config_errors():
        if not opts.peak_tflops > 0:
            raise ConfigError("--peak-tflops", opts.peak_tflops, "a throughput > 0 in TFLOPS")
        if opts.measure_rows is not None and opts.measure_rows < 1:
            raise ConfigError("--measure-rows", opts.measure_rows, "a number of rows >= 1")
        claims = [spec.load(opts.claim)] if opts.claim else [spec.load(n) for n in spec.names()]
        totals = []
        for claim in claims:
            seeds = checked_seeds(opts.seeds or claim.seeds)
            plans = claim_plan.plan_claim(
                claim, opts.scale, seeds, opts.overrides, opts.measure_rows
            )
            text, total = claim_plan.report(claim, plans, opts.scale, seeds, opts.peak_tflops)
            print(text, flush=True)
            totals.append(total)
    if len(claims) > 1:
        known = [total for total in totals if total is not None]
        unknown = len(totals) - len(known)
        rest = f" (and {unknown} claims of unknown FLOPs)" if unknown else ""
        print(f"all claims: {sum(known):.3g} GPU hours at {opts.peak_tflops:g} TFLOPS{rest}")
    print(
        f"assumed: {opts.peak_tflops:g} TFLOPS sustained on one GPU (an H100's dense bf16 peak is "
        "~989; small models reach far less, so the hours are a floor); FLOPs: one training "
        "batch counted by torch's FlopCounterMode on the CPU, times the batches of a run; "
        "validation, test and the optimizer's updates not counted"
    )
    return 0


def run_claim(parser: argparse.ArgumentParser, opts: argparse.Namespace) -> int:
    """``attnlab claim run``: the claim's seeds (or ``opts.seeds``), then with
    ``opts.until_decided`` the fresh seeds its pilot sizes, judged alone."""
    from attnlab.claims import verdict

    with report_config_errors():
        if opts.max_seeds is not None and not opts.until_decided:
            raise ConfigError("--max-seeds", opts.max_seeds, "only with --until-decided")
        max_seeds = DEFAULT_MAX_SEEDS if opts.max_seeds is None else opts.max_seeds
        if max_seeds < verdict.MIN_SEEDS:
            raise ConfigError("--max-seeds", max_seeds, f"a number >= {verdict.MIN_SEEDS}")
        claim = spec.load(opts.name)
        seeds = checked_seeds(opts.seeds or claim.seeds)
        if opts.until_decided and len(set(seeds)) < verdict.MIN_SEEDS:
            allowed = f"{verdict.MIN_SEEDS} or more distinct seeds for the pilot"
            raise ConfigError("--seeds", seeds, allowed)
        store = claim_run.tracking_store()
        code = claim_run.run(claim, seeds, opts.scale, opts.overrides, store)
        if code:
            return code
        if not opts.until_decided:
            command = shlex.join(report_command(verdict_options(parser, claim, opts.scale, seeds)))
            print(f"attnlab claim {claim.name}: the verdict: {command}")
            return 0
        fresh = confirmatory_seeds(claim, seeds, opts.scale, max_seeds, store)
        code = claim_run.run(claim, fresh, opts.scale, opts.overrides, store)
        if code:
            return code
    report_opts = verdict_options(parser, claim, opts.scale, fresh)
    print(
        f"attnlab claim {claim.name}: the verdict on the fresh seeds alone, reproduced by "
        f"`{shlex.join(report_command(report_opts))}`:"
    )
    return report_verdicts(report_opts)


def confirmatory_seeds(
    claim: spec.Claim, pilot: list[int], scale: str, max_seeds: int, store: str
) -> list[int]:
    """The fresh seeds of a confirmatory run, as many as the ``pilot``'s spread in ``store``
    needs (verdict.confirmatory_size), numbered after every seed of the claim and scale ever
    run there; the sizing printed in one line."""
    from mlflow import MlflowClient

    from attnlab.claims import report, verdict

    client = MlflowClient(store)
    pilot_result = report.ClaimResult(claim, scale, report.find_runs(client, claim, scale, pilot))
    sizing = verdict.confirmatory_size(
        claim.comparisons, pilot_result.comparison_scores(), claim.confidence, max_seeds
    )
    ever_run = report.find_runs(client, claim, scale, finished=False)
    first = 1 + max([*pilot, *(seed for by_seed in ever_run.values() for seed in by_seed)])
    fresh = list(range(first, first + sizing.seeds))
    needed = sizing.needed or (
        f"unknown (a comparison lacks a spread or {verdict.MIN_SEEDS} seeds in the pilot, or "
        f"needs over {verdict.MAX_SEEDS})"
    )
    line = (
        f"attnlab claim {claim.name}: pilot seeds {claim_run.seeds_text(pilot)}; seeds needed per "
        f"the pilot's spread: {needed}; seeds run: {sizing.seeds} fresh "
        f"({claim_run.seeds_text(fresh)})"
    )
    if sizing.capped:
        line += (
            f"; capped at {max_seeds}: the verdict may be inconclusive; the smallest effect it "
            "resolves is in the report"
        )
    print(line, flush=True)
    return fresh


def verdict_options(
    parser: argparse.ArgumentParser, claim: spec.Claim, scale: str, seeds: list[int]
) -> argparse.Namespace:
    """The options of ``attnlab claim report`` of ``claim`` at ``scale`` on ``seeds``."""
    return parser.parse_args(["report", claim.name, "--scale", scale, "--seeds", *map(str, seeds)])


def checked_seeds(seeds: list[int]) -> list[int]:
    if len(set(seeds)) < 2:
        raise ConfigError("--seeds", seeds, "two or more distinct seeds (3 for a verdict)")
    return seeds


def claim_parser(names: list[str]) -> argparse.ArgumentParser:
    """``attnlab claim list | run | report``, the claims ``names`` listed in the help."""
    one_of = f"one of {', '.join(names)}"
    parser = command_parser(
        "attnlab claim",
        __doc__,
        epilog=textwrap.fill(f"claims: {', '.join(names)} (attnlab claim list: their sources)"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    what_list_prints = "the claims, their sections of the notes and their sources"
    commands.add_parser("list", help=what_list_prints, description=f"Print {what_list_prints}.")
    planner = commands.add_parser(
        "plan",
        usage="attnlab claim plan (NAME [overrides] | --all) [options]",
        help="a claim's cost at a scale: FLOPs, GPU hours and the commands, nothing run",
        description=plain(claim_plan.__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chosen = planner.add_mutually_exclusive_group(required=True)
    chosen.add_argument("claim", nargs="?", metavar="NAME", help=f"the claim: {one_of}")
    chosen.add_argument("--all", dest="claims", action="store_true", help="every claim")
    planner.add_argument("--scale", default="gpu", help="the preset (default: %(default)s)")
    planner.add_argument("--seeds", type=int, nargs="+", help="default: the claim's seeds")
    planner.add_argument(
        "--peak-tflops",
        type=float,
        default=claim_plan.PEAK_TFLOPS,
        help=f"the sustained TFLOPS assumed on one GPU (default: {claim_plan.PEAK_TFLOPS:g}, an "
        "assumption; an H100's dense bf16 peak is ~989)",
    )
    planner.add_argument(
        "--measure-rows",
        type=int,
        help="count one step on this many rows of the batch, scaled to the whole batch: "
        "exact at a padded width, an estimate for a packed RNN (default: the whole batch)",
    )
    planner.add_argument("overrides", nargs="*", help="with NAME: extra overrides, as for run")
    runner = commands.add_parser(
        "run", help="run a claim's variants over its seeds", description=plain(claim_run.__doc__)
    )
    runner.add_argument("name", metavar="NAME", help=f"the claim: {one_of}")
    runner.add_argument("--seeds", type=int, nargs="+", help="default: the claim's seeds")
    runner.add_argument(
        "--scale", default=claim_run.DEFAULT_SCALE, help="cpu (default) or a preset"
    )
    runner.add_argument(
        "--until-decided",
        action="store_true",
        help="the seeds are a pilot that decides nothing: their spread sizes a run of fresh "
        "seeds (numbered after every seed of the claim in the store), which alone is judged "
        "and reported; error rates hold as for any fixed number of seeds",
    )
    runner.add_argument(
        "--max-seeds",
        type=int,
        help=f"with --until-decided: the most fresh seeds (default: {DEFAULT_MAX_SEEDS}; no "
        "fewer than a verdict needs)",
    )
    runner.add_argument("overrides", nargs="*", help="extra overrides for every variant")
    reporter = commands.add_parser(
        "report",
        usage="attnlab claim report (NAME | --all) [options]",
        help="a claim's verdict (or every claim's): Markdown and HTML with intervals",
        description="The verdict of a claim from its runs in an MLflow store, or of every "
        "claim with --all; the same as attnlab report --claim NAME / --claims.",
    )
    which = reporter.add_mutually_exclusive_group(required=True)
    which.add_argument("claim", nargs="?", metavar="NAME", help=f"the claim: {one_of}")
    which.add_argument("--all", "--claims", dest="claims", action="store_true", help="every claim")
    reporter.add_argument("--tracking-uri", default=claim_run.tracking_store())
    add_report_options(reporter)
    reporter.add_argument(
        "--readme", help="rewrite the reported claims' rows of this file's claims table"
    )
    return parser


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` without the Hydra overrides of ``run`` and ``plan`` (``key=value`` arguments,
    not options), and those overrides: they may then also follow an option such as
    ``--seeds 0 1``, whose list would otherwise take them."""
    if argv[:1] not in (["run"], ["plan"]):
        return argv, []
    overrides = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    return [arg for arg in argv if arg not in overrides], overrides


def main(argv: list[str]) -> int:
    names = spec.names()
    parser = claim_parser(names)
    arguments, overrides = split_overrides(argv)
    opts = parser.parse_args(arguments)
    if overrides:
        opts.overrides = [*opts.overrides, *overrides]
    if opts.command == "plan":
        return plan_runs(opts)
    if opts.command == "report":
        return report_verdicts(opts)
    if opts.command == "run":
        return run_claim(parser, opts)
    with report_config_errors():
        for name in names:
            claim = spec.load(name)
            print(f"{name:<20} notes {claim.notes:<10} {claim.title} ({claim.source})")
    return 0
