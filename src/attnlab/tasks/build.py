"""A run's model and task from its config: the pieces a training run fits and a saved model
loads again."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


def build_model(cfg: DictConfig, dims: Any):
    """The model of ``cfg.model`` sized by the data, or an ensemble of such models."""
    import torch

    from attnlab.core import registry
    from attnlab.tasks.regularization import Ensemble

    size = cfg.regularization.get("ensemble_size", 1)  # tasks without ensembles drop the key
    members = []
    for member in range(size):
        if size > 1:
            torch.manual_seed(cfg.seed + member)  # each member starts from its own weights
        members.append(registry.build("model", cfg.model, dims))
    if size == 1:
        return members[0]
    return Ensemble(members, bagging=cfg.regularization.ensemble_mode == "bagging")


def build_task(cfg: DictConfig, model, dims: Any):
    """The task of ``cfg.task`` around ``model``, with the optimizer, schedule and penalties."""
    from hydra.utils import instantiate

    from attnlab.core import registry
    from attnlab.tasks.regularization import TASK_KEYS

    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    penalties = {k: v for k, v in cfg.regularization.items() if k in TASK_KEYS}
    optimizer = instantiate(cfg.optim)
    task = registry.build(
        "task", cfg.task, dims, model=model, optimizer=optimizer, scheduler=scheduler, **penalties
    )
    task.example_input_array = task.example_input(dims)  # the model summary's sizes and FLOPs
    return task
