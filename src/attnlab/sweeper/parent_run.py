"""The MLflow side of a sweep: one parent run per study, trial states on the child runs,
best parameters and Optuna's plots as the parent's artifacts.

Runs are handled through MlflowClient, never the fluent API, so the in-process jobs can open
their own (child) runs with ``mlflow.start_run`` while the parent stays open.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import yaml  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Run, RunStatus, RunTag  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from attnlab.tracking.mlflow_run import provenance_tags  # noqa: E402
from attnlab.tracking.store import open_experiment, retry_on_conflict  # noqa: E402

PARENT_TAG = "attnlab.sweep_parent"
PARENT_WAIT_S = 60  # how long a worker waits for the study creator's parent run
PLOTS = {
    "optimization_history": optuna_plots.plot_optimization_history,
    "param_importances": optuna_plots.plot_param_importances,
    "parallel_coordinate": optuna_plots.plot_parallel_coordinate,
}
# Plots that compare trials: below this many complete trials Optuna draws them flat, with a
# warning per parameter (importances "equal", axes of "identical low and high" limits).
COMPARING_PLOTS, COMPARED_TRIALS = ("param_importances", "parallel_coordinate"), 2


def summary(study: optuna.Study) -> dict:
    """Counts per state and the best trial, as written to the sweep's YAML."""
    trials = study.get_trials(deepcopy=False)
    counts = {
        state.name: sum(t.state == state for t in trials) for state in optuna.trial.TrialState
    }
    result = {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "trials": counts,
    }
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        result["best_value"] = study.best_value
        result["best_params"] = study.best_params
        result["best_trial"] = study.best_trial.number
    return result


def _parents(client: MlflowClient, experiment_id: str, study_name: str) -> list[Run]:
    """The parent runs of a study, oldest first (start time, then run id)."""
    runs = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{study_name}'")
    return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))


def _wait_for_parent(client: MlflowClient, experiment_id: str, study_name: str) -> list[Run]:
    """The parent runs of a study that another worker has just created, once its parent run
    shows; [] if none does within PARENT_WAIT_S (that worker died before making one)."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while not (found := _parents(client, experiment_id, study_name)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return found


def _settle(client: MlflowClient, experiment_id: str, study_name: str, own: Run) -> str:
    """The parent run a worker keeps when it had to create one: the oldest of those it sees,
    deleting its own if another is older. Only a fallback: a worker that did not create the
    study waits for its creator's parent run instead, because start times are stamped before
    the database commits, so two workers creating at once could each see only their own."""
    first = _parents(client, experiment_id, study_name)[0]
    if first.info.run_id != own.info.run_id:
        client.delete_run(own.info.run_id)
    return first.info.run_id


class SweepTracker:
    """Parent MLflow run of a study; a no-op when the sweep's config has no MLflow logger."""

    def __init__(
        self,
        client: MlflowClient | None,
        experiment_id: str | None,
        study: optuna.Study,
        created_study: bool = True,
    ):
        """``created_study``: this worker created the study, so no other worker makes its
        parent run; a worker that found a new study (no trials yet) waits for the creator's."""
        self.client, self.study = client, study
        self.parent_run_id = None
        if client is None:
            return
        found = _parents(client, experiment_id, study.study_name)
        if not found and not created_study and not study.get_trials(deepcopy=False):
            found = _wait_for_parent(client, experiment_id, study.study_name)
        if found:  # a resumed study, or another worker's: continue under the first parent
            self.parent_run_id = found[0].info.run_id
            client.update_run(self.parent_run_id, RunStatus.to_string(RunStatus.RUNNING))
        else:
            run = client.create_run(
                experiment_id,
                run_name=f"sweep:{study.study_name}",
                tags={
                    **provenance_tags(),
                    PARENT_TAG: study.study_name,
                    "optuna.study": study.study_name,
                },
            )
            self.parent_run_id = _settle(client, experiment_id, study.study_name, run)

    @classmethod
    def for_config(
        cls, config: DictConfig, study: optuna.Study, created_study: bool = True
    ) -> SweepTracker:
        logger = config.get("logger") or {}
        if not logger.get("_target_"):
            return cls(None, None, study, created_study)
        client, experiment_id = open_experiment(logger.tracking_uri, logger.experiment_name)
        return cls(client, experiment_id, study, created_study)

    def __enter__(self) -> SweepTracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.client is None:
            return
        if exc_type is None and self._other_workers_training():
            return  # the last worker of the study ends the parent
        status = RunStatus.FINISHED if exc_type is None else RunStatus.FAILED
        self.client.set_terminated(self.parent_run_id, RunStatus.to_string(status))

    def _other_workers_training(self) -> bool:
        """Whether trials of the study are still RUNNING once those without a recent heartbeat
        (a killed worker's) are marked FAIL; called when this worker's own trials are done."""
        with warnings.catch_warnings():  # experimental since Optuna 2.9, still the way
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        running = (optuna.trial.TrialState.RUNNING,)
        return bool(self.study.get_trials(deepcopy=False, states=running))

    def trial_done(self, trial: optuna.trial.FrozenTrial) -> None:
        """Tag the trial's child run with the state Optuna recorded."""
        if self.client is None:
            return
        children = self.client.search_runs(
            [self.client.get_run(self.parent_run_id).info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
            f"and tags.`optuna.trial_number` = '{trial.number}'",
            max_results=1,
        )
        for child in children:
            self.client.set_tag(child.info.run_id, "optuna.state", trial.state.name)
        value = trial.value if trial.value is not None else float("nan")
        if math.isfinite(value):
            self.client.log_metric(self.parent_run_id, "trial_value", value, step=trial.number)

    def finish(self, study: optuna.Study, sweep_dir: Path) -> None:
        """Write the best parameters next to the sweep's jobs; log them and the plots."""
        result = summary(study)
        path = sweep_dir / "optimization_results.yaml"
        path.write_text(yaml.safe_dump(result, sort_keys=False))
        print(f"sweep {study.study_name}: {result['trials']} -> {path}")
        if self.client is None:
            return
        self.client.log_artifact(self.parent_run_id, str(path))
        for state, count in result["trials"].items():
            self.client.log_metric(self.parent_run_id, f"trials_{state.lower()}", count)
        if "best_value" in result:
            self.client.log_metric(self.parent_run_id, "best_value", result["best_value"])
            best = [
                RunTag(f"best.{key}", str(value)) for key, value in result["best_params"].items()
            ]
            # workers of one study that finish together set the same new tags at once
            retry_on_conflict(lambda: self.client.log_batch(self.parent_run_id, tags=best))
        complete = result["trials"].get("COMPLETE", 0)
        for name, plot in PLOTS.items():
            if name in COMPARING_PLOTS and complete < COMPARED_TRIALS:
                print(f"sweep plot {name} skipped: {complete} complete trial(s) to compare")
                continue
            try:
                with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    axes = plot(study)
            except (ValueError, RuntimeError) as reason:  # e.g. too few complete trials
                print(f"sweep plot {name} skipped: {reason}")
                continue
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            self.client.log_figure(self.parent_run_id, figure, f"plots/{name}.png")
            plt.close(figure)
