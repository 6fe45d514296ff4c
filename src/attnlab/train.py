"""The one training entry: compose -> validate -> data -> model -> task -> Trainer fit/test.

Run as ``attnlab train [overrides]`` or ``python -m attnlab.train [overrides]``; any Hydra
flag works (``-m``, ``--cfg job``, ``hydra/launcher=joblib``). Returns the objective metric.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from attnlab.config import register_schemas, validate
from attnlab.errors import ConfigError, report_config_errors
from attnlab.paths import config_dir

register_schemas()
log = logging.getLogger(__name__)


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
        allowed = f"a {group} that fits this data, which does not give {', '.join(needed)}"
        raise ConfigError(group, _choice(group, node), allowed)


def _choice(group: str, node: DictConfig) -> str:
    """The option chosen for ``group`` (e.g. model=mlp), else the node's target."""
    choice = HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None
    return choice or node.get("_target_")


def build_model(cfg: DictConfig, dims: dict[str, Any]):
    """The model of ``cfg.model`` sized by the data, or an ensemble of such models."""
    import torch
    from hydra.errors import InstantiationException
    from hydra.utils import get_class, instantiate

    from attnlab.regularization import Ensemble

    model_class = get_class(cfg.model._target_)
    _require(model_class, "model", cfg.model, dims)
    kwargs = _matching_kwargs(model_class, dims)
    size = cfg.regularization.get("ensemble_size", 1)
    members = []
    for member in range(size):
        if size > 1:
            torch.manual_seed(cfg.seed + member)  # each member starts from its own weights
        try:
            members.append(instantiate(cfg.model, **kwargs))
        except InstantiationException as error:
            if not isinstance(error.__cause__, ValueError):
                raise
            # e.g. an MLP on token data: it needs in_features, or in_channels and image_size
            allowed = f"a model that fits this data ({error.__cause__})"
            raise ConfigError("model", _choice("model", cfg.model), allowed) from None
    if size == 1:
        return members[0]
    return Ensemble(members, bagging=cfg.regularization.ensemble_mode == "bagging")


def run(cfg: DictConfig) -> float:
    """Train and test one configuration; return ``cfg.objective.metric`` as a float."""
    validate(cfg)

    import lightning.pytorch as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor

    from attnlab.distributed import is_global_zero, process_rank
    from attnlab.tracking import check_tracking_store, fail_rank_zero_run, mlflow_run

    if cfg.logger.get("_target_") and is_global_zero():
        check_tracking_store("logger.tracking_uri", cfg.logger.tracking_uri)

    if HydraConfig.initialized():  # which values each process of a DDP job was composed from
        overrides = " ".join(HydraConfig.get().overrides.task)
        log.info("process %s composed from overrides: %s", process_rank(), overrides)

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

    if cfg.logger.get("_target_") is None or not is_global_zero():
        # logger=none, or rank > 0 of a DDP run (rank 0 owns the MLflow run). LearningRateMonitor
        # raises without a logger; there is nothing to log to here.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        trainer = build_trainer(cfg, model, callbacks, logger=False)
        try:
            return _fit_and_test(trainer, task, datamodule, cfg)
        except stops:
            if is_global_zero():
                raise
            return math.nan  # rank 0 records the pruned trial; a failing exit here would kill it
        except BaseException:
            if cfg.logger.get("_target_"):
                fail_rank_zero_run(cfg.logger.tracking_uri)
            raise
    with mlflow_run(cfg, output_dir, tags, stopped_by=stops) as run_id:
        logger = instantiate(cfg.logger, run_id=run_id)
        # chance and shortcut scores of the data, next to the model's (DESIGN.md)
        baselines = getattr(datamodule, "baselines", dict)()
        logger.log_metrics({f"baseline/{k}": v for k, v in baselines.items()}, step=0)
        trainer = build_trainer(cfg, model, callbacks, logger=logger)
        logger.log_hyperparams(distributed_params(cfg, trainer, model))
        return _fit_and_test(trainer, task, datamodule, cfg)


def sync_batchnorm(cfg: DictConfig, model) -> bool:
    """``trainer.sync_batchnorm``, with ``auto``: on when BatchNorm meets several processes."""
    from attnlab.distributed import uses_batchnorm, world_size

    if cfg.trainer.sync_batchnorm == "auto":
        return world_size(cfg.trainer) > 1 and uses_batchnorm(model)
    return bool(cfg.trainer.sync_batchnorm)


def build_trainer(cfg: DictConfig, model, callbacks: list, logger):
    """``cfg.trainer`` as a Lightning Trainer, attnlab's own keys resolved.

    ``compile`` compiles the model in place (state-dict keys unchanged, so checkpoints load
    into an uncompiled model).
    """
    from hydra.utils import instantiate

    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    if node.pop("compile"):
        model.compile()
    node["sync_batchnorm"] = sync_batchnorm(cfg, model)
    return instantiate(node, callbacks=callbacks, logger=logger)


def distributed_params(cfg: DictConfig, trainer, model) -> dict[str, Any]:
    """Processes and batch sizes as run: ``data.batch_size`` is per device (per process)."""
    per_device = cfg.data.get("batch_size")
    processes = trainer.world_size
    params = {
        "distributed.world_size": processes,
        "distributed.strategy": type(trainer.strategy).__name__,
        "distributed.sync_batchnorm": sync_batchnorm(cfg, model),
    }
    if per_device:
        params["distributed.batch_size_per_device"] = per_device
        global_batch = per_device * processes * trainer.accumulate_grad_batches
        params["distributed.batch_size_global"] = global_batch
    return params


def _fit_and_test(trainer, task, datamodule, cfg: DictConfig) -> float:
    """Fit, then score the best checkpoint on the split the objective names."""
    from attnlab.distributed import is_global_zero, launching_job
    from attnlab.sweeper.trial import FitPruning

    launches = trainer.world_size > 1 and HydraConfig.initialized() and is_global_zero()
    output_dir = HydraConfig.get().runtime.output_dir if launches else None
    with launching_job(output_dir) if launches else nullcontext():
        trainer.fit(task, datamodule=datamodule)
        for callback in trainer.callbacks:
            if isinstance(callback, FitPruning):  # under DDP the pruning decision is read here
                callback.check_pruned()
        has_best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        ckpt_path = "best" if has_best else None
        trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path)
        if cfg.objective.metric.startswith("val/"):  # after test(), only test metrics are kept
            trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt_path)
    value = float(trainer.callback_metrics[cfg.objective.metric])
    if trainer.is_global_zero:
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
