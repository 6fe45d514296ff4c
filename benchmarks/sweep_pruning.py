"""Does pruning pay? The same Optuna sweep with and without a pruner, side by side.

    python benchmarks/sweep_pruning.py [--trials 20] [--sweep pruning_bench] [extra overrides...]

Runs ``attnlab train -m sweep=<sweep>`` twice in a scratch directory (same sampler seed, same
trial budget): once with the sweep's own pruner, once with ``none``. Prints the wall time and
the best objective of each, and their ratios. Timing is measured here, not asserted in tests.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna


def run_sweep(workdir: Path, sweep: str, trials: int, pruner: list[str], extra: list[str]):
    study_name = f"bench-{'pruned' if not pruner else 'unpruned'}"
    command = [
        sys.executable, "-m", "attnlab.cli", "train", "-m", f"sweep={sweep}",
        f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.study_name={study_name}",
        "logger=none", "callbacks.progress_bar=null", "callbacks.model_summary=null",
        *pruner, *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{workdir}/optuna.db")
    states = [t.state.name for t in study.trials]
    return seconds, study.best_value, states.count("PRUNED"), study.direction.name.lower()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--sweep", default="pruning_bench")
    args, extra = parser.parse_known_args()
    no_pruner = ["hydra.sweeper.pruner.name=none"]
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        pruned = run_sweep(workdir, args.sweep, args.trials, [], extra)
        unpruned = run_sweep(workdir, args.sweep, args.trials, no_pruner, extra)
    print(f"sweep={args.sweep} trials={args.trials} direction={pruned[3]} {' '.join(extra)}")
    print(f"{'':10} {'wall s':>8} {'best':>8} {'pruned':>7}")
    for name, (seconds, best, n_pruned, _) in (("pruner", pruned), ("none", unpruned)):
        print(f"{name:10} {seconds:8.1f} {best:8.4f} {n_pruned:7d}")
    time_ratio = unpruned[0] / pruned[0]
    best_gap = abs(pruned[1] - unpruned[1]) / max(abs(unpruned[1]), 1e-12)
    print(f"speed-up from pruning: {time_ratio:.2f}x; best-value gap: {best_gap:.1%}")


if __name__ == "__main__":
    main()
