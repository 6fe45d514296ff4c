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


def test_wheel_contains_every_config_file(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"attnlab/conf/{p.relative_to(REPO / 'conf')}" for p in REPO.glob("conf/**/*.yaml")}
    assert shipped and shipped <= names


def test_installed_wheel_composes_from_its_own_configs(wheel: Path, tmp_path: Path):
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
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    found = subprocess.run(
        [sys.executable, "-c", "from attnlab.paths import config_dir; print(config_dir())"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()) == site / "attnlab" / "conf"
    composed = subprocess.run(
        [sys.executable, "-m", "attnlab.train", "--cfg", "job", "model.heads=2"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert composed.returncode == 0, composed.stderr
    assert "task_name: date_transformer" in composed.stdout and "heads: 2" in composed.stdout
