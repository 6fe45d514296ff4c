"""The docs site builds with ``mkdocs build --strict``: a broken link, a missing page or a page
left out of the navigation fails the build, and so this test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_docs_site_builds_strict_with_the_readme_as_its_home(tmp_path: Path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    home = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "How the pieces fit" in home and 'href="tutorial/"' in home
    for page in ("tutorial", "architecture", "notes", "guide/reliability"):
        assert (tmp_path / page / "index.html").is_file(), page
    for claim in sorted(ROOT.glob("claims/*.yaml")):  # each claim's report page is in the site
        assert (tmp_path / "claims" / claim.stem / "index.html").is_file(), claim.stem


def test_the_readme_opens_with_what_attnlab_is_and_the_two_commands():
    """The first screen: a title, what attnlab is, then the two set-up commands."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    first_screen = "\n".join(lines[:40])
    assert "attnlab turns" in first_screen
    commands = [line for line in lines if line.startswith("python3.11 -m venv")]
    assert len(commands) == 2 and commands[0].endswith("attnlab train")
    assert commands[1].split(" && ")[-1].startswith("pytest ") and commands[1] in first_screen
    assert len(lines) <= 250
