"""Reliability guarantees (docs: Reliability): divergence, stale runs, secrets, loading."""

from __future__ import annotations

import math
import os
import pickle
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from mlflow import MlflowClient

from attnlab.cli import main
from attnlab.core.errors import Diverged
from attnlab.tasks.classify import ClassifyTask
from attnlab.training.train import run

DIGITS = [
    "experiment=digits_mlp",
    "debug=limit",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def runs_of(tracking_uri: str, experiment: str = "digits_mlp") -> list:
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=50) if found else []


# -- 4. Divergence -----------------------------------------------------------------------------


def test_a_diverging_lr_stops_the_run_at_that_step_failed(make_cfg, tracking_uri):
    """optim.lr=1e6 is finite (config checks let it through) and makes the loss NaN."""
    with pytest.raises(Diverged) as diverged:
        run(make_cfg(*DIGITS, "optim.lr=1e6", "logger.log_model=false"))
    (record,) = runs_of(tracking_uri)
    assert record.info.status == "FAILED"
    assert not math.isfinite(diverged.value.loss)
    history = MlflowClient(tracking_uri).get_metric_history(record.info.run_id, "train/loss_step")
    assert all(point.step <= diverged.value.step for point in history)  # stopped there
    assert "test/acc" not in record.data.metrics  # never tested


def test_a_loss_made_nan_names_the_step_in_one_line_and_exits_1(monkeypatch, capsys):
    real_step = ClassifyTask.training_step

    def nan_at_batch_2(self, batch, batch_idx):
        loss = real_step(self, batch, batch_idx)
        return loss * math.nan if batch_idx == 2 else loss

    monkeypatch.setattr(ClassifyTask, "training_step", nan_at_batch_2)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *DIGITS, "logger=none"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "attnlab: training diverged: the training loss is nan at step 3; "
        "lower optim.lr or clip gradients (trainer.gradient_clip_val)"
    )
    assert "Traceback" not in "\n".join(err)


def test_a_diverged_trial_fails_and_the_sweep_goes_on(tracking_uri):
    import optuna
    from optuna.trial import TrialState

    # The random sampler, seeded from sampler.seed 1 and the trial count, draws 1e6 first,
    # then 1e-3.
    main(
        [
            "train", "-m", *DIGITS, "hydra/sweeper=optuna", "objective.metric=val/acc",
            "hydra.sweeper.sampler.name=random", "hydra.sweeper.sampler.seed=1",
            "optim.lr=choice(1e6,1e-3)",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=lr", "logger.log_model=false",
        ]
    )  # fmt: skip
    trials = optuna.load_study(study_name="lr", storage="sqlite:///optuna.db").trials
    states = [(t.params["optim.lr"], t.state) for t in trials]
    assert states == [(1e6, TrialState.FAIL), (1e-3, TrialState.COMPLETE)]
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert "training diverged" in failed.user_attrs["error"]
    trial_runs = [r for r in runs_of(tracking_uri) if "optuna.trial_number" in r.data.tags]
    status = {r.data.params["optim.lr"]: r.info.status for r in trial_runs}
    assert status == {"1000000.0": "FAILED", "0.001": "FINISHED"}


# -- 5. Stale RUNNING runs ---------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def open_run(client: MlflowClient, experiment_id: str, pid: int, host: str | None = None, **kw):
    tags = {"host": host or socket.gethostname(), "attnlab.pid": str(pid)}
    return client.create_run(experiment_id, tags=tags, **kw).info.run_id


def test_runs_fix_stale_fails_runs_whose_process_is_gone(tracking_uri, capsys):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("stale")
    dead = open_run(client, experiment_id, dead_pid())
    alive = open_run(client, experiment_id, os.getpid())
    elsewhere = open_run(client, experiment_id, dead_pid(), host="another-host")
    # this process started after the run: the pid was taken over by a newer process
    reused = open_run(client, experiment_id, os.getpid(), start_time=int(time.time() - 3600) * 1000)
    assert main(["runs"]) == 0  # listing only: nothing changes
    assert {client.get_run(r).info.status for r in (dead, alive, elsewhere, reused)} == {"RUNNING"}
    assert main(["runs", "--fix-stale"]) == 0
    status = {r: client.get_run(r).info.status for r in (dead, alive, elsewhere, reused)}
    assert status == {dead: "FAILED", alive: "RUNNING", elsewhere: "RUNNING", reused: "FAILED"}
    assert "no longer exists" in client.get_run(dead).data.tags["attnlab.stale"]
    out = capsys.readouterr().out
    assert "4 RUNNING, 2 marked FAILED" in out and "unknown (host another-host)" in out


def test_a_run_records_its_pid_and_ends_stale_runs_of_its_experiment(make_cfg, tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("digits_mlp")
    stale = open_run(client, experiment_id, dead_pid())
    run(make_cfg(*DIGITS, "debug=fdr"))
    assert client.get_run(stale).info.status == "FAILED"
    (record,) = [r for r in runs_of(tracking_uri) if r.info.run_id != stale]
    assert record.info.status == "FINISHED"
    assert record.data.tags["attnlab.pid"] == str(os.getpid())
    assert record.data.tags["host"] == socket.gethostname()


def _running_with_metrics(db: Path) -> bool:
    """Read MLflow's SQLite file read-only while another process writes it."""
    query = "SELECT COUNT(*) FROM runs r JOIN metrics m ON m.run_uuid = r.run_uuid"
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
            return connection.execute(query + " WHERE r.status = 'RUNNING'").fetchone()[0] > 0
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return False


@pytest.mark.slow
def test_a_sigkilled_run_is_running_until_fix_stale_ends_it_failed(tmp_path, tracking_uri):
    command = [sys.executable, "-m", "attnlab.cli", "train", *DIGITS[:1], "trainer.max_epochs=200"]
    command += ["callbacks.early_stopping=null", "trainer.log_every_n_steps=1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not _running_with_metrics(tmp_path / "mlflow.db"):
        assert time.time() < deadline and process.poll() is None, "the run never trained"
        time.sleep(1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    (killed,) = runs_of(tracking_uri)
    assert killed.info.status == "RUNNING"  # nothing could end it
    assert main(["runs", "--fix-stale", "--experiment", "digits_mlp"]) == 0
    (record,) = runs_of(tracking_uri)
    assert record.info.status == "FAILED"


# -- 6. A tracking store that refuses values ---------------------------------------------------


class FlakyStore:
    """Stands in for a logger's ``log_batch``: refused while ``down`` (raised when synchronous,
    a failed future when not, as MLflow's queue reports it), else the real call."""

    def __init__(self, real):
        self.real, self.down = real, True

    def __call__(self, run_id, metrics=(), synchronous=True, **kwargs):
        if not self.down:
            return self.real(run_id, metrics=metrics, synchronous=synchronous, **kwargs)
        from concurrent.futures import Future

        from mlflow.exceptions import MlflowException
        from mlflow.utils.async_logging.run_operations import RunOperations

        refused = Future()
        refused.set_exception(MlflowException("API request failed: Connection refused"))
        if synchronous:
            raise refused.exception()
        return RunOperations([refused])


def refusing_logger(tracking_uri: str, unlogged: Path, synchronous: bool, monkeypatch):
    from attnlab.tracking.logger import RunLogger
    from attnlab.tracking.store import get_or_create_experiment

    client = MlflowClient(tracking_uri)
    run_id = client.create_run(get_or_create_experiment(client, "e")).info.run_id
    logger = RunLogger(
        tracking_uri=tracking_uri, run_id=run_id, log_model=False, synchronous=synchronous,
        unlogged=str(unlogged),
    )  # fmt: skip
    store = FlakyStore(logger.experiment.log_batch)
    monkeypatch.setattr(logger.experiment, "log_batch", store)
    return logger, store, client


@pytest.mark.parametrize("synchronous", [False, True], ids=["queued", "synchronous"])
def test_values_the_store_refused_are_kept_and_written_once_it_takes_them(
    synchronous, tracking_uri, tmp_path, monkeypatch
):
    unlogged = tmp_path / "unlogged_metrics.jsonl"
    logger, store, client = refusing_logger(tracking_uri, unlogged, synchronous, monkeypatch)
    for step in range(3):
        logger.log_metrics({"val/acc": step / 10, "val/loss": 1 - step / 10}, step)
    logger.flush()
    assert len(unlogged.read_text().splitlines()) == 6  # two values of three steps, kept
    store.down = False
    logger.log_metrics({"val/acc": 0.3, "val/loss": 0.7}, 3)
    logger.finalize("success")
    assert not unlogged.exists()
    history = client.get_metric_history(logger.run_id, "val/acc")
    assert sorted((m.step, m.value) for m in history) == [(s, s / 10) for s in range(4)]
    assert client.get_run(logger.run_id).info.status == "FINISHED"


def test_a_logger_that_does_not_end_the_run_writes_everything_and_leaves_it_open(
    tracking_uri, tmp_path, monkeypatch
):
    """attnlab's runs: Lightning finalizes the logger after fit, test and validate; the run
    stays open (one join of MLflow's logging thread, at mlflow_run's end, not three)."""
    unlogged = tmp_path / "unlogged_metrics.jsonl"
    logger, store, client = refusing_logger(tracking_uri, unlogged, False, monkeypatch)
    logger.ends_run = False
    logger.log_metrics({"val/acc": 0.1}, 0)
    logger.flush()
    assert unlogged.is_file()  # refused once: kept
    store.down = False
    logger.log_metrics({"val/acc": 0.2}, 1)
    for _ in ("fit", "test"):
        logger.finalize("success")
    assert not unlogged.exists()
    history = client.get_metric_history(logger.run_id, "val/acc")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.1), (1, 0.2)]
    assert client.get_run(logger.run_id).info.status == "RUNNING"


def test_a_store_that_still_refuses_at_the_end_stops_the_run_naming_the_file(
    tracking_uri, tmp_path, monkeypatch
):
    from attnlab.core.errors import TrackingUnreachable

    unlogged = tmp_path / "unlogged_metrics.jsonl"
    logger, store, client = refusing_logger(tracking_uri, unlogged, False, monkeypatch)
    for step in range(2):
        logger.log_metrics({"val/acc": 0.5}, step)
    with pytest.raises(TrackingUnreachable) as stopped:
        logger.finalize("success")
    assert str(stopped.value).startswith(
        f"the tracking store {tracking_uri} did not take 2 metric values; they are in {unlogged}"
    )
    assert len(unlogged.read_text().splitlines()) == 2
    monkeypatch.setattr(client, "set_terminated", lambda *a: pytest.fail("the store was asked"))
    monkeypatch.setattr(logger.experiment, "set_terminated", client.set_terminated)
    logger.finalize("failed")  # Lightning's call after the exception: nothing more is sent
    assert client.get_run(logger.run_id).info.status == "RUNNING"


# -- 8. Security -------------------------------------------------------------------------------

SECRET = "s3cret-Pa55"


def logged_text(client: MlflowClient, run_id: str, folder: str | None = None) -> str:
    """Every param, tag and text artifact of a run, as one text."""
    record = client.get_run(run_id)
    texts = [f"{k}={v}" for k, v in {**record.data.params, **record.data.tags}.items()]
    for artifact in client.list_artifacts(run_id, folder):
        if artifact.is_dir:
            texts.append(logged_text(client, run_id, artifact.path))
        elif artifact.path.endswith((".yaml", ".txt", ".json")):
            texts.append(Path(client.download_artifacts(run_id, artifact.path)).read_text())
    return "\n".join(texts)


def test_passwords_in_urls_are_masked_in_params_tags_and_errors(make_cfg, monkeypatch):
    from attnlab.core.errors import ConfigError
    from attnlab.tracking.mlflow_run import config_params, run_tags

    uri = f"postgresql://user:{SECRET}@db-host:5432/mlflow"
    monkeypatch.setattr(sys, "argv", ["attnlab train", f"logger.tracking_uri={uri}"])
    cfg = make_cfg("logger.tracking_uri=" + uri, f"+tags.store='{uri}'")
    params, tags = config_params(cfg), run_tags(cfg)
    assert params["logger.tracking_uri"] == "postgresql://user:***@db-host:5432/mlflow"
    assert (
        tags["command"]
        == "'attnlab train' logger.tracking_uri=postgresql://user:***@db-host:5432/mlflow"
    )
    assert SECRET not in str(params) + str(tags)
    assert SECRET not in str(ConfigError("hydra.sweeper.storage", uri, "a reachable database"))


@pytest.mark.slow
def test_a_run_logs_no_credential_of_its_tracking_uri_or_environment(
    fresh_postgres_database, monkeypatch
):
    """The local PostgreSQL trusts any password, so the URI can carry one and still work."""
    uri = fresh_postgres_database.replace("postgres@", f"postgres:{SECRET}@")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)  # MLflow's own credential variable
    main(["train", *DIGITS, "debug=fdr", f"logger.tracking_uri={uri}"])
    (record,) = runs_of(uri)
    client = MlflowClient(uri)
    text = logged_text(client, record.info.run_id)
    hydra_records = {a.path for a in client.list_artifacts(record.info.run_id, "hydra")}
    assert "hydra/overrides.yaml" in hydra_records  # the override with the URI is checked too
    assert "postgres:***@" in text and SECRET not in text


def test_checkpoints_are_loaded_weights_only(make_cfg, monkeypatch, tmp_path):
    """The variable makes torch.load default to full unpickling: only an explicit
    weights_only=True still refuses the payload."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "payload-ran"
    poison = ["+callbacks.poison._target_=helpers.poisoned_checkpoint.PoisonBest"]
    poison.append(f"+callbacks.poison.marker={marker}")
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        run(make_cfg(*DIGITS, "logger=none", *poison))
    assert not marker.exists()


@pytest.mark.parametrize("extra", [[], ["--server"]], ids=["ui", "server"])
def test_servers_attnlab_starts_bind_to_loopback_unless_told(extra, monkeypatch):
    started = []
    monkeypatch.setattr(os, "execv", lambda path, args: started.append(args))
    main(["ui", *extra])
    main(["ui", *extra, "--host", "0.0.0.0"])
    hosts = [args[args.index("--host") + 1] for args in started]
    assert hosts == ["127.0.0.1", "0.0.0.0"]
