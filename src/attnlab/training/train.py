"""The one training entry: compose -> validate -> data -> model -> task -> Trainer fit/test.

Run as ``attnlab train [overrides]`` or ``python -m attnlab.training.train [overrides]``; any Hydra
flag works (``-m``, ``--cfg job``, ``hydra/launcher=joblib``). Returns the objective metric.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from attnlab.core.config import register_schemas, validate
from attnlab.core.errors import EXIT_CONFIG_ERROR, ConfigError, mask_secrets, report_config_errors
from attnlab.core.paths import config_dir
from attnlab.core.third_party import silence_known_warnings
from attnlab.tasks.build import build_model, build_task

register_schemas()
log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float:
    """Train and test one configuration; return ``cfg.objective.metric`` as a float.

    The process that trains (global rank 0) owns its output folder while it runs: another
    run started in the same folder (``resume=auto``, ``hydra.run.dir``) is refused meanwhile.
    """
    validate(cfg)
    from attnlab.core.errors import Preempted
    from attnlab.training.distributed import is_global_zero
    from attnlab.training.resume import owning

    output_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    try:
        if not (output_dir and is_global_zero()):
            return _run(cfg, output_dir)
        with owning(output_dir, folder_key(cfg)):
            return _run(cfg, output_dir)
    except Preempted as preempted:  # saved, its MLflow run KILLED, the folder free again:
        preempted.hand_on()  # now submitit may requeue the job (and exit)
        raise


def folder_key(cfg: DictConfig) -> str:
    """The key that chose the run's folder, named when the folder cannot be trained in."""
    return "resume" if cfg.get("resume") == "auto" else "hydra.run.dir"


def _run(cfg: DictConfig, output_dir: str | None) -> float:
    """Build, fit and test in ``output_dir`` (None outside Hydra)."""
    import lightning.pytorch as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import LearningRateMonitor
    from optuna import TrialPruned

    from attnlab.core.contracts import HasBaselines
    from attnlab.core.metric_keys import PREFIX as BASELINE
    from attnlab.serving import save_and_log
    from attnlab.tracking.logger import UNLOGGED_FILE, check_async_logging_buffer
    from attnlab.tracking.mlflow_run import fail_rank_zero_run, mlflow_run
    from attnlab.tracking.stale import fail_stale_of_experiment
    from attnlab.tracking.store import check_tracking_store
    from attnlab.training.callbacks import StopOnDivergence
    from attnlab.training.distributed import is_global_zero, process_rank
    from attnlab.training.lightning_trainer import build_trainer, distributed_params
    from attnlab.training.resume import unfinished_resume_point, write_run_id
    from attnlab.training.threads import set_run_thread_budget

    set_run_thread_budget(cfg.trainer)  # cores / processes sharing them (attnlab.training.threads)
    # One decision: rank 0 of a run with a logger owns the MLflow run; everyone else logs nowhere.
    tracked = bool(cfg.logger.get("_target_")) and is_global_zero()
    if tracked:
        check_tracking_store("logger.tracking_uri", cfg.logger.tracking_uri)
        check_async_logging_buffer()
    if HydraConfig.initialized():  # which values each process of a DDP job was composed from
        overrides = mask_secrets(" ".join(HydraConfig.get().overrides.task))
        log.info("process %s composed from overrides: %s", process_rank(), overrides)

    # verbose=False: a config error found while building the data stays the only stderr line.
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    validate(cfg, datamodule.dims)
    if cfg.eval_checkpoint:
        check_trained_data(cfg.eval_checkpoint, datamodule)
    model = build_model(cfg, datamodule.dims)
    task = build_task(cfg, model, datamodule.dims)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node]
    callbacks.append(StopOnDivergence())  # not a config option: a NaN loss always ends the run

    if not tracked:
        # LearningRateMonitor raises without a logger; there is nothing to log to here.
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        trainer = build_trainer(cfg, model, callbacks, logger=False)
        try:
            value = _fit_and_test(trainer, task, datamodule, cfg)
            if cfg.log_model and not cfg.eval_checkpoint and is_global_zero():
                save_and_log(cfg, task, datamodule, output_dir, tracked=False)
            return value
        except TrialPruned:
            if is_global_zero():
                raise
            return math.nan  # rank 0 records the pruned trial; a failing exit here would kill it
        except BaseException:
            if cfg.logger.get("_target_"):  # a DDP child: end rank 0's run FAILED
                fail_rank_zero_run(cfg.logger.tracking_uri)
            raise
    stale = fail_stale_of_experiment(cfg.logger.tracking_uri, cfg.logger.experiment_name)
    if stale:
        log.info("%d run(s) whose process no longer exists marked FAILED", stale)
    resume = unfinished_resume_point(cfg.logger.tracking_uri, output_dir, folder_key(cfg))
    if resume:
        log.info("resuming MLflow run %s from %s", resume.run_id, resume.checkpoint)
    with mlflow_run(cfg, output_dir, resume.run_id if resume else None) as run_id:
        if output_dir:
            write_run_id(output_dir, run_id)
        # a resumed run's logger skips the steps its history already holds
        target = {"_target_": "attnlab.training.resume.SkipLoggedSteps"} if resume else {}
        unlogged = str(Path(output_dir or ".", UNLOGGED_FILE))  # what the store did not take
        # mlflow_run ends the run, once, after the model is logged
        logger = instantiate(cfg.logger, run_id=run_id, unlogged=unlogged, ends_run=False, **target)
        if isinstance(datamodule, HasBaselines):  # chance and shortcut scores beside the model's
            baselines = {f"{BASELINE}{k}": v for k, v in datamodule.baselines().items()}
            logger.log_metrics(baselines, step=0)
        trainer = build_trainer(cfg, model, callbacks, logger=logger)
        logger.log_hyperparams(distributed_params(cfg, trainer, model))
        value = _fit_and_test(trainer, task, datamodule, cfg, resume.checkpoint if resume else None)
        if cfg.log_model and not cfg.eval_checkpoint:  # the best weights: test() loaded them
            save_and_log(cfg, task, datamodule, output_dir, tracked=True)
        return value


def check_trained_data(checkpoint: str, datamodule) -> None:
    """Before an eval loads any weights: hand the data module the state it saved in the
    checkpoint (its vocabularies), which it refuses if its own data built other ids."""
    import torch

    if not Path(checkpoint).is_file():
        raise ConfigError("eval_checkpoint", checkpoint, "an existing checkpoint file")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = saved.get(type(datamodule).__qualname__)  # where Lightning keeps the module's state
    if state is not None:
        datamodule.load_state_dict(state)


def _fit_and_test(trainer, task, datamodule, cfg: DictConfig, resume_from=None) -> float:
    """Fit (from ``resume_from``, a checkpoint, if given), then score the best checkpoint on
    the split the objective names."""
    from attnlab.training.distributed import is_global_zero, launching_job, leaving_process_group

    # Loaded (optuna_integration, ~0.3 s) only by a sweep, which then adds FitPruning.
    trial = sys.modules.get("attnlab.sweeper.trial")

    launches = trainer.world_size > 1 and HydraConfig.initialized() and is_global_zero()
    output_dir = HydraConfig.get().runtime.output_dir if launches else None
    with launching_job(output_dir, trainer) if launches else leaving_process_group():
        if cfg.eval_checkpoint:  # attnlab eval: a trained checkpoint, tested as it is
            ckpt_path = cfg.eval_checkpoint
        else:
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
            for callback in trainer.callbacks:
                if trial and isinstance(callback, trial.FitPruning):  # under DDP: read here
                    callback.check_pruned()
            checkpoint = trainer.checkpoint_callback
            ckpt_path = "best" if checkpoint and checkpoint.best_model_path else None
        # weights_only: a checkpoint holds tensors and plain values only; loading never runs code
        trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if cfg.objective.metric.startswith("val/"):  # after test(), only test metrics are kept
            trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    value = float(trainer.callback_metrics[cfg.objective.metric])
    if trainer.is_global_zero:
        print(f"{cfg.objective.metric} = {value:.4f}")
    return value


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def hydra_main(cfg: DictConfig) -> float:
    silence_known_warnings()  # here: the job of every launcher, in its own process or not
    if HydraConfig.get().mode == RunMode.MULTIRUN:  # the sweeper records a bad job and goes on
        return run(cfg)
    try:
        with report_config_errors():  # inside the job: Hydra adds no "Error executing job" line
            return run(cfg)
    except SystemExit as stop:
        if stop.code == EXIT_CONFIG_ERROR:
            remove_unstarted_output_dir(Path(HydraConfig.get().runtime.output_dir))
        raise


def remove_unstarted_output_dir(output_dir: Path) -> None:
    """After a config error: remove the folder Hydra made for the run when it holds nothing
    but Hydra's records (``.hydra/``, the job's log), so a run that never started leaves no
    folder behind. A folder with anything else in it (a reused ``hydra.run.dir``) stays."""
    from attnlab.training.resume import OWNER_LOCK, in_use

    if in_use(output_dir):  # refused because another living process trains in it
        return
    hydra_dir = output_dir / ".hydra"
    records = [hydra_dir / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
    records.append(output_dir / OWNER_LOCK)
    logs = list(output_dir.glob("*.log"))
    if not output_dir.is_dir() or set(output_dir.rglob("*")) - {hydra_dir, *records, *logs}:
        return
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in (x for x in loggers if isinstance(x, logging.Logger)):
        for handler in list(logger.handlers):  # the job's log file: it would be made again
            if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename) in logs:
                logger.removeHandler(handler)
                handler.close()
    for path in [*records, *logs]:
        path.unlink(missing_ok=True)
    if hydra_dir.is_dir():
        hydra_dir.rmdir()
    output_dir.rmdir()
    for parent in output_dir.parents:  # logs/<task>/runs, when this run was its only one
        if Path.cwd() not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def main(args: list[str] | None = None, *, then_exit: bool = True) -> int:
    """``attnlab train ARGS`` (or ``python -m attnlab.training.train`` on sys.argv): run the
    Hydra app; configuration mistakes exit 2 with one line. ``then_exit``: the process ends
    after this call, so its exit may skip the garbage collections (see skip_exit_collection)."""
    if args is not None:  # Hydra parses sys.argv, and names the program after its first item
        sys.argv = [f"{os.path.basename(sys.argv[0])} train", *args]
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let config errors reach our reporter
    appended = [arg for arg in sys.argv[1:] if arg.startswith("+sweep=")]
    if appended:  # Hydra's own message ("Multiple values for sweep") does not say what to type
        print(
            f"attnlab: config error: {appended[0]}: sweep is a config group with a default "
            f"now; write {appended[0][1:]}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CONFIG_ERROR)
    with report_config_errors():
        try:
            hydra_main()
        except ValueError as error:  # Hydra's check of its own flags: -m with --cfg, ...
            if not str(error).startswith("Only one of --run"):
                raise
            print(f"attnlab: usage error: {error} (-m is --multirun)", file=sys.stderr)
            raise SystemExit(EXIT_CONFIG_ERROR) from None
        finally:
            if then_exit:
                skip_exit_collection()
    return 0


def skip_exit_collection() -> None:
    """Spare the process's exit the garbage collections over every object the imports made
    (torch, Lightning, MLflow: ~2 s of a short run on 2 cores): ``gc.freeze`` moves them out of
    the collected generations. atexit handlers (logging's flush, MLflow's) still run."""
    import gc

    gc.freeze()


if __name__ == "__main__":
    main()
