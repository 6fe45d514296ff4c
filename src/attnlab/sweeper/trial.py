"""The job side of a sweep: find the trial named in ``cfg.trial`` and prune it from Lightning."""

from __future__ import annotations

import lightning.pytorch as L
import optuna
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig
from optuna_integration import PyTorchLightningPruningCallback

from attnlab.sweeper.study import PRUNER_ATTR, make_pruner


def load_trial(cfg: DictConfig) -> optuna.Trial:
    """The running trial, reached through the storage (works in any launcher's process).

    A pruner is not stored with a study, so the sweeper saves its spec as a study attribute
    and the job builds the same pruner from it.
    """
    study = optuna.load_study(study_name=cfg.trial.study_name, storage=cfg.trial.storage)
    pruner = make_pruner(study.user_attrs[PRUNER_ATTR])
    study = optuna.load_study(
        study_name=cfg.trial.study_name, storage=cfg.trial.storage, pruner=pruner
    )
    return optuna.Trial(study, cfg.trial.id)


def sampled_values(cfg: DictConfig) -> dict:
    """The values Optuna sampled for the job's trial (its run is named after them)."""
    return optuna.storages.get_storage(cfg.trial.storage).get_trial(cfg.trial.id).params


def pruning_monitor(cfg: DictConfig) -> str:
    """The validation twin of the objective: test/error -> val/error."""
    return "val/" + cfg.objective.metric.split("/", 1)[1]


class FitPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning callback, active while fitting only.

    The run validates the best checkpoint again after fitting; a report then would land on an
    epoch already reported and could prune a trial that has finished.
    """

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_end(trainer, pl_module)


def pruning_callback(cfg: DictConfig) -> FitPruning:
    """Report the objective's validation twin each epoch; raise TrialPruned when told to."""
    return FitPruning(load_trial(cfg), monitor=pruning_monitor(cfg))


def trial_tags(cfg: DictConfig) -> dict[str, str]:
    tags = {"optuna.study": cfg.trial.study_name, "optuna.trial_number": str(cfg.trial.number)}
    if cfg.trial.get("parent_run_id"):
        tags["mlflow.parentRunId"] = cfg.trial.parent_run_id
    return tags
