"""Bad input: one line naming the key, the value and what is allowed; exit 2; no MLflow run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab.cli import main

DATA = Path(__file__).parent / "data"  # small bad files

BAD_INPUTS = {
    "a model the data cannot size": (["model=resnet", "~experiment"], "model='resnet'"),
    "ensemble on a seq2seq task": (["regularization.ensemble_size=3"], "ensemble_size=3"),
    "unknown ensemble mode": (
        ["regularization.ensemble_mode=boosting"],
        "regularization.ensemble_mode='boosting'",
    ),
    "unknown model name": (["model=gpt9"], "model='gpt9'"),
    "an MLP on token data": (["experiment=agreement", "model=mlp"], "model='mlp'"),
    "d_model not divisible by heads": (["model.width=30", "model.heads=4"], "model.heads=4"),
    "dropout outside [0,1)": (["model.dropout=1.0"], "model.dropout=1.0"),
    "batch size 0": (["data.batch_size=0"], "data.batch_size=0"),
    "unknown override key": (["model.colour=red"], "model.colour"),
    "unknown trainer key (typo)": (["trainer.max_epoch=3"], "trainer.max_epoch"),
    "missing experiment file": (["experiment=does_not_exist"], "experiment='does_not_exist'"),
    "malformed tracking URI": (["logger.tracking_uri=mlflow.db"], "logger.tracking_uri"),
    "negative learning rate": (["optim.lr=-0.1"], "optim.lr=-0.1"),
    "wrong type": (["trainer.max_epochs=many"], "trainer.max_epochs"),
    "unknown objective metric": (["objective.metric=test/perplexity"], "objective.metric"),
    "unknown direction": (["objective.direction=up"], "objective.direction='up'"),
    "gpu trainer without a GPU": (["trainer=gpu"], "trainer.accelerator='gpu'"),
    "more DDP processes than cores": (
        ["trainer=ddp_cpu", "trainer.devices=64"],
        "trainer.devices=64 is not allowed: at most",
    ),
    "fsdp on CPU": (["trainer.strategy=fsdp"], "trainer.strategy='fsdp'"),
    "a PostgreSQL tracking store that refuses": (
        ["logger.tracking_uri=postgresql+psycopg://postgres@127.0.0.1:1/mlflow"],
        "logger.tracking_uri='postgresql+psycopg://postgres@127.0.0.1:1/mlflow'",
    ),
    "a tracking server that refuses": (
        ["logger.tracking_uri=http://127.0.0.1:1"],
        "logger.tracking_uri='http://127.0.0.1:1' is not allowed: a reachable MLflow",
    ),
    "unknown strategy": (["trainer.strategy=horovod"], "trainer.strategy='horovod'"),
    "unknown precision": (["trainer.precision=8-mixed"], "trainer.precision='8-mixed'"),
    "unknown locale": (["data.locales=[en_US,xx_QQ]"], "data.locales='xx_QQ'"),
    "label smoothing of 1": (
        ["regularization.label_smoothing=1"],
        "regularization.label_smoothing",
    ),
    "more examples than days": (["data.year_min=2000", "data.year_max=2001"], "data.n_train"),
    "unknown positional encoding": (["model.positional=rotary"], "model.positional='rotary'"),
    "Transformer norm that pools over time": (
        ["model.norm=group"],
        "model.norm='group' is not allowed: one of layer, batch, weight, none",
    ),
    "weight norm on a Transformer": (
        ["model.norm=weight"],
        "model.norm='weight' is not allowed: layer, batch or none: a Transformer normalises",
    ),
    "unknown Transformer classifier norm": (
        ["~experiment", "model=transformer_classifier", "model.norm=rms"],
        "model.norm='rms'",
    ),
    "unparsable override": (["model.width=["], "model.width=["),
    "monitor of an unknown metric": (
        ["callbacks.early_stopping.monitor=val/perplexity"],
        "callbacks.early_stopping.monitor",
    ),
    "unknown score function": (
        ["~experiment", "model=attention_seq2seq", "model.score=cosine"],
        "model.score='cosine' is not allowed: one of additive, dot, general, scaled_dot",
    ),
    "unknown rnn cell": (
        ["~experiment", "model=rnn_seq2seq", "model.cell=rnn"],
        "model.cell='rnn'",
    ),
    "conv norm that pools over time": (
        ["~experiment", "model=conv_seq2seq", "model.norm=instance"],
        "model.norm='instance' is not allowed: one of layer, batch, weight, none",
    ),
    "unknown forecaster norm": (
        ["experiment=sines_rnn", "model.norm=group"],
        "model.norm='group'",
    ),
    "unknown rnn norm": (
        ["~experiment", "model=attention_seq2seq", "model.norm=group"],
        "model.norm='group' is not allowed: one of none, layer, batch, weight",
    ),
    "odd hidden size, bidirectional": (
        ["~experiment", "model=attention_seq2seq", "model.width=33"],
        "model.width=33",
    ),
    "beam width 0": (["task.beam_width=0"], "task.beam_width=0"),
    "classifier heads do not divide d_model": (
        ["~experiment", "model=transformer_classifier", "model.width=30", "model.heads=4"],
        "model.heads=4",
    ),
    "unknown pooling": (
        ["~experiment", "model=transformer_classifier", "model.pooling=max"],
        "model.pooling='max'",
    ),
    "conv dilation 0": (
        ["~experiment", "model=conv_classifier", "model.dilation=0"],
        "model.dilation=0",
    ),
    "min_len > max_len": (["data=reverse", "data.min_len=9", "data.max_len=5"], "data.max_len=5"),
    "unknown symbol task": (["data=copy", "data.task=shuffle"], "data.task='shuffle'"),
    "agreement distance 0": (["data=agreement", "data.min_distance=0"], "data.min_distance=0"),
    "bucket edge outside the distances": (
        ["data=agreement", "data.bucket_edges=[5,50]"],
        "data.bucket_edges=[5, 50]",
    ),
    "unknown question": (["data=order_count", "data.question=sum"], "data.question='sum'"),
    "a classifier on tagging data": (
        ["experiment=tagging", "model=rnn_classifier"],
        "model='rnn_classifier' is not allowed: a model for tagging data; it takes token",
    ),
    "treebank not named": (["experiment=tagging", "data=conllu"], "data.path"),
    "treebank folder without its files": (
        ["experiment=tagging", "data=conllu", f"data.path={DATA}"],
        "a folder with one *train*.conllu, *dev*.conllu and *test*.conllu",
    ),
    "bucketing under DDP with Lightning's sampler": (
        ["data=reverse", "data.bucketing=true", "trainer=ddp_cpu"],
        "trainer.use_distributed_sampler=True",
    ),
    "corpus line without a tab": (
        ["data=corpus", f"data.path={DATA / 'corpus_no_tab.tsv'}"],
        "line 2 has no tab",
    ),
    "empty corpus": (
        ["data=corpus", f"data.path={DATA / 'corpus_empty.tsv'}"],
        "at least one source<TAB>target line",
    ),
    "price CSV without the target column": (
        ["experiment=sines_rnn", "data=prices_csv", f"data.csv_path={DATA / 'no_close.csv'}"],
        "data.target='Close' is not allowed: a column of",
    ),
    "price CSV not named": (["experiment=sines_rnn", "data=prices_csv"], "data.csv_path"),
    "too few steps for a window per split": (
        ["experiment=sines_rnn", "data=prices", "data.n_steps=100"],
        "data.n_steps=100",
    ),
    "teacher forcing without a decoder": (
        ["experiment=sines_rnn", "task.teacher_forcing=0.5"],
        "task.teacher_forcing=0.5",
    ),
    "groups do not divide the channels": (
        ["experiment=digits_resnet", "model.norm=group", "model.groups=3"],
        "model.groups=3 is not allowed: a divisor of every stage's channels [16, 32, 64]",
    ),
    "depth not 6n+2": (["experiment=digits_resnet", "model.depth=21"], "model.depth=21"),
    "unknown norm": (
        ["experiment=digits_resnet", "model.norm=spectral"],
        "model.norm='spectral' is not allowed: one of batch, layer, instance, group, weight, none",
    ),
    "unknown shortcut": (
        ["experiment=digits_resnet", "model.shortcut=highway"],
        "model.shortcut='highway'",
    ),
    "MLP norm it does not have": (["experiment=digits_mlp", "model.norm=group"], "model.norm"),
    "train fraction of 0": (
        ["experiment=digits_resnet", "data.train_fraction=0"],
        "data.train_fraction=0",
    ),
    "monitor of a seq2seq metric in a classification run": (
        ["experiment=digits_resnet", "callbacks.model_checkpoint.monitor=val/exact_match"],
        "callbacks.model_checkpoint.monitor",
    ),
    "no MNIST files in data_dir": (
        ["experiment=digits_resnet", "data=mnist", "data.data_dir=no/such/dir"],
        "data.data_dir='no/such/dir' is not allowed: a folder holding train-images-idx3-ubyte",
    ),
}


def count_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return connection.execute("select count(*) from runs").fetchone()[0]


@pytest.mark.parametrize("overrides, expected", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gives_one_line_and_exit_2(overrides, expected, capsys, tmp_path: Path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *overrides])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("attnlab: config error: ")
    assert expected in err[0]
    assert count_runs(tmp_path / "mlflow.db") == 0


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "attnlab.train", "model.width=30", "model.heads=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "attnlab: config error: model.heads=4 is not allowed: a divisor of model.width=30"
    ]
    assert not (tmp_path / "mlflow.db").exists() or count_runs(tmp_path / "mlflow.db") == 0


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
