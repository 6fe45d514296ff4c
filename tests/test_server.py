"""`attnlab ui --server`: a team tracking server on PostgreSQL that serves the artifacts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from helpers.servers import free_port, serving

from attnlab.cli import main


def closed_port() -> socket.socket:
    """A loopback port that is bound but not listening: connecting is refused at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.mark.parametrize(
    "uri, reason",
    [
        ("postgresql+psycopg://bob:secret@127.0.0.1:{port}/runs", "Connection refused"),
        ("http://127.0.0.1:{port}", "is a tracking server: browse to it"),
    ],
    ids=["refused", "http"],
)
def test_a_bad_backend_store_is_one_line(uri, reason, capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("mlflow was started"))
    with closed_port() as sock:
        uri = uri.format(port=sock.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(SystemExit) as stop:
            main(["ui", "--server", "--backend-store-uri", uri])
    assert stop.value.code == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    shown = uri.replace(":secret@", ":***@")  # the password is not printed
    assert err[0].startswith(f"attnlab: config error: --backend-store-uri='{shown}' is not")
    assert "postgresql+psycopg://USER@HOST:PORT/DB" in err[0] and reason in err[0]


def rest(base: str, endpoint: str, body: dict | None = None, **query) -> dict:
    url = f"{base}/api/2.0/{endpoint}?{urllib.parse.urlencode(query)}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def artifact_files(base: str, run_id: str, path: str = "") -> list[dict]:
    """Every file under ``path`` of the run's artifacts, listed folder by folder over REST."""
    files = []
    for entry in rest(base, "mlflow/artifacts/list", run_id=run_id, path=path).get("files", []):
        if entry["is_dir"]:
            files += artifact_files(base, run_id, entry["path"])
        else:
            files.append(entry)
    return files


@pytest.fixture
def server(fresh_postgres_database, tmp_path):
    """`attnlab ui --server` on a fresh database and a free port: (url, artifacts, database)."""
    backend = fresh_postgres_database.replace("postgresql://", "postgresql+psycopg://", 1)
    artifacts = tmp_path / "artifacts"
    port = free_port()
    command = [
        sys.executable, "-m", "attnlab.cli", "ui", "--server", "--no-browser",
        "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
        "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/health", tmp_path / "server.log"):
        yield url, artifacts, fresh_postgres_database


@pytest.mark.slow
def test_a_run_is_logged_over_http_to_the_team_server(server, tiny, tmp_path):
    url, artifacts, database = server
    command = [
        sys.executable, "-m", "attnlab.cli", "train", *tiny, "debug=limit",
        "trainer.max_epochs=1", "callbacks.attention_maps=null",
        f"logger.tracking_uri={url}", "+tags.purpose=server-test",
    ]  # fmt: skip
    train = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]

    # Read back through the REST API only.
    experiment = rest(url, "mlflow/experiments/get-by-name", experiment_name="date_transformer")
    experiment_id = experiment["experiment"]["experiment_id"]
    found = rest(url, "mlflow/runs/search", {"experiment_ids": [experiment_id], "max_results": 10})
    (record,) = found["runs"]
    info, data = record["info"], record["data"]
    assert info["status"] == "FINISHED"
    metrics = {m["key"]: m["value"] for m in data["metrics"]}
    params = {p["key"]: p["value"] for p in data["params"]}
    tags = {t["key"]: t["value"] for t in data["tags"]}
    assert 0.0 <= metrics["test/exact_match"] <= 1.0
    assert params["model.width"] == "32" and params["trainer.max_epochs"] == "1"
    assert tags["purpose"] == "server-test"

    # Artifacts went through the server's proxy into the folder it was given.
    run_id = info["run_id"]
    assert info["artifact_uri"] == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    run_folder = artifacts / experiment_id / run_id / "artifacts"
    listed = {f["path"]: int(f["file_size"]) for f in artifact_files(url, run_id)}
    assert "config.yaml" in listed
    assert "width: 32" in (run_folder / "config.yaml").read_text()
    checkpoints = [path for path in listed if path.endswith(".ckpt")]
    assert checkpoints, listed  # Lightning's log_model uploads the best and last checkpoints
    for path, size in listed.items():
        assert (run_folder / path).stat().st_size == size, path
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlflow.db").exists()

    # The backend store is the PostgreSQL database, not a file next to the server.
    import psycopg

    with psycopg.connect(database, connect_timeout=5) as connection:
        status = connection.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert status.fetchone() == ("FINISHED",)
        value = connection.execute(
            "SELECT value FROM params WHERE run_uuid = %s AND key = 'model.width'", (run_id,)
        )
        assert value.fetchone() == ("32",)


def local_server(tmp_path) -> tuple[str, list[str]]:
    """The URL and command line of an ``attnlab ui --server`` on a free loopback port, its
    store and artifacts in ``tmp_path``: stopped and started again, it serves the same runs."""
    port = free_port()
    command = [
        sys.executable, "-m", "attnlab.cli", "ui", "--server", "--no-browser",
        "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    return f"http://127.0.0.1:{port}", command


def train_until_first_epoch(command: list[str], cwd, env: dict, url: str) -> subprocess.Popen:
    """Start ``command`` (an attnlab train logging to ``url``); return once its run exists and
    has logged its first epoch."""
    train = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while not logged_epochs(url):
        assert train.poll() is None, train.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no epoch logged in 300 s"
        time.sleep(0.5)
    return train


@pytest.mark.slow
def test_a_run_survives_a_restart_of_its_tracking_server(tmp_path):
    """The server goes away in the middle of a run and comes back 10 s later on the same store:
    the run's logging calls wait (MLflow's client retries with backoff) and the run ends
    FINISHED with one value per epoch, none lost, none twice."""
    url, command = local_server(tmp_path)
    epochs = 30
    train_command = [
        sys.executable, "-m", "attnlab.cli", "train", "experiment=digits_mlp",
        f"trainer.max_epochs={epochs}", "callbacks.early_stopping=null",
        "callbacks.progress_bar=null", f"logger.tracking_uri={url}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    with serving(command, f"{url}/health", tmp_path / "server-1.log"):
        train = train_until_first_epoch(train_command, tmp_path, env, url)
    time.sleep(10)  # the server is down; training goes on and its logging waits
    assert train.poll() is None, "the run ended while its server was down"
    with serving(command, f"{url}/health", tmp_path / "server-2.log"):
        out, err = train.communicate(timeout=600)
        assert train.returncode == 0, err[-3000:]
        (run,) = rest(url, "mlflow/runs/search", {"experiment_ids": ["1"]})["runs"]
        assert run["info"]["status"] == "FINISHED"
        history = rest(url, "mlflow/metrics/get-history", run_id=run["info"]["run_id"],
                       metric_key="val/acc")["metrics"]  # fmt: skip
        assert sorted(m["step"] for m in history) == sorted({m["step"] for m in history})
        assert len(history) == epochs


@pytest.mark.slow
def test_a_run_whose_tracking_server_never_comes_back_keeps_its_metrics_for_a_resume(tmp_path):
    """The server goes away after the first epoch and is not back when training ends: the run
    ends in one line naming the file that holds the values the server did not take, its last
    checkpoint loadable; the same command with resume=auto once the server is back writes them
    and ends the run FINISHED with one value per epoch."""
    import torch

    url, command = local_server(tmp_path)
    # Batches of 8: ~0.5 s an epoch, so the run trains on for seconds once its server is down
    # (at batch 64 the digits MLP's epochs took ~0.15 s, and a run under load could end first).
    epochs = 20
    train_command = [
        sys.executable, "-m", "attnlab.cli", "train", "experiment=digits_mlp",
        f"trainer.max_epochs={epochs}", "callbacks.early_stopping=null",
        "callbacks.progress_bar=null", f"logger.tracking_uri={url}", "data.batch_size=8",
        "hydra.run.dir=run", "resume=auto",
    ]  # fmt: skip
    env = {
        **os.environ, "OMP_NUM_THREADS": "1",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }  # fmt: skip
    with serving(command, f"{url}/health", tmp_path / "server-1.log"):
        train = train_until_first_epoch(train_command, tmp_path, env, url)
    assert train.poll() is None, "the run ended before its server went down: train it longer"
    out, err = train.communicate(timeout=600)
    assert train.returncode == 1, err[-3000:]
    unlogged = tmp_path / "run" / "unlogged_metrics.jsonl"
    assert err.strip().splitlines()[-1] == (
        f"attnlab: the tracking store {url} did not take "
        f"{len(unlogged.read_text().splitlines())} metric values; they are in {unlogged}: run "
        "the same command with resume=auto once the store answers, and they are written to "
        "the run"
    )
    kept = [json.loads(line) for line in unlogged.read_text().splitlines()]
    assert {row["step"] for row in kept if row["key"] == "val/acc"}, kept[:5]
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == epochs - 1

    with serving(command, f"{url}/health", tmp_path / "server-2.log"):
        resumed = subprocess.run(
            train_command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert not unlogged.exists()
        (run,) = rest(url, "mlflow/runs/search", {"experiment_ids": ["1"]})["runs"]
        assert run["info"]["status"] == "FINISHED"
        history = rest(url, "mlflow/metrics/get-history", run_id=run["info"]["run_id"],
                       metric_key="val/acc")["metrics"]  # fmt: skip
        assert sorted(m["step"] for m in history) == sorted({m["step"] for m in history})
        assert len(history) == epochs


def logged_epochs(url: str) -> int:
    """How many validation values the server's only run holds so far (0 before it exists)."""
    try:
        found = rest(url, "mlflow/runs/search", {"experiment_ids": ["1"]}).get("runs", [])
    except OSError:
        return 0
    metrics = found[0]["data"].get("metrics", []) if found else []
    return int(any(m["key"] == "val/acc" for m in metrics))


@pytest.mark.slow
def test_a_server_with_auth_lets_in_only_its_users(tmp_path, tiny):
    """``attnlab ui --server --auth``: MLflow's basic-auth app. A request without credentials is
    refused (401); a run without them stops before training in one line; a run as a user of
    the server is logged."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "attnlab.cli", "ui", "--server", "--auth", "--no-browser",
        "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    server_env = {
        **os.environ,
        "MLFLOW_AUTH_ADMIN_PASSWORD": "team-secret-1",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-key-the-workers-share",
    }
    with serving(command, f"{url}/health", tmp_path / "server.log", cwd=tmp_path, env=server_env):
        with pytest.raises(urllib.error.HTTPError) as refused:
            rest(url, "mlflow/experiments/search", max_results=1)
        assert refused.value.code == 401

        train = [
            sys.executable, "-m", "attnlab.cli", "train", *tiny, "debug=limit",
            f"logger.tracking_uri={url}",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        stranger = subprocess.run(train, env=env, capture_output=True, text=True, timeout=300)
        assert stranger.returncode == 2
        assert stranger.stderr.strip().splitlines()[-1] == (
            f"attnlab: config error: logger.tracking_uri='{url}' is not allowed: a server that "
            "lets this user in (no user: HTTP 401); set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD"
        )
        env |= {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "team-secret-1"}
        member = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
        assert member.returncode == 0, member.stderr[-3000:]

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/server.db")
    (run,) = client.search_runs([client.get_experiment_by_name("date_transformer").experiment_id])
    assert run.info.status == "FINISHED"
