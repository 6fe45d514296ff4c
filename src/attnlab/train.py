"""The one training entry: compose -> validate -> data -> model -> task -> Trainer fit/test.

Run as ``attnlab train [overrides]`` or ``python -m attnlab.train [overrides]``; any Hydra
flag works (``-m``, ``--cfg job``, ``hydra/launcher=joblib``). Returns the objective metric.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from attnlab.config import register_schemas, validate
from attnlab.errors import ConfigError, report_config_errors
from attnlab.paths import config_dir

register_schemas()


def _matching_kwargs(target: Callable, available: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``available`` that ``target`` accepts by name."""
    accepted = inspect.signature(target).parameters
    return {name: value for name, value in available.items() if name in accepted}


def _require(target: Callable, group: str, node: DictConfig, available: dict[str, Any]) -> None:
    """Fail with one line when the data does not publish what ``target`` needs.

    E.g. a ResNet on the date task: it needs in_channels, which only image data publishes.
    """
    needed = [
        name
        for name, p in inspect.signature(target).parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and name not in node
        and name not in available
    ]
    if needed:
        choice = HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None
        allowed = f"a {group} that fits this data, which does not give {', '.join(needed)}"
        raise ConfigError(group, choice or node.get("_target_"), allowed)


def build_model(cfg: DictConfig, dims: dict[str, Any]):
    """The model of ``cfg.model`` sized by the data, or an ensemble of such models."""
    import torch
    from hydra.utils import get_class, instantiate

    from attnlab.regularization import Ensemble

    model_class = get_class(cfg.model._target_)
    _require(model_class, "model", cfg.model, dims)
    kwargs = _matching_kwargs(model_class, dims)
    size = cfg.regularization.get("ensemble_size", 1)
    if size == 1:
        return instantiate(cfg.model, **kwargs)
    members = []
    for member in range(size):
        torch.manual_seed(cfg.seed + member)  # each member starts from its own weights
        members.append(instantiate(cfg.model, **kwargs))
    return Ensemble(members, bagging=cfg.regularization.ensemble_mode == "bagging")


def run(cfg: DictConfig) -> float:
    """Train and test one configuration; return ``cfg.objective.metric`` as a float."""
    validate(cfg)

    import lightning.pytorch as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor

    from attnlab.tracking import mlflow_run

    # verbose=False: a config error found while building the data stays the only stderr line.
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    dims = datamodule.dims
    longest = max(dims.get("max_src_len", 0), dims.get("max_tgt_len", 0))
    if longest > cfg.model.get("max_len", float("inf")):
        raise ConfigError("model.max_len", cfg.model.max_len, f">= {longest} tokens")

    model = build_model(cfg, dims)
    task_factory = instantiate(cfg.task, _convert_="all")  # plain lists: checkpoints load
    extras = {
        "optimizer": instantiate(cfg.optim),
        "scheduler": instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        **OmegaConf.to_container(cfg.regularization),
        **dims,
    }
    _require(task_factory.func, "task", cfg.task, {"model": model, **extras})
    task = task_factory(model=model, **_matching_kwargs(task_factory.func, extras))

    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node]
    output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    tags, stops = {}, ()
    if cfg.get("trial"):  # a job of the Optuna sweeper
        import optuna

        from attnlab.sweeper.trial import pruning_callback, trial_tags

        callbacks.append(pruning_callback(cfg))
        tags, stops = trial_tags(cfg), (optuna.TrialPruned,)

    if cfg.logger.get("_target_") is None:
        # LearningRateMonitor raises without a logger; with logger=none there is nothing to log to.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
        return _fit_and_test(trainer, task, datamodule, cfg)
    with mlflow_run(cfg, output_dir, tags, stopped_by=stops) as run_id:
        logger = instantiate(cfg.logger, run_id=run_id)
        # chance and shortcut scores of the data, next to the model's (DESIGN.md)
        baselines = getattr(datamodule, "baselines", dict)()
        logger.log_metrics({f"baseline/{k}": v for k, v in baselines.items()}, step=0)
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger)
        return _fit_and_test(trainer, task, datamodule, cfg)


def _fit_and_test(trainer, task, datamodule, cfg: DictConfig) -> float:
    """Fit, then score the best checkpoint on the split the objective names."""
    trainer.fit(task, datamodule=datamodule)
    has_best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    ckpt_path = "best" if has_best else None
    trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path)
    if cfg.objective.metric.startswith("val/"):  # after test(), only test metrics are kept
        trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt_path)
    value = float(trainer.callback_metrics[cfg.objective.metric])
    print(f"{cfg.objective.metric} = {value:.4f}")
    return value


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    if cfg.get("trial"):  # a sweep records a bad sampled value as a failed trial and goes on
        return run(cfg)
    with report_config_errors():  # inside the job, so Hydra adds no "Error executing job" line
        return run(cfg)


def main(args: list[str] | None = None) -> None:
    """Console entry: run the Hydra app; configuration mistakes exit 2 with one line."""
    if args is not None:
        sys.argv = [sys.argv[0], *args]
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach our reporter
    with report_config_errors():
        hydra_main()


if __name__ == "__main__":
    main()
