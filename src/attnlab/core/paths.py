"""Where the config tree, the sweeps and the claims are: in the wheel, or atop a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # attnlab/, this file being attnlab/core/paths.py


def config_dir() -> Path:
    """attnlab/conf in an installed wheel; <repo>/conf in a checkout or an editable install."""
    return _shipped("conf", "train.yaml")


def sweeps_dir() -> Path:
    """attnlab/sweeps in an installed wheel; <repo>/sweeps in a checkout or editable install."""
    return _shipped("sweeps", "overfitting.yaml")


def claims_dir() -> Path:
    """attnlab/claims in an installed wheel; <repo>/claims in a checkout or editable install."""
    return _shipped("claims", "degradation.yaml")


def _shipped(folder: str, marker: str) -> Path:
    for candidate in (_PACKAGE / folder, _PACKAGE.parents[1] / folder):
        if (candidate / marker).is_file():
            return candidate
    raise FileNotFoundError(f"attnlab's {folder}/ was found neither in {_PACKAGE} nor in the repo")
