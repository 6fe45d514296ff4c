"""The wheel carries the config tree, and an installed attnlab finds it there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("attnlab-*.whl"))


def test_wheel_contains_every_config_and_sweep_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("conf", "sweeps"):
        files = REPO.glob(f"{folder}/**/*.yaml")
        shipped = {f"attnlab/{folder}/{p.relative_to(REPO / folder)}" for p in files}
        assert shipped and shipped <= names


def _install(wheel: Path, tmp_path: Path) -> dict[str, str]:
    """The wheel installed into its own folder; the environment that imports it from there."""
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}  # without the tests' components


def test_installed_wheel_composes_from_its_own_configs(wheel: Path, tmp_path: Path):
    env = _install(wheel, tmp_path)
    site = Path(env["PYTHONPATH"])
    found = subprocess.run(
        [sys.executable, "-c", "from attnlab.core.paths import config_dir; print(config_dir())"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == site / "attnlab" / "conf"
    composed = subprocess.run(
        [sys.executable, "-m", "attnlab.training.train", "--cfg", "job", "model.heads=2"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert composed.returncode == 0, composed.stderr
    assert "task_name: date_transformer" in composed.stdout and "heads: 2" in composed.stdout


@pytest.mark.slow
def test_installed_wheel_runs_a_sweep_in_an_empty_directory(wheel: Path, tmp_path: Path):
    """`sweep=overfitting` comes from the wheel's attnlab/sweeps (one short trial)."""
    env = _install(wheel, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    swept = subprocess.run(
        [sys.executable, "-m", "attnlab.training.train", "-m", "sweep=overfitting",
         "hydra.sweeper.n_trials=1", "trainer.max_epochs=1", "logger=none",
         "callbacks.progress_bar=null", "callbacks.model_summary=null"],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600, cwd=empty,
    )  # fmt: skip
    assert swept.returncode == 0, swept.stderr[-3000:]
    (results,) = empty.glob("logs/overfitting/multiruns/*/optimization_results.yaml")
    assert "best_value" in results.read_text()


def test_the_constraints_pin_every_dependency_within_what_pyproject_allows():
    """constraints.txt (the README's install) names one version of every dependency of every
    extra, and each pin satisfies pyproject.toml: a dependency added without regenerating the
    file, or a pin that drifted out of range, fails here instead of in a user's install."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])
