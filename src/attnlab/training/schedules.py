"""Learning-rate schedules built from torch's own schedulers, stepped once per optimizer step.

Each factory takes the optimizer and the run's total number of steps (known to the task only
once the Trainer has sized the data), so configs bind the rest with ``_partial_: true``.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    SequentialLR,
)

from attnlab.core.registry import Settings, register


def check_schedule(c: Settings) -> None:
    c.non_negative("warmup_steps")
    if "min_lr_ratio" in c:
        c.fraction("min_lr_ratio", high_open=False)
    if "milestones" in c:
        fractions = list(c.milestones)
        if not all(0.0 < f < 1.0 for f in fractions) or fractions != sorted(set(fractions)):
            c.fail("milestones", "increasing fractions of training in (0, 1)")
        c.fraction("gamma", low_open=True, high_open=False)
        c.fraction("warmup_start_factor", low_open=True, high_open=False)


SCHEDULE = dict(check=check_schedule, partial=True, runtime=("optimizer", "total_steps"))


@register("scheduler", "warmup_cosine", **SCHEDULE)
def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.0
) -> LRScheduler:
    """Linear warmup from ~0 to the base lr, then cosine decay to ``min_lr_ratio`` x base lr."""
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(
        optimizer, T_max=max(total_steps - warmup_steps, 1), eta_min=base_lr * min_lr_ratio
    )
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


@register("scheduler", "inverse_sqrt", **SCHEDULE)
def inverse_sqrt(optimizer: Optimizer, total_steps: int, warmup_steps: int = 4000) -> LRScheduler:
    """The Transformer paper's schedule (Vaswani et al. §5.3), peaking at the base lr.

    lr = base_lr * min(step / warmup, sqrt(warmup / step)); ``total_steps`` is unused.
    """
    warmup = max(warmup_steps, 1)

    def factor(step: int) -> float:
        step = step + 1
        return min(step / warmup, math.sqrt(warmup / step))

    return LambdaLR(optimizer, factor)


@register("scheduler", "warmup_multistep", **SCHEDULE)
def warmup_multistep(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 400,
    milestones: list[float] = (0.5, 0.75),
    gamma: float = 0.1,
    warmup_start_factor: float = 0.1,
) -> LRScheduler:
    """He et al. (2016) for deep nets: warm up, then divide the lr by 1/gamma at fixed points.

    The lr rises linearly from ``warmup_start_factor`` x base lr to the base lr over
    ``warmup_steps`` (He et al. held 0.1 x lr for ~400 iterations before ResNet-110 could train),
    then is multiplied by ``gamma`` at each ``milestones`` fraction of ``total_steps``.

    In a run too short for its warmup, the warmup shrinks to half the steps before the first
    milestone, so every milestone still falls after it (a 120-step run with 100 warmup steps
    used to drop the lr once, one step after warmup, and never again).
    """
    first_milestone = round(min(milestones) * total_steps)
    warmup_steps = min(warmup_steps, first_milestone // 2)
    steps = sorted({max(round(f * total_steps) - warmup_steps, 1) for f in milestones})
    decay = MultiStepLR(optimizer, milestones=steps, gamma=gamma)
    if warmup_steps == 0:
        return decay
    warmup = LinearLR(optimizer, start_factor=warmup_start_factor, total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, decay], milestones=[warmup_steps])
