"""The Optuna sweeper: studies, pruning, failures, resume, MLflow parents, bad input."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from mlflow import MlflowClient
from mlflow.entities import ViewType
from optuna.exceptions import StorageInternalError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from sqlalchemy.exc import OperationalError

from attnlab.cli import main
from attnlab.sweeper.search_space import search_space
from attnlab.sweeper.study import OUTPUT_DIR_ATTR, ReconnectingStorage, open_storage
from attnlab.training.resume import resume_point
from hydra_plugins.attnlab_sweeper.optuna_sweeper import OptunaSweeper

FAST = ["debug=limit", "logger.log_model=false", "callbacks.attention_maps=null"]


def load(storage: str = "sqlite:///optuna.db", name: str = "transformer_dates") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def sweep_command(tiny, *extra: str) -> list[str]:
    return ["train", "-m", "sweep=transformer", *tiny, *FAST, *extra]


def test_sweep_records_trials_pruning_and_mlflow_children(tiny, tracking_uri, tmp_path):
    main(
        sweep_command(
            tiny,
            "hydra.sweeper.n_trials=5",
            "objective.metric=val/loss",
            "objective.direction=minimize",
            "trainer.max_epochs=3",
            "hydra.sweeper.pruner.median.n_startup_trials=1",
            "hydra.sweeper.pruner.median.n_warmup_steps=0",
        )
    )
    trials = load().trials
    assert len(trials) == 5
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert all(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states)
    pruned = next(t for t in trials if t.state == TrialState.PRUNED)
    assert len(pruned.intermediate_values) < 3  # stopped before the last epoch

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], max_results=20)
    (parent,) = [r for r in runs if "attnlab.sweep_parent" in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 5
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    for trial in trials:
        child = by_number[trial.number]
        assert child.data.tags["optuna.state"] == trial.state.name
        assert child.info.status == ("KILLED" if trial.state == TrialState.PRUNED else "FINISHED")
        for key, value in trial.params.items():  # the job trained with the sampled values
            assert child.data.params[key] == str(value)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["trials_pruned"] == states.count(TrialState.PRUNED)
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    (results,) = tmp_path.glob("logs/date_transformer/multiruns/*/optimization_results.yaml")
    assert "best_params" in results.read_text()


def test_the_job_lines_show_the_users_overrides_not_the_sweepers(tiny, tmp_path, capsys):
    """Hydra's launcher logs each job's overrides; the pruning callback and tags the sweeper
    adds stay out of that line, and in each job's hydra/overrides.yaml."""
    main(sweep_command(tiny, "hydra.sweeper.n_trials=2", "trainer.max_epochs=1"))
    captured = capsys.readouterr()
    jobs = [
        line for line in (captured.out + captured.err).splitlines() if re.search(r"#\d : ", line)
    ]
    assert len(jobs) == 2, captured
    for line in jobs:
        assert "model.width=32" in line and "trainer.max_epochs=1" in line
        assert "optuna_pruning" not in line and "++tags" not in line
    recorded = sorted(tmp_path.glob("logs/date_transformer/multiruns/*/*/.hydra/overrides.yaml"))
    assert len(recorded) == 2
    for path in recorded:
        overrides = yaml.safe_load(path.read_text())
        assert any(o.startswith("++callbacks.optuna_pruning=") for o in overrides)
        assert any(o.startswith("++tags=") for o in overrides)


def test_a_one_trial_sweep_draws_no_plot_that_compares_trials_and_warns_nothing(
    tiny, tracking_uri, capsys
):
    """Importances and parallel coordinates of one trial say nothing; Optuna would draw them
    flat with a warning per parameter."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(sweep_command(tiny, "hydra.sweeper.n_trials=1"))
    from_optuna = [w for w in caught if "optuna" in w.filename and w.category is UserWarning]
    assert not from_optuna, [str(w.message) for w in from_optuna]
    assert "sweep plot param_importances skipped: 1 complete trial(s) to compare" in (
        capsys.readouterr().out
    )
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`attnlab.sweep_parent` != ''")
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/optimization_history.png"}


def test_failed_jobs_are_recorded_and_the_sweep_goes_on(tiny):
    # heads=3 does not divide d_model=32: those trials fail with the config error
    main(sweep_command(tiny, "hydra.sweeper.n_trials=4", "model.heads=choice(3,4)"))
    trials = load().trials
    assert len(trials) == 4
    assert {t.state for t in trials if t.params["model.heads"] == 3} == {TrialState.FAIL}
    assert {t.state for t in trials if t.params["model.heads"] == 4} == {TrialState.COMPLETE}
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert "a divisor of model.width=32" in failed.user_attrs["error"]


def test_rerunning_the_command_resumes_the_study(tiny):
    main(sweep_command(tiny, "hydra.sweeper.n_trials=1"))
    first = [t.params for t in load().trials]
    main(sweep_command(tiny, "hydra.sweeper.n_trials=2"))
    trials = load().trials
    assert [t.number for t in trials] == [0, 1]
    assert [t.params for t in trials[:1]] == first  # nothing repeated, nothing lost
    assert trials[1].params != first[0]


def test_a_grid_sweep_runs_each_point_once_and_a_rerun_adds_nothing(tiny, capsys):
    """Optuna's GridSampler stops its study after the last point, which raises outside
    study.optimize: the sweep crashed there. n_trials exceeds the grid's two points."""
    grid = ["hydra/sweeper=optuna", "hydra.sweeper.sampler.name=grid", "model.dropout=0.0,0.1"]
    grid += ["objective.metric=val/exact_match"]
    command = ["train", "-m", *grid, "hydra.sweeper.n_trials=5", *tiny, *FAST]
    main(command)
    study = load(name="date_transformer")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert sorted(t.params["model.dropout"] for t in study.trials) == [0.0, 0.1]
    (summary,) = Path.cwd().glob("logs/date_transformer/multiruns/*/optimization_results.yaml")
    assert "COMPLETE: 2" in summary.read_text()
    capsys.readouterr()
    main(command)
    assert len(load(name="date_transformer").trials) == 2
    assert "every point of the grid has a trial; nothing to run" in capsys.readouterr().out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None])
def test_a_non_finite_objective_is_a_failed_trial(value, tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    trial = study.ask()
    job = JobReturn(status=JobStatus.COMPLETED, _return_value=value)
    assert OptunaSweeper._tell(study, trial, job) is None
    frozen = study.trials[0]
    assert frozen.state == TrialState.FAIL
    assert "not a finite number" in frozen.user_attrs["error"]


def test_repeats_of_a_sweep_with_consecutive_sampler_seeds_draw_other_points(tmp_path):
    """Repeats (and workers) take sampler seeds 0, 1, 2: each must draw its own points, not
    those of the previous seed one trial later (the sampler was seeded with seed + count)."""
    from types import SimpleNamespace

    space = {
        "model.norm": optuna.distributions.CategoricalDistribution(["batch", "layer", "group"]),
        "optim.lr": optuna.distributions.FloatDistribution(1e-3, 0.3, log=True),
    }
    drawn = []
    for seed in (0, 1):
        sweeper = SimpleNamespace(sampler_spec={"name": "tpe", "seed": seed})
        study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s{seed}.db")
        for _ in range(6):
            trial = OptunaSweeper._ask(sweeper, study, space)
            study.tell(trial, 0.5)
        drawn.append([t.params["optim.lr"] for t in study.trials])
    assert len(set(drawn[0])) == 6  # a sweep's own trials differ
    assert not set(drawn[0]) & set(drawn[1])


def test_search_space_syntax():
    fixed, space = search_space(
        {"optim.lr": "tag(log, interval(1e-4, 1e-2))", "model.layers": "int(interval(1, 4))"},
        ["data.batch_size=range(16, 65, step=16)", "model.norm=batch,layer", "seed=3"],
    )
    assert fixed == ["seed=3"]
    assert space["optim.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["model.layers"] == optuna.distributions.IntDistribution(1, 4)
    assert space["data.batch_size"] == optuna.distributions.IntDistribution(16, 64, step=16)
    assert space["model.norm"].choices == ("batch", "layer")


BAD_SWEEPS = {
    "unknown sampler": (["hydra.sweeper.sampler.name=annealing"], "hydra.sweeper.sampler.name"),
    "unknown pruner": (["hydra.sweeper.pruner.name=patient"], "hydra.sweeper.pruner.name"),
    "range low > high": (["model.dropout=interval(0.5,0.1)"], "low <= high"),
    "empty categorical": (["model.positional=choice()"], "model.positional"),
    "zero trials": (["hydra.sweeper.n_trials=0"], "hydra.sweeper.n_trials=0"),
    "negative retries": (["hydra.sweeper.retry_killed=-1"], "hydra.sweeper.retry_killed=-1"),
    "a searched key that does not exist": (["model.colour=choice(red,blue)"], "model.colour"),
    "a test objective": (["objective.metric=test/exact_match"], "a val/ metric"),
    "unreachable storage": (
        ["hydra.sweeper.storage='postgresql://postgres@127.0.0.1:1/none'"],
        "hydra.sweeper.storage",
    ),
}


@pytest.mark.parametrize("extra, expected", BAD_SWEEPS.values(), ids=BAD_SWEEPS.keys())
def test_bad_sweep_input_stops_before_any_trial(extra, expected, tiny, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(sweep_command(tiny, *extra))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attnlab: config error:"), err
    assert expected in err[0]
    assert not list(tmp_path.glob("logs/*/multiruns/*/0"))  # no job directory was made


def _trial_checkpointed_while_running(path: str, number: int) -> bool:
    """Whether trial ``number`` is RUNNING and its folder holds a checkpoint to resume from.

    Read Optuna's SQLite file read-only: `optuna.load_study` would run the schema migration
    itself and race the sweep that is still creating the tables (seen in CI). A reported epoch
    is not enough: the pruning callback reports at validation end and ``last.ckpt`` is written
    at the epoch's end after it, and a kill between the two left nothing to resume (CI at
    ccd8d6a: the retried trial trained in a new folder).
    """
    if not Path(path).exists():
        return False
    query = (
        "SELECT t.state, a.value_json FROM trials t JOIN trial_user_attributes a"
        " ON a.trial_id = t.trial_id AND a.key = ? WHERE t.number = ?"
    )
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute(query, (OUTPUT_DIR_ATTR, number)).fetchone()
    except sqlite3.OperationalError:  # tables not created yet, or the writer holds a lock
        return False
    return row is not None and row[0] == "RUNNING" and resume_point(json.loads(row[1])) is not None


def _sweep_process(tiny, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "attnlab.cli", *sweep_command(tiny, *extra)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_runs_the_killed_trial_again_from_its_checkpoint(
    tiny, tracking_uri
):
    args = [
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.heartbeat_interval=1",
        "hydra.sweeper.grace_period=2",
        "trainer.max_epochs=30",
        "trainer.limit_train_batches=8",
        "callbacks.early_stopping=null",
    ]
    process = _sweep_process(tiny, *args)
    deadline = time.time() + 240
    while time.time() < deadline:  # kill while trial 1 is training, after an epoch's checkpoint
        time.sleep(1)
        if _trial_checkpointed_while_running("optuna.db", number=1):
            break
    else:
        pytest.fail("the sweep never reached trial 1")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    time.sleep(3)  # past the grace period: the killed trial's heartbeat is stale
    main(sweep_command(tiny, *args))  # the same command again
    trials = load().trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    # the killed trial ran again with its parameters (hydra.sweeper.retry_killed=1) ...
    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[2]) == 1
    assert trials[2].params == trials[1].params
    # ... in its folder, from its checkpoint: the epochs it had finished are not run again
    assert trials[2].user_attrs[OUTPUT_DIR_ATTR] == trials[1].user_attrs[OUTPUT_DIR_ATTR]
    assert min(trials[2].intermediate_values) > 0
    assert max(trials[2].intermediate_values) == 29
    # ... and into its MLflow run, which the next run of the experiment had ended FAILED
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], max_results=20)
    status = {
        r.data.tags["optuna.trial_number"]: r.info.status
        for r in runs
        if "optuna.trial_number" in r.data.tags
    }
    assert status == {"0": "FINISHED", "2": "FINISHED"}
    (resumed,) = [r for r in runs if r.data.tags.get("optuna.trial_number") == "2"]
    assert resumed.data.params["trial.number"] == "1"  # the run the killed trial started


@pytest.mark.slow
def test_joblib_launcher_prunes_jobs_in_other_processes(tiny):
    main(
        sweep_command(
            tiny,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "hydra.sweeper.n_jobs=2",
            "hydra.sweeper.n_trials=4",
            "objective.metric=val/loss",
            "objective.direction=minimize",
            "trainer.max_epochs=4",
            "hydra.sweeper.pruner.median.n_startup_trials=2",
            "hydra.sweeper.pruner.median.n_warmup_steps=0",
        )
    )
    trials = load().trials
    assert len(trials) == 4
    assert all(len(t.intermediate_values) >= 1 for t in trials)  # reported from the workers
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


@pytest.mark.slow
def test_two_sweep_processes_share_one_postgresql_study(
    tiny, fresh_postgres_database, tracking_uri
):
    """Both start at once on an empty database and an empty MLflow store: they race to create
    Optuna's tables, the MLflow store's schema, its experiment and the sweep's parent run."""
    storage = fresh_postgres_database
    args = [f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.n_trials=6"]
    workers = [_sweep_process(tiny, *args, f"hydra.sweeper.sampler.seed={i}") for i in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    study = load(storage)
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert math.isfinite(study.best_value)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], max_results=20)
    (parent,) = [r for r in runs if "attnlab.sweep_parent" in r.data.tags]  # one, not one each
    trials = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert len(trials) == 6  # both workers' trials under the one parent
    assert {run.data.tags["mlflow.parentRunId"] for run in trials} == {parent.info.run_id}


def _end_connections(database_url: str) -> int:
    """End every connection to ``database_url``'s database, as a restart of the server would
    (``pg_terminate_backend``); return how many were ended."""
    import psycopg

    server, name = database_url.rsplit("/", 1)
    query = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()"
    )
    with closing(psycopg.connect(f"{server}/postgres", autocommit=True)) as admin:
        return sum(ended for (ended,) in admin.execute(query, (name,)).fetchall())


def _end_connections_until(database_url: str, stop: threading.Event, every: float) -> int:
    """End every connection to the database each ``every`` seconds; return how many."""
    ended = 0
    while not stop.wait(every):
        ended += _end_connections(database_url)
    return ended


def test_a_storage_call_whose_connection_was_ended_is_made_again(fresh_postgres_database):
    storage = open_storage(fresh_postgres_database)
    study = optuna.create_study(study_name="s", storage=storage)
    assert isinstance(storage, ReconnectingStorage)
    assert _end_connections(fresh_postgres_database) > 0
    study.enqueue_trial({})  # on a connection the server ended
    assert len(study.get_trials()) == 1


def test_a_trial_read_whose_connection_ends_inside_optunas_fallback_is_made_again(
    fresh_postgres_database,
):
    """Optuna's ``_get_trials`` takes any OperationalError for "too many variables" and queries
    again on the same session, which then fails with PendingRollbackError: the lost
    connection is that error's context, not its cause. It crashed a sweep in CI (stop 29)."""
    import psycopg
    from sqlalchemy import event

    storage = open_storage(fresh_postgres_database)
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({})
    server = fresh_postgres_database.rsplit("/", 1)[0]
    ended = []

    def end_this_connection(conn, cursor, statement, parameters, context, executemany):
        if not ended and "ORDER BY trials.trial_id" in statement:
            with closing(psycopg.connect(f"{server}/postgres", autocommit=True)) as admin:
                pid = cursor.connection.info.backend_pid
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            ended.append(pid)

    event.listen(storage.engine, "before_cursor_execute", end_this_connection)
    trials = storage._get_trials(study._study_id, None, set(), -1)
    assert ended  # the trial query's connection was in fact ended under it
    assert [trial.number for trial in trials] == [0]


def test_a_trial_end_committed_just_before_its_connection_dropped_is_taken_as_done(
    tmp_path, monkeypatch
):
    storage = ReconnectingStorage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    end = optuna.storages.RDBStorage.set_trial_state_values

    def commit_then_drop(self, *args, **kwargs):
        end(self, *args, **kwargs)
        monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", end)
        raise StorageInternalError("commit") from OperationalError("SELECT", {}, Exception())

    monkeypatch.setattr(optuna.storages.RDBStorage, "set_trial_state_values", commit_then_drop)
    monkeypatch.setattr("attnlab.sweeper.study.RECONNECT_WAITS", (0.01,))
    study.tell(trial, 1.0)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]


@pytest.mark.slow
def test_a_sweep_whose_database_connections_are_dropped_finishes_every_trial_once(
    tiny, fresh_postgres_database, tracking_uri
):
    """Two workers on one PostgreSQL study while every connection to its database is ended
    each 1.5 s, during trials and between them: each worker reconnects, and the study ends
    with its n_trials, each COMPLETE once."""
    storage = fresh_postgres_database
    args = [f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.n_trials=6"]
    workers = [_sweep_process(tiny, *args, f"hydra.sweeper.sampler.seed={i}") for i in (0, 1)]
    stop, ended = threading.Event(), []
    dropper = threading.Thread(
        target=lambda: ended.append(_end_connections_until(storage, stop, every=1.5))
    )
    dropper.start()
    try:
        for worker in workers:
            _, err = worker.communicate(timeout=600)
            assert worker.returncode == 0, err[-3000:]
    finally:
        stop.set()
        dropper.join()
    assert ended[0] > 0  # connections were in fact ended
    study = load(storage)
    outcomes = {t.number: (t.state.name, t.user_attrs.get("error")) for t in study.trials}
    assert sorted(outcomes) == list(range(6)), outcomes
    assert all(state == "COMPLETE" for state, _ in outcomes.values()), outcomes
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], max_results=20)
    numbers = sorted(
        int(r.data.tags["optuna.trial_number"])
        for r in runs
        if "optuna.trial_number" in r.data.tags
    )
    assert numbers == list(range(6))  # one MLflow run a trial


def _open_sweep_side(barrier, tracking_uri: str, storage_url: str, parent_ids) -> None:
    """One sweep worker's start, from the study to its MLflow parent run, begun at the barrier."""
    from omegaconf import OmegaConf

    from attnlab.sweeper.parent_run import SweepTracker
    from attnlab.sweeper.study import make_storage

    logger = {"_target_": "MLFlowLogger", "tracking_uri": tracking_uri, "experiment_name": "e"}
    barrier.wait()
    storage = make_storage(storage_url, heartbeat_interval=10, grace_period=30)
    try:
        study, created = optuna.create_study(study_name="s", storage=storage), True
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.load_study(study_name="s", storage=storage), False
    tracker = SweepTracker.for_config(OmegaConf.create({"logger": logger}), study, created)
    parent_ids.put(tracker.parent_run_id)


def test_workers_starting_at_one_instant_on_empty_stores_share_one_experiment_and_parent(
    tmp_path, tracking_uri
):
    """Four workers leave a barrier together onto an empty MLflow store and an empty Optuna
    database: they race to create the store's schema, the experiment, the study and the parent
    run, and every one of them must come out with the same experiment and parent run."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # no re-import: the workers start at once
    barrier, parent_ids = context.Barrier(4), context.Queue()
    storage = f"sqlite:///{tmp_path}/optuna.db"
    workers = [
        context.Process(target=_open_sweep_side, args=(barrier, tracking_uri, storage, parent_ids))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * 4
    found = {parent_ids.get(timeout=5) for _ in workers}
    client = MlflowClient(tracking_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "e"]
    (parent,) = client.search_runs([experiment.experiment_id])  # one run: the shared parent
    assert found == {parent.info.run_id}


def test_a_worker_that_loses_the_race_to_tag_the_parent_run_tags_it_again(tracking_uri, tmp_path):
    """Workers that finish one study together set the same new tags of its parent run at once,
    and the second insert fails (seen in the slow suite: UNIQUE constraint failed: tags.key,
    tags.run_uuid). Here the other worker's insert wins the first time this one writes."""
    from mlflow.exceptions import MlflowException

    from attnlab.sweeper.parent_run import SweepTracker

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    space = {"lr": optuna.distributions.FloatDistribution(0, 1)}
    for value in (0.3, 0.1):
        study.tell(study.ask(space), value)
    client = MlflowClient(tracking_uri)
    tracker = SweepTracker(client, client.create_experiment("sweeps"), study)
    lost = []

    def losing_once(write):
        def first_loses(run_id, *args, **kwargs):
            if not lost:
                lost.append(run_id)
                raise MlflowException("UNIQUE constraint failed: tags.key, tags.run_uuid")
            return write(run_id, *args, **kwargs)

        return first_loses

    client.set_tag, client.log_batch = losing_once(client.set_tag), losing_once(client.log_batch)
    tracker.finish(study, tmp_path)
    assert lost == [tracker.parent_run_id]
    tags = client.get_run(tracker.parent_run_id).data.tags
    assert tags["best.lr"] == str(study.best_params["lr"])


def test_a_lost_get_or_create_reads_back_the_experiment_the_other_creator_made(tracking_uri):
    """The lookup finds nothing, another process creates the experiment, the create fails."""
    from attnlab.tracking.store import get_or_create_experiment

    client = MlflowClient(tracking_uri)
    made_by_the_other = client.create_experiment("e")
    lookups = iter([None])
    real_lookup = client.get_experiment_by_name
    client.get_experiment_by_name = lambda name: next(lookups, None) or real_lookup(name)
    assert get_or_create_experiment(client, "e") == made_by_the_other


def test_workers_that_each_created_a_parent_run_all_keep_the_oldest(tracking_uri):
    """Two workers of one study passed the "no parent yet" search together: both settle."""
    from attnlab.sweeper.parent_run import PARENT_TAG, _settle

    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("sweeps")
    tags = {PARENT_TAG: "study"}
    first = client.create_run(experiment_id, start_time=1000, tags=tags)
    second = client.create_run(experiment_id, start_time=1001, tags=tags)
    assert _settle(client, experiment_id, "study", second) == first.info.run_id
    assert client.get_run(second.info.run_id).info.lifecycle_stage == "deleted"
    assert _settle(client, experiment_id, "study", first) == first.info.run_id
    assert client.get_run(first.info.run_id).info.lifecycle_stage == "active"


def test_a_worker_that_joins_a_new_study_keeps_its_creators_parent_run(tracking_uri, tmp_path):
    """Start times are stamped before the database commits: a joining worker that created a
    parent run of its own could see only its own while the creator saw both, and both would
    keep theirs. The joining worker waits for the creator's run instead."""
    from attnlab.sweeper.parent_run import SweepTracker

    study = optuna.create_study(study_name="study", storage=f"sqlite:///{tmp_path}/study.db")
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("sweeps")
    created = []
    creator = threading.Timer(
        1.0, lambda: created.append(SweepTracker(client, experiment_id, study))
    )
    start = time.time()
    creator.start()  # the worker that created the study opens its parent run a moment later
    joiner = SweepTracker(client, experiment_id, study, created_study=False)
    creator.join()
    assert joiner.parent_run_id == created[0].parent_run_id
    (run,) = client.search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert run.info.start_time / 1000 >= start + 0.9  # the creator's: the joiner made none


def test_the_last_worker_of_a_study_ends_its_parent_run(tracking_uri, tmp_path):
    from attnlab.sweeper.parent_run import SweepTracker

    study = optuna.create_study(study_name="study", storage=f"sqlite:///{tmp_path}/study.db")
    other = study.ask()  # another worker's trial, still training
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("sweeps")
    with SweepTracker(client, experiment_id, study) as first:
        pass  # this worker's trials are done
    assert client.get_run(first.parent_run_id).info.status == "RUNNING"
    study.tell(other, 1.0)
    with SweepTracker(client, experiment_id, study) as last:
        pass
    assert last.parent_run_id == first.parent_run_id
    assert client.get_run(first.parent_run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_four_sweep_workers_share_one_sqlite_study(tiny, tracking_uri):
    """SQLite serialises writers; four workers that ask, heartbeat and tell at once must not
    lose a trial to "database is locked"; the MLflow store is created by the workers too."""
    args = ["hydra.sweeper.n_trials=8", "hydra.sweeper.heartbeat_interval=1"]
    args += ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    workers = [_sweep_process(tiny, *args, f"hydra.sweeper.sampler.seed={i}") for i in range(4)]
    errors = []
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
        errors.append(err)
    assert "database is locked" not in "".join(errors)
    study = load()
    assert sorted(t.number for t in study.trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in study.trials), study.trials
    client = MlflowClient(tracking_uri)  # the same for the one SQLite MLflow store
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], max_results=20)
    trials = [r for r in runs if "optuna.trial_number" in r.data.tags]
    assert len(trials) == 8 and all(r.info.status == "FINISHED" for r in trials)
    assert all("test/exact_match" in r.data.metrics for r in trials)
