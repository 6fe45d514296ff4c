"""Where the Hydra config tree is: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    """attnlab/conf in an installed wheel; <repo>/conf in a checkout or an editable install."""
    for candidate in (_PACKAGE / "conf", _PACKAGE.parents[1] / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"attnlab's conf/ was found neither in {_PACKAGE} nor in the repo")
