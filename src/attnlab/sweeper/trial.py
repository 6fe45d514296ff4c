"""The job side of a sweep: the pruning callback that the sweeper adds to each job's callbacks.

The sweeper hands every job ``callbacks.optuna_pruning`` (this module's ``FitPruning.for_trial``
with the study, storage and trial id) and the trial's MLflow tags through overrides; the run
builds them like any other callback and tag.
"""

from __future__ import annotations

import lightning.pytorch as L
import optuna
from lightning.pytorch.trainer.states import TrainerFn
from optuna_integration import PyTorchLightningPruningCallback

from attnlab.sweeper.study import OUTPUT_DIR_ATTR, PRUNER_ATTR, make_pruner, open_storage


def load_trial(study_name: str, storage: str, trial_id: int) -> optuna.Trial:
    """The running trial, reached through the storage (works in any launcher's process).

    A pruner is not stored with a study, so the sweeper saves its spec as a study attribute
    and the job builds the same pruner from it.
    """
    storage = open_storage(storage)
    study = optuna.load_study(study_name=study_name, storage=storage)
    pruner = make_pruner(study.user_attrs[PRUNER_ATTR])
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    return optuna.Trial(study, trial_id)


def pruning_monitor(objective_metric: str) -> str:
    """The validation twin of the objective: test/error -> val/error."""
    return "val/" + objective_metric.split("/", 1)[1]


class FitPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning callback, active while fitting only.

    The run validates the best checkpoint again after fitting; a report then would land on an
    epoch already reported and could prune a trial that has finished.
    """

    @classmethod
    def for_trial(
        cls, study_name: str, storage: str, trial_id: int, objective: str, output_dir: str
    ) -> FitPruning:
        """Report the objective's validation twin each epoch; raise TrialPruned when told to.

        The trial keeps the job's ``output_dir``: run again after its sweep was killed, it
        resumes from the checkpoint there (the sweeper's ``resumable_folder``).
        """
        trial = load_trial(study_name, storage, trial_id)
        trial.set_user_attr(OUTPUT_DIR_ATTR, output_dir)
        return cls(trial, pruning_monitor(objective))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_validation_end(trainer, pl_module)
