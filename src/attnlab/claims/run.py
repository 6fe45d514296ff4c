"""``attnlab claim run``: run every variant of a claim over its seeds, tagged for the report.

Each variant is one ``attnlab train -m`` over the seeds (Hydra's basic launcher runs them one
after another in one process); the seed sets the weights, the batch order and the data's own
sample (``data.seed``), with determinism on and the MLflow tags ``claim``, ``variant``,
``seed``, ``claim_scale`` and ``machine`` that ``attnlab claim report`` and the MLflow UI group
by. Any failing variant stops the claim with its exit code.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

from attnlab.claims.spec import Claim
from attnlab.errors import ConfigError

DEFAULT_SCALE = "cpu"


def machine() -> str:
    """What the runs ran on, in words: the accelerator if any, else the CPU and its cores."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


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


def command_runs(
    claim: Claim, variant: str, seeds: list[int], scale: str, extra: list[str]
) -> list[list[str]]:
    """A claim on another attnlab command (a benchmark): one run per seed, tagged likewise.
    The seed only numbers the repeat: a timing benchmark draws no random numbers."""
    tags = {"claim": claim.name, "variant": variant, "claim_scale": scale, "machine": machine()}
    base = [sys.executable, "-m", "attnlab.cli", *command_args(claim, variant, scale, extra)]
    return [
        [*base, *(f"--tag={k}={v}" for k, v in {**tags, "seed": seed}.items())] for seed in seeds
    ]


def run(claim: Claim, seeds: list[int], scale: str, extra: list[str]) -> int:
    """Run the variants one after another; return the first failing exit code, else 0."""
    if claim.command:
        commands = {v: command_runs(claim, v, seeds, scale, extra) for v in claim.variants}
    else:
        commands = {v: [train_command(claim, v, seeds, scale, extra)] for v in claim.variants}
    walls = {}
    for variant, lines in commands.items():
        print(f"attnlab claim {claim.name}: variant {variant}, seeds {seeds}", flush=True)
        start = time.perf_counter()
        for line in lines:
            code = subprocess.run(line).returncode
            if code:
                print(f"attnlab claim {claim.name}: variant {variant} failed (exit {code})")
                return code
        walls[variant] = time.perf_counter() - start
    summary = ", ".join(f"{v} {s:.0f} s" for v, s in walls.items())
    total = sum(walls.values())
    print(f"attnlab claim {claim.name}: done in {total:.0f} s ({summary}); the verdict: "
          f"attnlab claim report {claim.name}")  # fmt: skip
    return 0
