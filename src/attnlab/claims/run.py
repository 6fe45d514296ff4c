"""``attnlab claim run``: run every variant of a claim over its seeds, tagged for the report.

Each variant is one ``attnlab train -m`` over the seeds (Hydra's basic launcher runs them one
after another), every variant in this process (:func:`launch`); the seed sets the weights, the
batch order and the data's own sample (``data.seed``), with determinism on and the MLflow tags
``claim``, ``variant``, ``seed``, ``claim_scale`` and ``machine`` that ``attnlab claim report``
and the MLflow UI group by. A seed is not run again when the run the report would take (the
latest finished one of that variant, seed and scale in the store: ``$MLFLOW_TRACKING_URI``,
else ``sqlite:///mlflow.db``) ran at this commit with the same overrides (its
``hydra.overrides`` tag; a benchmark's ``command`` tag), the machine's tag aside: it is reused.
Any failing variant stops the claim with its exit code. With ``--until-decided`` the seeds are
a pilot whose spread sizes a run of fresh seeds, judged alone
(attnlab.claims.verdict.confirmatory_size).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path

from attnlab.claims.spec import Claim
from attnlab.core.errors import ConfigError

DEFAULT_SCALE = "cpu"
MACHINE_ARGUMENTS = ("+tags.machine=", "--tag=machine=")  # no part of a run's config


def tracking_store() -> str:
    """The MLflow store ``attnlab train`` logs to (conf/logger/mlflow.yaml) and ``attnlab claim
    report`` reads by default."""
    return os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")


def machine() -> str:
    """What the runs ran on, in words: the accelerator if any, else the CPU's model (seeded
    runs give the same figures on the same CPU, not on another) and its cores."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores"


def cpu_model() -> str:
    """The CPU's model name as Linux reports it; "CPU" where it does not."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "CPU"
    names = (line.partition(":")[2].strip() for line in lines if line.startswith("model name"))
    return next(names, "") or "CPU"


def check_scale(claim: Claim, scale: str) -> None:
    """``scale`` is the CPU default or one of the claim's presets."""
    if scale != DEFAULT_SCALE and scale not in claim.scales:
        raise ConfigError("--scale", scale, f"one of {', '.join([DEFAULT_SCALE, *claim.scales])}")


def job_overrides(
    claim: Claim, variant: str, seeds: str, scale: str, extra: list[str]
) -> list[str]:
    """The ``attnlab train`` overrides of one variant over ``seeds`` (Hydra's sweep syntax,
    ``0,1,2``), all but the machine tag, which names the machine that runs them."""
    check_scale(claim, scale)
    return [
        *claim.overrides,
        *claim.variants[variant],
        *claim.scales.get(scale, []),
        *extra,
        f"seed={seeds}",
        "data.seed=${seed}",  # a seed draws its own data sample and split, not only weights
        "trainer.deterministic=true",
        f"+tags.claim={claim.name}",
        f"+tags.variant={variant}",
        "+tags.seed=${seed}",
        f"+tags.claim_scale={scale}",
    ]


def seed_overrides(
    claim: Claim, variant: str, seed: int, scale: str, extra: list[str]
) -> list[str]:
    """The overrides Hydra's basic sweeper gives the job of ``seed`` (what the run's
    ``hydra.overrides`` tag records, less the machine tag): each key once, values re-quoted."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    overrides = parser.parse_overrides(job_overrides(claim, variant, str(seed), scale, extra))
    jobs = BasicSweeper.split_arguments(overrides, None)[0]
    if len(jobs) > 1:
        raise ConfigError("overrides", extra, "one value per key: a claim runs one job a seed")
    return [o.input_line for o in parser.parse_overrides(jobs[0]) if not o.is_hydra_override()]


def train_command(
    claim: Claim, variant: str, seeds: list[int], scale: str, extra: list[str]
) -> list[str]:
    """The ``attnlab train -m`` command line of one variant over ``seeds``."""
    overrides = job_overrides(claim, variant, ",".join(map(str, seeds)), scale, extra)
    return [
        sys.executable, "-m", "attnlab.cli", "train", "-m", *overrides,
        f"+tags.machine='{machine()}'",
    ]  # fmt: skip


def command_args(claim: Claim, variant: str, scale: str, extra: list[str]) -> list[str]:
    """The arguments after ``attnlab`` of one variant of a claim on another command."""
    check_scale(claim, scale)
    return [*claim.command, *claim.variants[variant], *claim.scales.get(scale, []), *extra]


def seed_command_args(
    claim: Claim, variant: str, seed: int, scale: str, extra: list[str]
) -> list[str]:
    """The arguments after ``attnlab`` of one seed of a claim on another command, tagged as
    ``attnlab train`` runs are, all but the machine tag."""
    tags = {"claim": claim.name, "variant": variant, "claim_scale": scale, "seed": seed}
    return [
        *command_args(claim, variant, scale, extra),
        *(f"--tag={k}={v}" for k, v in tags.items()),
    ]


def command_runs(
    claim: Claim, variant: str, seeds: list[int], scale: str, extra: list[str]
) -> list[list[str]]:
    """A claim on another attnlab command (a benchmark): one run per seed, tagged likewise.
    The seed only numbers the repeat: a timing benchmark draws no random numbers."""
    base, machine_tag = [sys.executable, "-m", "attnlab.cli"], f"--tag=machine={machine()}"
    return [
        [*base, *seed_command_args(claim, variant, seed, scale, extra), machine_tag]
        for seed in seeds
    ]


def run_arguments(claim: Claim, variant: str, seed: int, scale: str, extra: list[str]) -> list[str]:
    """The config a run of ``seed`` records, less the machine tag: a training run's overrides
    (tag ``hydra.overrides``), a benchmark's command line (tag ``command``)."""
    if claim.command:
        return ["attnlab", *seed_command_args(claim, variant, seed, scale, extra)]
    return seed_overrides(claim, variant, seed, scale, extra)


def recorded_arguments(claim: Claim, tags: dict[str, str]) -> list[str]:
    """The config a run of ``claim`` recorded in its ``tags``, less the machine tag."""
    recorded = tags.get("command" if claim.command else "hydra.overrides", "")
    return [arg for arg in shlex.split(recorded) if not arg.startswith(MACHINE_ARGUMENTS)]


def reusable_seeds(
    claim: Claim, seeds: list[int], scale: str, extra: list[str], store: str
) -> dict[str, list[int]]:
    """variant -> the ``seeds`` whose run the report takes from ``store`` (the latest finished
    one) ran at this commit with this config; none where the store does not exist yet."""
    from attnlab.tracking.mlflow_run import attnlab_commit
    from attnlab.tracking.store import check_tracking_store

    check_tracking_store("logger.tracking_uri", store)
    expected = {
        (variant, seed): run_arguments(claim, variant, seed, scale, extra)
        for variant in claim.variants
        for seed in seeds
    }
    commit = attnlab_commit()
    sqlite_file = Path(store.removeprefix("sqlite:///"))
    if commit == "unknown" or (store.startswith("sqlite:///") and not sqlite_file.is_file()):
        return {variant: [] for variant in claim.variants}
    from mlflow import MlflowClient

    from attnlab.claims.report import find_runs

    found = find_runs(MlflowClient(store), claim, scale, seeds)
    return {
        variant: [
            seed
            for seed, found_run in sorted(found.get(variant, {}).items())
            if found_run.data.tags.get("git_commit") == commit
            and recorded_arguments(claim, found_run.data.tags) == expected[variant, seed]
        ]
        for variant in claim.variants
    }


def launch(line: list[str]) -> int:
    """Run one command line of a claim; its exit code. ``attnlab train -m`` runs in this
    process, as the next variant's would, so a claim imports torch, Lightning and MLflow once
    rather than once a variant (each ~5-8 s on 2 cores); each run seeds and sets up itself, as
    the jobs of one multirun do. Benchmarks keep a fresh process: they time it."""
    if line[1:4] != ["-m", "attnlab.cli", "train"]:
        return subprocess.run(line).returncode
    from attnlab.training import train

    argv = sys.argv
    sys.argv = ["attnlab"]  # what train.main names the program after
    try:
        return train.main(line[4:], then_exit=False)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else 1
    except Exception:  # what the subprocess would print and exit with
        traceback.print_exc()
        return 1
    finally:
        sys.argv = argv
        sys.stdout.flush()


def seeds_text(seeds: list[int]) -> str:
    return " ".join(map(str, seeds)) or "none"


def run(claim: Claim, seeds: list[int], scale: str, extra: list[str], store: str) -> int:
    """Run the variants one after another over the seeds without a reusable run in ``store``;
    return the first failing exit code, else 0."""
    from attnlab.tracking.mlflow_run import attnlab_commit

    reused = reusable_seeds(claim, seeds, scale, extra, store)
    started_ms, commit = int(time.time() * 1000), attnlab_commit()
    walls = {}
    for variant in claim.variants:
        moved_to = attnlab_commit()
        if moved_to != commit:  # each run tags the commit checked out when it starts
            print(
                f"attnlab claim {claim.name}: warning: the checkout moved from {commit[:12]} to "
                f"{moved_to[:12]} while the claim ran, so its runs are tagged with both and the "
                "report mixes them; rerun the claim with nothing committed meanwhile",
                file=sys.stderr,
                flush=True,
            )
            commit = moved_to
        missing = [seed for seed in seeds if seed not in reused[variant]]
        reuses = f"reuses seeds {seeds_text(reused[variant])} (this commit and config); "
        print(
            f"attnlab claim {claim.name}: variant {variant}: {reuses if reused[variant] else ''}"
            f"runs seeds {seeds_text(missing)}",
            flush=True,
        )
        if not missing:
            continue
        if claim.command:
            lines = command_runs(claim, variant, missing, scale, extra)
        else:
            lines = [train_command(claim, variant, missing, scale, extra)]
        start = time.perf_counter()
        for line in lines:
            code = launch(line)
            if code:
                print(f"attnlab claim {claim.name}: variant {variant} failed (exit {code})")
                return code
        walls[variant] = time.perf_counter() - start
    summary = ", ".join(f"{v} {s:.0f} s" for v, s in walls.items()) or "all reused"
    line = f"attnlab claim {claim.name}: done in {sum(walls.values()):.0f} s ({summary})"
    training = runs_seconds(claim, scale, seeds, store, started_ms) if walls else 0.0
    if training:
        overhead = sum(walls.values()) / training
        line += f"; its runs trained for {training:.0f} s: wall time / training time {overhead:.2f}"
    print(line)
    return 0


def runs_seconds(claim: Claim, scale: str, seeds: list[int], store: str, since_ms: int) -> float:
    """The summed duration (MLflow start to end: fitting and testing, not the process's start,
    imports and data building) of the runs of ``seeds`` that started after ``since_ms``."""
    from mlflow import MlflowClient

    from attnlab.claims.report import find_runs

    found = find_runs(MlflowClient(store), claim, scale, seeds)
    return sum(
        (run.info.end_time - run.info.start_time) / 1000
        for by_seed in found.values()
        for run in by_seed.values()
        if run.info.start_time >= since_ms and run.info.end_time
    )
