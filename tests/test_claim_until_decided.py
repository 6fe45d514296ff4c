"""``attnlab claim run``: runs already in the store are reused, and ``--until-decided`` sizes
fresh seeds from a pilot and judges them alone; ``attnlab train`` is faked by a launcher that
writes the runs Hydra's basic sweeper would make."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from mlflow import MlflowClient
from test_claims import Done

from attnlab.claims import run as claim_run
from attnlab.claims import spec
from attnlab.claims.cli import main as claim_main
from attnlab.tracking.mlflow_run import attnlab_commit
from attnlab.tracking.store import get_or_create_experiment

CLAIM = spec.load("resnet_v1_v2")  # one comparison: v2's score below v1's by SIZE at least
(COMPARED,) = CLAIM.comparisons
SIZE = COMPARED.size
COMMIT = attnlab_commit()


def error(variant: str, seed: int, spread: float) -> float:
    """v1's score, and v2's 6 sizes below it give or take ``spread`` sizes (the same at every
    third seed): in units of the size, so the seeds needed do not depend on it."""
    v1 = 0.2 + 0.01 * seed
    return v1 if variant == "v1" else v1 - SIZE * (6 + spread * (seed % 3 - 1))


RUN_MS = 2000  # how long each fake run trained


class FakeTrain:
    """Stands for ``attnlab train -m``: one run per seed of the sweep, ending ``status``, tagged
    as a run of the job's overrides is (``hydra.overrides``: the job's overrides as Hydra's
    sweeper writes them), with ``error``'s score; records the (variant, seeds) of each launch."""

    def __init__(self, spread: float = 0.6, commit: str = COMMIT, status: str = "FINISHED"):
        self.spread, self.commit, self.status, self.launched = spread, commit, status, []

    def __call__(self, line: list[str]) -> int:
        overrides = line[line.index("train") + 2 :]  # after `train -m`
        parser = OverridesParser.create()
        jobs = BasicSweeper.split_arguments(parser.parse_overrides(overrides), None)[0]
        seeds = []
        for job in jobs:
            seed = int(next(o for o in job if o.startswith("seed=")).partition("=")[2])
            tags = {
                key.removeprefix("+tags."): value.replace("$\\{seed\\}", str(seed)).strip("'")
                for key, _, value in (o.partition("=") for o in job if o.startswith("+tags."))
            }
            self.record({**tags, "hydra.overrides": shlex.join(job)})
            seeds.append(seed)
        self.launched.append((tags["variant"], seeds))
        return 0

    def record(self, tags: dict[str, str]) -> None:
        """One run of ``tags`` at ``self.commit``, with its seed's score, ending ``self.status``."""
        client = MlflowClient(claim_run.tracking_store())
        experiment_id = get_or_create_experiment(client, "fake")
        start = int(time.time() * 1000)
        tags = {**tags, "git_commit": self.commit}
        run = client.create_run(experiment_id, start_time=start, tags=tags)
        score = error(tags["variant"], int(tags["seed"]), self.spread)
        client.log_metric(run.info.run_id, COMPARED.metric, score)
        client.set_terminated(run.info.run_id, self.status, end_time=start + RUN_MS)


class FakeBench(FakeTrain):
    """Stands for a claim's benchmark command: one run, tagged by its ``--tag`` options, its
    command line in the tag ``command`` as ``attnlab bench`` records it."""

    def __call__(self, line: list[str]) -> int:
        tags = dict(arg.removeprefix("--tag=").split("=", 1) for arg in line if "--tag=" in arg)
        self.record({**tags, "command": shlex.join(["attnlab", *line[3:]])})
        self.launched.append((tags["variant"], [int(tags["seed"])]))
        return 0


@pytest.fixture
def claim(monkeypatch, capsys):
    """``attnlab claim ARGS`` in this process, ``attnlab train`` faked by ``train``."""

    def run(*args: str, train: FakeTrain) -> Done:
        monkeypatch.setattr(claim_run, "launch", train)
        try:
            code = claim_main(list(args))
        except SystemExit as stop:
            code = stop.code
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return run


def fill(train: FakeTrain, seeds: list[int], extra: list[str] = ()) -> None:
    """Runs of every variant of the claim at ``seeds`` as ``train`` makes them."""
    for variant in CLAIM.variants:
        train(claim_run.train_command(CLAIM, variant, seeds, "cpu", list(extra)))


def test_runs_of_this_commit_and_config_are_reused_and_no_others(claim):
    fill(FakeTrain(commit="0" * 40), [0])  # another commit
    fill(FakeTrain(), [1], extra=["trainer.max_steps=5"])  # other overrides
    fill(FakeTrain(), [2])  # the same: reused
    train = FakeTrain()
    first = claim("run", "resnet_v1_v2", train=train)
    assert first.returncode == 0, first.stderr
    assert train.launched == [("v2", [0, 1]), ("v1", [0, 1])]
    assert "variant v2: reuses seeds 2 (this commit and config); runs seeds 0 1" in first.stdout
    assert "; its runs trained for 8 s: wall time / training time" in first.stdout  # 4 new runs
    again = FakeTrain()
    second = claim("run", "resnet_v1_v2", train=again)
    assert second.returncode == 0 and again.launched == []
    all_reused = "reuses seeds 0 1 2 (this commit and config); runs seeds none"
    assert all(f"variant {v}: {all_reused}" in second.stdout for v in CLAIM.variants)
    assert "done in 0 s (all reused)" in second.stdout


def test_a_claim_warns_when_the_checkout_moves_under_it(claim, monkeypatch):
    """A commit made between two variants splits the claim's runs over two commits: said once,
    on stderr, naming both."""
    commits = iter(["a" * 40, "a" * 40, "b" * 40, "b" * 40])
    monkeypatch.setattr("attnlab.tracking.mlflow_run.attnlab_commit", lambda: next(commits))
    done = claim("run", "resnet_v1_v2", train=FakeTrain())
    assert done.returncode == 0
    (warning,) = [line for line in done.stderr.splitlines() if "warning" in line]
    assert f"moved from {'a' * 12} to {'b' * 12} while the claim ran" in warning


def test_a_benchmark_claims_runs_are_reused_by_their_command_line(claim):
    """Its runs record the command (``attnlab bench complexity ... --tag=seed=0``), no overrides."""
    first = FakeBench()
    assert claim("run", "complexity", "--", "--quick", train=first).returncode == 0
    assert first.launched == [("layers", [0]), ("layers", [1]), ("layers", [2])]
    again = FakeBench()
    assert claim("run", "complexity", "--", "--quick", train=again).returncode == 0
    assert again.launched == []
    other = FakeBench()
    assert claim("run", "complexity", train=other).returncode == 0  # without --quick
    assert other.launched == first.launched


def test_a_store_that_does_not_exist_yet_has_nothing_to_reuse(claim, tmp_path):
    train = FakeTrain()
    assert not (tmp_path / "mlflow.db").exists()
    done = claim("run", "resnet_v1_v2", "--seeds", "4", "5", train=train)
    assert done.returncode == 0 and train.launched == [("v2", [4, 5]), ("v1", [4, 5])]


def test_until_decided_runs_the_seeds_the_pilot_needs_beyond_every_seed_and_judges_them_alone(
    claim,
):
    """The pilot's spread (0.6 sizes at seeds 0-2) needs 6 seeds to resolve the size with 80% power;
    seed 9 ran before (and failed), so the fresh seeds are 10-15."""
    fill(FakeTrain(status="FAILED"), [9])
    train = FakeTrain()
    done = claim("run", "resnet_v1_v2", "--until-decided", train=train)
    assert done.returncode == 0, done.stderr
    fresh = [10, 11, 12, 13, 14, 15]
    assert train.launched == [("v2", [0, 1, 2]), ("v1", [0, 1, 2]), ("v2", fresh), ("v1", fresh)]
    assert (
        "attnlab claim resnet_v1_v2: pilot seeds 0 1 2; seeds needed per the pilot's spread: 6; "
        "seeds run: 6 fresh (10 11 12 13 14 15)\n"
    ) in done.stdout
    command = "attnlab claim report resnet_v1_v2 --scale cpu --seeds 10 11 12 13 14 15"
    assert f"reproduced by `{command}`" in done.stdout and "capped" not in done.stdout
    assert "claim resnet_v1_v2: reproduced" in done.stdout
    client = MlflowClient(claim_run.tracking_store())
    (verdict_run,) = client.search_runs([client.get_experiment_by_name("claims").experiment_id])
    assert verdict_run.data.params["seeds"] == "10 11 12 13 14 15"
    assert verdict_run.data.tags["command"] == command
    assert Path("reports/claims/resnet_v1_v2.md").is_file()


def test_until_decided_capped_says_the_verdict_may_be_inconclusive(claim):
    train = FakeTrain(spread=2.0)  # needs 34 seeds
    done = claim("run", "resnet_v1_v2", "--until-decided", "--max-seeds", "4", train=train)
    assert done.returncode == 0, done.stderr
    assert train.launched[2:] == [("v2", [3, 4, 5, 6]), ("v1", [3, 4, 5, 6])]
    sizing = re.search(r"pilot seeds 0 1 2; .*", done.stdout).group()
    assert sizing == (
        "pilot seeds 0 1 2; seeds needed per the pilot's spread: 34; seeds run: 4 fresh "
        "(3 4 5 6); capped at 4: the verdict may be inconclusive; the smallest effect it "
        "resolves is in the report"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--until-decided", "--max-seeds", "2"], "--max-seeds=2 is not allowed: a number >= 3"),
        (["--max-seeds", "5"], "--max-seeds=5 is not allowed: only with --until-decided"),
        (["--until-decided", "--seeds", "0", "1"], "--seeds=[0, 1] is not allowed: 3 or more"),
    ],
)
def test_bad_max_seeds_or_a_small_pilot_is_one_line_and_runs_nothing(claim, args, message):
    train = FakeTrain()
    done = claim("run", "resnet_v1_v2", *args, train=train)
    assert done.returncode == 2 and train.launched == [] and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr


def test_overrides_may_follow_the_seeds(claim):
    """``--seeds 0 1 trainer.max_steps=5``: the seeds' list does not take the override, which
    reaches every variant's runs as it does when written before the options."""
    train = FakeTrain()
    done = claim("run", "resnet_v1_v2", "--seeds", "0", "1", "trainer.max_steps=5", train=train)
    assert done.returncode == 0, done.stderr
    assert train.launched == [("v2", [0, 1]), ("v1", [0, 1])]
    assert "reuses seeds" not in done.stdout
    again = FakeTrain()
    reused = claim("run", "resnet_v1_v2", "trainer.max_steps=5", "--seeds", "0", "1", train=again)
    assert reused.returncode == 0 and again.launched == []  # the same config both ways
