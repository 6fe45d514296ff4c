"""A trained run is used where models are used: ``attnlab predict`` on its folder or its
MLflow run, ``mlflow.pyfunc`` in a fresh process, the model registry, ``attnlab eval``; every
kind of run (seq2seq, text classification, tagging, images, forecasts) with its own inputs."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from mlflow import MlflowClient
from omegaconf import OmegaConf

from attnlab.cli import main
from attnlab.core.errors import ConfigError
from attnlab.data.text import pad_batch
from attnlab.serving import MODEL_TAG, PREDICTOR_FILE, Predictor, TextPredictor
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


@pytest.fixture
def predict_here(monkeypatch, capsys):
    """``attnlab predict ARGS`` run in this process, as :func:`attnlab` runs it in a new one:
    the script is ``cli.main``, so the exit code and the lines are the same, without the
    seconds a new interpreter takes to import torch, Lightning and MLflow. A fresh process is
    kept where that is the point (MLflow's pyfunc loading a model)."""

    def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{cwd}/mlflow.db")
        monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        capsys.readouterr()
        try:
            code = main(["predict", *args])
        except SystemExit as exit_:
            code = exit_.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["attnlab", "predict", *args], code, out, err)

    return run


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


def test_a_predictor_saved_before_the_modules_moved_and_the_other_kinds_still_loads(
    copy_run, tmp_path
):
    """A predictor.pt of the earlier format: no kind, the vocabularies at its top, and the
    schedule's ``_target_`` in the module it had before the package was grouped by concern."""
    import torch

    _, folder = copy_run
    bundle = torch.load(folder / PREDICTOR_FILE, weights_only=True)
    config = {**bundle["config"]}
    assert config["scheduler"]["_target_"].startswith("attnlab.training.schedules.")
    config["scheduler"] = {
        **config["scheduler"],
        "_target_": config["scheduler"]["_target_"].replace("training.schedules", "schedules"),
    }
    old = {key: bundle[key] for key in ("dims", "state_dict")}
    old.update(config=config, source=bundle["data"]["source"], target=bundle["data"]["target"])
    torch.save(old, tmp_path / PREDICTOR_FILE)
    inputs = ["abcab", "cabbage", "aaa"]
    expected = Predictor.load(folder / PREDICTOR_FILE).predict(inputs)
    assert Predictor.load(tmp_path / PREDICTOR_FILE).predict(inputs) == expected


def test_predict_gives_the_same_outputs_from_the_folder_the_run_and_the_registry(
    copy_run, predict_here
):
    """The folder's predictor.pt, runs:/ID/model and models:/copier/1 (both loaded by MLflow's
    pyfunc; the registered one in a fresh process), and the newest run by default: one model,
    one answer."""
    cwd, folder = copy_run
    run_id = (folder / "mlflow_run_id").read_text().strip()
    client = MlflowClient(f"sqlite:///{cwd}/mlflow.db")
    assert client.get_run(run_id).data.tags[MODEL_TAG] == f"runs:/{run_id}/model"
    inputs = ["abcab", "cabbage", "aaa"]
    answers = [
        predict_here(*where, *inputs, cwd=cwd)
        for where in (["--run", str(folder)], ["--run", run_id], [])
    ]
    answers.append(attnlab("predict", "--run", "models:/copier/1", *inputs, cwd=cwd))
    for answer in answers:
        assert answer.returncode == 0, answer.stderr[-2000:]
    outputs = answers[0].stdout.splitlines()
    assert len(outputs) == 3 and all(a.stdout.splitlines() == outputs for a in answers)
    from_stdin = predict_here("--file", "-", cwd=cwd, stdin="\n".join(inputs) + "\n")
    assert from_stdin.stdout.splitlines() == outputs


def test_the_logged_model_has_a_text_signature_and_an_input_example(copy_run):
    import mlflow

    cwd, folder = copy_run
    run_id = (folder / "mlflow_run_id").read_text().strip()
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert json.loads(info.signature.to_dict()["inputs"]) == [{"type": "string", "required": True}]
    assert json.loads(info.signature.to_dict()["outputs"]) == [{"type": "string", "required": True}]


def test_the_logged_requirements_are_this_environments_whose_check_is_skipped(copy_run):
    """attnlab skips MLflow's requirements check (~1 s a run) because it pins the versions it
    runs with: the logged requirements are those, and the check it skips is still MLflow's."""
    from importlib.metadata import version

    import mlflow
    from mlflow.utils import environment

    from attnlab.serving import REQUIREMENTS_CHECK

    assert callable(getattr(environment, REQUIREMENTS_CHECK))
    cwd, folder = copy_run
    run_id = (folder / "mlflow_run_id").read_text().strip()
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"runs:/{run_id}/model"))
    pins = dict(line.split("==") for line in requirements.read_text().split() if "==" in line)
    assert pins == {name: version(name) for name in ("mlflow", "attnlab", "torch")}


def test_a_run_with_log_model_false_or_without_a_predictor_logs_no_model(
    tmp_path: Path, predict_here
):
    """log_model=false, and the adding problem (inputs without units to read them in)."""
    for overrides, task_name in (
        ([*COPY, "trainer.max_epochs=1", "log_model=false"], "copy"),
        (["experiment=adding", "data.length=10", "data.n_train=200", "data.n_val=50",
          "data.n_test=50", "trainer.max_epochs=1", "callbacks.progress_bar=null"], "adding"),
    ):  # fmt: skip
        result = attnlab("train", *overrides, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        folder = only_run_folder(tmp_path, task_name)
        assert not (folder / PREDICTOR_FILE).exists()
        refused = predict_here("--run", str(folder), "x", cwd=tmp_path)
        assert refused.returncode == 2
        assert refused.stderr.strip() == (
            f"attnlab: config error: --run='{folder}' is not allowed: a run folder holding "
            "predictor.pt (a finished run with log_model=true)"
        )
    no_model = predict_here("x", cwd=tmp_path)
    assert no_model.returncode == 2 and "a finished run that logged a model" in no_model.stderr


@pytest.mark.parametrize(
    "args, line",
    [
        (["--run", "nope/nothing", "x"], "--run='nope/nothing' is not allowed: an existing run "
         "folder, a run id or a model URI"),
        (["--file", "missing.txt"], "--file='missing.txt' is not allowed: an existing file of "
         "inputs"),
    ],
)  # fmt: skip
def test_bad_predict_input_is_one_line(tmp_path: Path, args: list[str], line: str, predict_here):
    result = predict_here(*args, cwd=tmp_path)
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


# The tiniest run of each other kind; what is tested is that the predictor answers as the
# trained model does, not that the model is good.
KIND_RUNS = {
    "label": ("sentiment_pairs", ["experiment=sentiment_pairs", "data.n_train=1000",
              "data.n_val=100", "data.n_test=200", "trainer.max_epochs=2"]),
    "tags": ("tagging", ["experiment=tagging", "data.n_train=1000", "data.n_val=100",
             "data.n_test=100", "trainer.max_epochs=2"]),
    "image": ("digits_mlp", ["experiment=digits_mlp", "trainer.max_epochs=2"]),
    "forecast": ("prices", ["experiment=prices", "trainer.max_epochs=1"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def kind_run(tmp_path_factory):
    """kind -> (working folder, run folder) of its run, trained the first time it is asked for."""
    cwd = tmp_path_factory.mktemp("kind_runs")
    trained = {}

    def get(kind: str) -> tuple[Path, Path]:
        if kind not in trained:
            task_name, overrides = KIND_RUNS[kind]
            result = attnlab("train", *overrides, "callbacks.progress_bar=null", cwd=cwd)
            assert result.returncode == 0, result.stderr[-3000:]
            trained[kind] = cwd, only_run_folder(cwd, task_name)
        return trained[kind]

    return get


def checkpointed(folder: Path):
    """The run's data (set up) and its task with the best checkpoint's weights, in eval mode."""
    from hydra.utils import get_class

    from attnlab.training.train import build_model

    cfg = OmegaConf.load(folder / ".hydra" / "config.yaml")
    data = instantiate(cfg.data)
    data.setup("fit")
    checkpoint = next((folder / "checkpoints").glob("epoch*.ckpt"))
    task = get_class(cfg.task._target_).load_from_checkpoint(  # with the hparams it saved
        checkpoint, model=build_model(cfg, data.dims), optimizer=None, weights_only=True
    )
    return data, task.eval()


def words(itos: list[str], ids: list[int]) -> str:
    return " ".join(itos[i] for i in ids)


@torch.inference_mode()
def raw_test_split(kind: str, data, task) -> tuple[list[str], list[str], list[str]]:
    """The test split as raw inputs, the trained task's answers on the data module's own
    tensors, and the true answers."""
    if kind == "label":
        examples = data.examples["test"]
        tokens = pad_batch([ids for ids, _, _ in examples], data.pad_id)  # (N, S)
        answers = [data.class_names[c] for c in task(tokens).argmax(-1).tolist()]
        truth = [data.class_names[label] for _, label, _ in examples]
        return [words(data.itos, ids) for ids, _, _ in examples], answers, truth
    if kind == "tags":
        sentences = data.sentences["test"]
        tags = task(pad_batch([ids for ids, _, _ in sentences], data.pad_id)).argmax(-1)
        answers = [
            " ".join(data.tag_names[t] for t in row[: len(ids)])
            for row, (ids, _, _) in zip(tags.tolist(), sentences, strict=True)
        ]
        truth = [" ".join(data.tag_names[t] for t in tags) for _, tags, _ in sentences]
        return [words(data.itos, ids) for ids, _, _ in sentences], answers, truth
    if kind == "image":
        raw = data.load()["test"][0] * data.pixel_max  # (N, 1, 8, 8): counts 0..16
        rows = [",".join(f"{v:g}" for v in image.flatten().tolist()) for image in raw]
        images, labels = data.datasets["test"].tensors
        answers = [str(c) for c in task(images).argmax(-1).tolist()]
        return rows, answers, [str(label) for label in labels.tolist()]
    windows = data.datasets["test"]
    mean, std, target = data.mean, data.std, data.target_index
    histories, answers = [], []
    for inputs, _ in windows:
        lines = [",".join(map(repr, row)) for row in (inputs.numpy() * std + mean).tolist()]
        histories.append("\n".join([",".join(data.columns), *lines]))
        predicted = task(inputs[None])[0, :, 0].numpy() * std[target] + mean[target]  # (H,)
        answers.append(",".join(map(repr, predicted.tolist())))
    return histories, answers, []


@pytest.mark.parametrize("kind", KIND_RUNS)
def test_each_predictor_answers_the_test_split_as_the_trained_model(kind, kind_run):
    """Raw inputs through predictor.pt give the best checkpoint's answers on the data module's
    tensors (a forecast to 6 digits), and score what the run logged."""
    cwd, folder = kind_run(kind)
    data, task = checkpointed(folder)
    inputs, answers, truth = raw_test_split(kind, data, task)
    predictor = Predictor.load(folder / PREDICTOR_FILE)
    assert predictor.kind == kind
    outputs = predictor.predict(inputs)
    assert len(set(answers)) > 1  # a model that answers one thing would prove nothing here
    if kind == "forecast":
        as_numbers = [[float(v) for v in row.split(",")] for row in (*outputs, *answers)]
        outputs, answers = np.array(as_numbers[: len(inputs)]), np.array(as_numbers[len(inputs) :])
        np.testing.assert_allclose(outputs, answers, rtol=1e-4, atol=1e-4)
        return
    assert outputs == answers
    run_id = (folder / "mlflow_run_id").read_text().strip()
    metrics = MlflowClient(f"sqlite:///{cwd}/mlflow.db").get_run(run_id).data.metrics
    if kind == "tags":
        pairs = [(o, t) for out, true in zip(outputs, truth, strict=True)
                 for o, t in zip(out.split(), true.split(), strict=True)]  # fmt: skip
        assert metrics["test/token_acc"] == pytest.approx(
            sum(o == t for o, t in pairs) / len(pairs), abs=1e-6
        )
    else:
        accuracy = sum(o == t for o, t in zip(outputs, truth, strict=True)) / len(truth)
        assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.parametrize("kind", KIND_RUNS)
def test_the_logged_model_of_each_kind_answers_its_input_example_as_its_predictor(kind, kind_run):
    import mlflow

    cwd, folder = kind_run(kind)
    run_id = (folder / "mlflow_run_id").read_text().strip()
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlflow.db")
    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert json.loads(info.signature.to_dict()["inputs"]) == [{"type": "string", "required": True}]
    assert json.loads(info.signature.to_dict()["outputs"]) == [{"type": "string", "required": True}]
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    example = list(model.input_example)
    assert len(example) == 3 and all(isinstance(text, str) for text in example)
    assert model.predict(example) == Predictor.load(folder / PREDICTOR_FILE).predict(example)


def test_predict_reads_image_files_and_a_csv_of_pixel_rows(kind_run, tmp_path: Path, predict_here):
    """The same digits as an 8-bit PNG (0/255), a .npy of counts (0/16) and a CSV row (0/16):
    one answer each, from the run's folder and from its MLflow run."""
    from PIL import Image

    cwd, folder = kind_run("image")
    data, _ = checkpointed(folder)
    counts = (data.load()["test"][0][:6, 0] * data.pixel_max > 8).numpy() * 16  # (6, 8, 8)
    pictures = []
    for number, image in enumerate(counts):
        pictures += [tmp_path / f"{number}.png", tmp_path / f"{number}.npy"]
        Image.fromarray((image * 255 // 16).astype(np.uint8)).save(pictures[-2])
        np.save(pictures[-1], image)
    rows = tmp_path / "pixels.csv"
    np.savetxt(rows, counts.reshape(6, -1), fmt="%d", delimiter=",")
    run_id = (folder / "mlflow_run_id").read_text().strip()
    from_files = predict_here("--run", str(folder), *map(str, pictures), cwd=cwd)
    from_rows = predict_here("--run", run_id, "--file", str(rows), cwd=cwd)
    assert from_files.returncode == from_rows.returncode == 0, from_files.stderr[-2000:]
    answers = from_rows.stdout.splitlines()
    assert len(answers) == 6 and len(set(answers)) > 1
    assert from_files.stdout.splitlines() == [a for answer in answers for a in (answer, answer)]


def test_predict_reads_a_price_csv_by_its_header_and_uses_its_last_steps(
    kind_run, tmp_path, predict_here
):
    """A CSV with a Date column and the columns in another order: the trained columns are
    picked by name, and the last input_len rows are the history."""
    cwd, folder = kind_run("forecast")
    data, _ = checkpointed(folder)
    frame = data.load_frame().iloc[:100]
    frame[["Date", *reversed(data.columns)]].to_csv(tmp_path / "prices.csv", index=False)
    answer = predict_here("--run", str(folder), "--file", "prices.csv", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr[-2000:]
    last = frame[data.columns].iloc[-data.input_len :].to_numpy()
    history = "\n".join(",".join(map(repr, row)) for row in last.tolist())
    assert answer.stdout.splitlines() == Predictor.load(folder / PREDICTOR_FILE).predict([history])
    assert len(answer.stdout.split(",")) == data.horizon


def test_attention_maps_are_one_png_per_input_of_its_source_and_output(
    copy_run, monkeypatch, predict_here
):
    """--attention DIR: the outputs as without it, and DIR/attention_<n>.png for input n; each
    map is of that input's source tokens and its decoded output."""
    from attnlab.core import plots

    cwd, folder = copy_run
    inputs = ["abcab", "cabbage", "aaa"]
    result = predict_here("--run", str(folder), "--attention", "maps", *inputs, cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    plain = predict_here("--run", str(folder), *inputs, cwd=cwd)
    assert result.stdout == plain.stdout
    assert sorted(p.name for p in (cwd / "maps").iterdir()) == [
        "attention_1.png", "attention_2.png", "attention_3.png"
    ]  # fmt: skip

    drawn = []
    grid = plots.attention_grid
    monkeypatch.setattr(
        plots,
        "attention_grid",
        lambda w, s, o, t: drawn.append((w, s, o)) or grid(w, s, o, t),
    )
    predictor = TextPredictor.load(folder / PREDICTOR_FILE)
    paths = predictor.save_attention(inputs, cwd / "again")
    assert [p.name for p in paths] == sorted(p.name for p in (cwd / "maps").iterdir())
    for text, output, (weights, sources, outputs) in zip(
        inputs, plain.stdout.splitlines(), drawn, strict=True
    ):
        assert weights.shape[:2] == (1, 1)  # one decoder layer, one head: one map
        assert sources == [list(text)] and outputs[0][: len(output)] == list(output)
        assert weights.shape[-1] == len(text)


@pytest.mark.parametrize(
    "kind, args, line",
    [
        ("image", ["--attention", "maps", "0,1"], "--attention='maps' is not allowed: a run of a "
         "seq2seq model with encoder-decoder attention (transformer, attention_seq2seq, "
         "conv_seq2seq); this run's predictor is of kind 'image'"),
        ("image", ["big.png"], "input 1='big.png' is not allowed: a PNG, JPEG or .npy image of "
         "8 x 8 pixels (1 channel) or a row of 64 comma-separated pixel values (0 to 16); it is "
         "1 x 10 x 10, not 1 x 8 x 8"),
        ("image", ["--file", "big.png"], "--file='big.png' is not allowed: a UTF-8 text file "
         "with one input per line: a row of comma-separated pixel values or an image's path "
         "(give image files themselves as arguments)"),
        ("image", ["1,2,3"], "input 1='1,2,3' is not allowed: a PNG, JPEG or .npy image of 8 x 8 "
         "pixels (1 channel) or a row of 64 comma-separated pixel values (0 to 16); it has 3 "
         "values"),
        ("forecast", ["--file", "short.csv"], "--file='short.csv' is not allowed: a history of at "
         "least 48 steps of 5 values (Close, Open, High, Low, Volume) each: CSV rows, one per "
         "step; it has 20 steps"),
        ("label", ["the film was awesome"], "input 1='the film was awesome' is not allowed: one "
         "or more words separated by spaces, among the 32: bad, awful, poor, dull, hate, boring, "
         "good, great, fine, nice, like, love, not, never, very, really, the, a, movie, film, "
         "plot, it, was, is, this, and, i, story, cast, ending, to, of ('awesome' is not one)"),
    ],
)  # fmt: skip
def test_input_a_run_cannot_take_is_one_line(
    kind, args, line, kind_run, tmp_path: Path, predict_here
):
    from PIL import Image

    _, folder = kind_run(kind)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "big.png")
    (tmp_path / "short.csv").write_text("Close,Open,High,Low,Volume\n" + "1,1,1,1,9\n" * 20)
    result = predict_here("--run", str(folder), *args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"attnlab: config error: {line}"


def test_attention_of_a_seq2seq_model_without_attention_is_refused(tmp_path: Path, predict_here):
    overrides = [*COPY, "model=rnn_seq2seq", "trainer.max_epochs=1", "logger=none"]
    assert attnlab("train", *overrides, cwd=tmp_path).returncode == 0
    folder = only_run_folder(tmp_path, "copy")
    result = predict_here("--run", str(folder), "--attention", "maps", "abc", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "maps").exists()
    assert result.stderr.strip() == (
        "attnlab: config error: --attention='maps' is not allowed: a run of a seq2seq model "
        "with encoder-decoder attention (transformer, attention_seq2seq, conv_seq2seq); this "
        "run's RNNEncoderDecoder has none"
    )
