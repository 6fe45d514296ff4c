"""Warnings of other libraries that attnlab cannot fix, silenced in one place.

Each filter is narrow (its message, category and the module that warns) and names the
upstream issue whose fix makes it unneeded; anything else still reaches the user.
"""

from __future__ import annotations

import warnings

KNOWN_WARNINGS = (
    # torchdata's StatefulDataLoader calls torch.set_vital, which torch deprecated and then
    # removed (meta-pytorch/data#1536); every loader attnlab builds would print it.
    dict(message="'set_vital' is deprecated", category=UserWarning, module="torchdata"),
    # Lightning's pytree helper still tests isinstance(treespec, LeafSpec), deprecated by torch
    # (Lightning-AI/pytorch-lightning#21326); printed once per fit.
    dict(
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module="lightning",
    ),
)


def silence_known_warnings() -> None:
    """Ignore the warnings of ``KNOWN_WARNINGS`` in this process."""
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", **known)
