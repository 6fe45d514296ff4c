"""A trained run is used where models are used: ``attnlab predict`` on its folder or its
MLflow run, ``mlflow.pyfunc`` in a fresh process, the model registry, ``attnlab eval``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from attnlab.core.errors import ConfigError
from attnlab.serving import MODEL_TAG, PREDICTOR_FILE, TextPredictor
from attnlab.tracking.mlflow_run import EVALUATES_TAG

# The copy task learns within seconds at this size: exact match well above 0 in 4 epochs.
COPY = [
    "experiment=copy", "data.n_train=2000", "data.n_val=100", "data.n_test=100",
    "data.max_len=8", "trainer.max_epochs=4", "scheduler.warmup_steps=10",
    "callbacks.progress_bar=null", "callbacks.model_summary=null",
]  # fmt: skip


def attnlab(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``attnlab ARGS`` in ``cwd``, tracked in ``cwd``'s own store as a user's runs are."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    return subprocess.run(
        [sys.executable, "-m", "attnlab.cli", *args], cwd=cwd, env=env, input=stdin,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def only_run_folder(cwd: Path, task_name: str) -> Path:
    (folder,) = (cwd / "logs" / task_name / "runs").iterdir()
    return folder


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory) -> tuple[Path, str]:
    """One trained copy run, registered as ``copier``: (its working folder, its run folder)."""
    cwd = tmp_path_factory.mktemp("copy_run")
    result = attnlab("train", *COPY, "register_model=copier", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (cwd / "train.stderr").write_text(result.stderr)
    return cwd, only_run_folder(cwd, "copy")


def test_a_run_prints_no_python_warning_and_logs_no_noise(copy_run):
    """Warnings attnlab cannot fix are silenced narrowly (attnlab.core.third_party); nothing else
    of a training run that logs and registers its model prints one."""
    cwd, folder = copy_run
    stderr = (cwd / "train.stderr").read_text()
    assert not re.findall(r".*(?:Warning:|is deprecated).*", stderr)
    # every save of last.ckpt says what it keeps, so Lightning has nothing to log about it
    assert "`weights_only` was not set" not in (folder / "train.log").read_text()


def test_the_predictor_of_a_run_scores_on_its_test_split_what_the_run_logged(copy_run):
    cwd, folder = copy_run
    predictor = TextPredictor.load(folder / PREDICTOR_FILE)
    cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
    data = instantiate(cfg.data)
    data.setup("fit")
    sources, targets = zip(*data.splits["test"], strict=True)
    outputs = predictor.predict(list(sources))
    exact = sum(o == t for o, t in zip(outputs, targets, strict=True)) / len(targets)

    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    run_id = (folder / "mlflow_run_id").read_text().strip()
    logged = client.get_run(run_id).data.metrics["test/exact_match"]
    assert 0.2 < logged == pytest.approx(exact, abs=1e-6)


def test_predict_gives_the_same_outputs_from_the_folder_the_run_and_the_registry(copy_run):
    """The folder's predictor.pt, runs:/ID/model and models:/copier/1 (both loaded by MLflow's
    pyfunc in a fresh process), and the newest run by default: one model, one answer."""
    cwd, folder = copy_run
    run_id = (folder / "mlflow_run_id").read_text().strip()
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    assert client.get_run(run_id).data.tags[MODEL_TAG] == f"runs:/{run_id}/model"
    inputs = ["abcab", "cabbage", "aaa"]
    answers = [
        attnlab("predict", *where, *inputs, cwd=cwd)
        for where in (["--run", str(folder)], ["--run", run_id], ["--run", "models:/copier/1"], [])
    ]
    for answer in answers:
        assert answer.returncode == 0, answer.stderr[-2000:]
    outputs = answers[0].stdout.splitlines()
    assert len(outputs) == 3 and all(a.stdout.splitlines() == outputs for a in answers)
    from_stdin = attnlab("predict", "--file", "-", cwd=cwd, stdin="\n".join(inputs) + "\n")
    assert from_stdin.stdout.splitlines() == outputs


def test_the_logged_model_has_a_text_signature_and_an_input_example(copy_run):
    import mlflow

    cwd, folder = copy_run
    run_id = (folder / "mlflow_run_id").read_text().strip()
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert json.loads(info.signature.to_dict()["inputs"]) == [{"type": "string", "required": True}]
    assert json.loads(info.signature.to_dict()["outputs"]) == [{"type": "string", "required": True}]


def test_a_run_with_log_model_false_or_without_text_logs_no_model(tmp_path: Path):
    for overrides, task_name in (
        ([*COPY, "trainer.max_epochs=1", "log_model=false"], "copy"),
        (["experiment=digits_mlp", "trainer.max_epochs=1", "callbacks.progress_bar=null"],
         "digits_mlp"),
    ):  # fmt: skip
        result = attnlab("train", *overrides, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        folder = only_run_folder(tmp_path, task_name)
        assert not (folder / PREDICTOR_FILE).exists()
        refused = attnlab("predict", "--run", str(folder), "x", cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"attnlab: config error: --run='{folder}' is not allowed: a run folder holding "
            "predictor.pt (a seq2seq run with log_model=true)"
        )
    no_model = attnlab("predict", "x", cwd=tmp_path)
    assert no_model.returncode == 2 and "a finished run that logged a model" in no_model.stderr


@pytest.mark.parametrize(
    "args, line",
    [
        (["--run", "nope/nothing", "x"], "--run='nope/nothing' is not allowed: an existing run "
         "folder, a run id or a model URI"),
        (["--file", "missing.txt"], "--file='missing.txt' is not allowed: an existing text "
         "file, one input per line"),
    ],
)  # fmt: skip
def test_bad_predict_input_is_one_line(tmp_path: Path, args: list[str], line: str):
    result = attnlab("predict", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"attnlab: config error: {line}"


def test_an_input_the_model_cannot_take_names_its_number(copy_run):
    """Empty inputs, and inputs longer than a model's positions reach (a Transformer's
    max_len; the copy run's RNN has no such bound), are refused before decoding."""
    _, folder = copy_run
    predictor = TextPredictor.load(folder / PREDICTOR_FILE)
    with pytest.raises(ConfigError) as empty:
        predictor.predict(["ab", ""])
    assert str(empty.value) == "input 2='' is not allowed: at least one token"
    predictor.max_len = 4
    with pytest.raises(ConfigError) as long:
        predictor.predict(["abcdefg"])
    assert str(long.value) == "input 1='abcdefg' is not allowed: 1 to 4 tokens"


def eval_runs(cwd: Path, trained_id: str) -> list:
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    experiment = client.get_experiment_by_name("copy")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.`{EVALUATES_TAG}` = '{trained_id}'"
    )
    return sorted(runs, key=lambda r: r.info.start_time)


def test_eval_tests_the_trained_checkpoint_again_as_a_linked_run(copy_run):
    """As trained, eval scores what the run logged; on longer strings it logs its own run with
    the per-length buckets and their plot, tagged with the trained run's id."""
    cwd, folder = copy_run
    trained_id = (folder / "mlflow_run_id").read_text().strip()
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    trained = client.get_run(trained_id).data.metrics["test/exact_match"]
    again = attnlab("eval", "--run", trained_id, cwd=cwd)
    assert again.returncode == 0, again.stderr[-3000:]
    longer = attnlab("eval", "--run", str(folder), "data.max_len=12", cwd=cwd)
    assert longer.returncode == 0, longer.stderr[-3000:]

    same, long = eval_runs(cwd, trained_id)
    assert same.info.status == long.info.status == "FINISHED"
    assert same.data.metrics["test/exact_match"] == pytest.approx(trained, abs=1e-6)
    assert long.data.params["data.max_len"] == "12" and long.info.run_name.startswith("eval of")
    assert "test/exact_match_by_len/10-14" in long.data.metrics  # lengths it never trained on
    plots = {a.path for a in client.list_artifacts(long.info.run_id, "plots")}
    assert "plots/exact_match_by_len.png" in plots
    assert not client.list_artifacts(long.info.run_id, "model")  # an eval trains no model


def test_eval_refuses_data_that_builds_other_ids_before_any_run(copy_run):
    cwd, folder = copy_run
    trained_id = (folder / "mlflow_run_id").read_text().strip()
    before = len(eval_runs(cwd, trained_id))
    result = attnlab("eval", "--run", str(folder), "data.n_symbols=12", cwd=cwd)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "attnlab: config error: data (src_vocab)='16 tokens' is not allowed: the 14 tokens, "
        "in the same order, the checkpoint was trained with"
    )
    assert len(eval_runs(cwd, trained_id)) == before


def test_eval_reads_a_run_whose_folder_is_elsewhere_from_its_artifacts(copy_run, tmp_path):
    """A run trained on another machine: its overrides and best checkpoint come from MLflow."""
    from attnlab.commands.evaluate import trained_run

    cwd, folder = copy_run
    trained_id = (folder / "mlflow_run_id").read_text().strip()
    away = folder.with_name("moved-away")
    folder.rename(away)
    try:
        found = trained_run(trained_id, f"sqlite:///{cwd}/mlflow.db", tmp_path)
    finally:
        away.rename(folder)
    assert found.run_id == trained_id and found.checkpoint.is_relative_to(tmp_path)
    assert found.checkpoint.name == next((folder / "checkpoints").glob("epoch*.ckpt")).name
    assert "experiment=copy" in found.overrides
