"""The tutorial (docs/tutorial.md) runs as written: every command of its bash blocks, in order,
in one empty folder, as a user would type them (minutes: slow)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from attnlab.claims import spec

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"


def tutorial_commands() -> list[str]:
    """The command lines of the page's ```bash blocks, comments and blank lines left out."""
    blocks = re.findall(r"```bash\n(.*?)```", TUTORIAL.read_text(encoding="utf-8"), re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_tutorial_names_each_step_it_promises():
    commands = tutorial_commands()
    assert [c.split()[1] for c in commands] == [
        "train", "train", "ui", "report", "train", "ui", "claim", "claim", "train", "predict",
    ]  # fmt: skip
    assert all(c.startswith("attnlab ") for c in commands)


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI")  # the tutorial's runs go where a user's do: ./mlflow.db
    outputs = []
    for command in tutorial_commands():
        result = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
        outputs.append(result.stdout)
        print(f"tutorial: {command}: exit 0")

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = {
        name: client.search_runs([client.get_experiment_by_name(name).experiment_id])
        for name in ("digits_mlp", "overfitting", "norm_batch")
    }
    assert len(runs["digits_mlp"]) == 1 + 3  # the run and the multirun's
    assert len(runs["overfitting"]) == 1 + 4  # the sweep's parent and its trials
    noniid = spec.load("norm_noniid")
    assert len(runs["norm_batch"]) == len(noniid.variants) * len(noniid.seeds)  # the claim's
    assert all(r.info.status == "FINISHED" for rs in runs.values() for r in rs)
    assert "MLflow: http://127.0.0.1:5000/#/experiments/" in outputs[2]
    assert "Optuna dashboard: http://127.0.0.1:8080/dashboard/studies/" in outputs[5]
    assert re.search(r"\b(reproduced|not reproduced|inconclusive)\b", outputs[7])
    assert (tmp_path / "reports" / "claims" / "norm_noniid.html").is_file()
    assert len(outputs[9].splitlines()) == 2  # one output per input
