"""The promise of the README: `attnlab train` reaches >= 95% exact match, and its model answers
`attnlab predict`, MLflow's pyfunc and `mlflow models serve` (minutes: slow)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient


@pytest.mark.slow
def test_default_experiment_reaches_95_percent_exact_match(tmp_path: Path, tracking_uri: str):
    result = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "train", "callbacks.progress_bar=null"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    printed = re.search(r"test/exact_match = ([0-9.]+)", result.stdout)
    assert printed, result.stdout[-2000:]
    print(f"default experiment: test/exact_match = {printed.group(1)}")
    assert float(printed.group(1)) >= 0.95

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    (record,) = client.search_runs([experiment.experiment_id], max_results=5)
    assert record.info.status == "FINISHED"
    assert record.data.metrics["test/exact_match"] >= 0.95
    plots = [a.path for a in client.list_artifacts(record.info.run_id, "plots")]
    assert plots == ["plots/attention_layer1.png", "plots/attention_layer2.png"]

    # The run's model, as MLflow users load it: pyfunc in a fresh process, then a REST server.
    model_uri = f"runs:/{record.info.run_id}/model"
    load = (
        f"import mlflow; model = mlflow.pyfunc.load_model({model_uri!r}); "
        "print(model.predict(['vendredi 27 novembre 2026', '11/27/2026']))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", load], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert fresh.stdout.strip().splitlines()[-1] == "['2026-11-27', '2026-11-27']"
    predicted = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "predict", "Friday, November 27, 2026"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert predicted.stdout == "2026-11-27\n", predicted.stderr[-2000:]
    assert serve_and_post(model_uri, ["2026年11月27日金曜日"], tmp_path) == ["2026-11-27"]


def serve_and_post(model_uri: str, texts: list[str], cwd: Path) -> list[str]:
    """Serve ``model_uri`` with ``mlflow models serve`` on a free loopback port, POST ``texts``
    to /invocations and return the predictions; the server is stopped either way."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
         "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not answer /ping"
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": texts}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["predictions"]
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group exited: its error is asserted
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
