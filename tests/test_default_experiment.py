"""The promise of the README: `attnlab train` reaches >= 95% exact match (minutes: slow)."""

from __future__ import annotations

import re
import subprocess
import sys
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
