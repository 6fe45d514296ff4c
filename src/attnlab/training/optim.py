"""The optimizers a config can name: torch's own, with the keys attnlab exposes and their rules.

The task builds each one on ``attnlab.tasks.regularization.decay_groups``, so
``weight_decay`` falls on weight matrices only.
"""

from __future__ import annotations

import torch

from attnlab.core.registry import Component, Settings, add


def check_optimizer(c: Settings) -> None:
    c.positive("lr")
    c.non_negative("weight_decay")
    if "betas" in c and not all(0.0 <= beta < 1.0 for beta in c.betas):
        c.fail("betas", "two values in [0, 1)")
    if "momentum" in c:
        c.fraction("momentum")


ADAM_KEYS = ("lr", "betas", "weight_decay")
for name, optimizer, keys in (
    ("adamw", torch.optim.AdamW, ADAM_KEYS),
    ("adam", torch.optim.Adam, ADAM_KEYS),
    ("sgd", torch.optim.SGD, ("lr", "momentum", "nesterov", "weight_decay")),
):
    add(Component("optim", name, optimizer, check=check_optimizer, keys=keys, partial=True))
