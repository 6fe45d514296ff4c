"""Bad input: one line naming the key, the value and what is allowed; exit 2; nothing written
(no MLflow run, store, Optuna study or output folder)."""

from __future__ import annotations

import os
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
    "a model whose keys the experiment does not set": (
        ["experiment=norm_batch", "model=mlp"],
        "model.groups is not a config key (set in experiment/norm_batch); the keys there",
    ),
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
        "model.norm='group' is not allowed: one of batch, layer, none",
    ),
    "weight norm on a Transformer": (
        ["model.norm=weight"],
        "model.norm='weight' is not allowed: one of batch, layer, none: a Transformer normalises",
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
        "model.norm='instance' is not allowed: one of batch, layer, weight, none",
    ),
    "unknown forecaster norm": (
        ["experiment=sines_rnn", "model.norm=group"],
        "model.norm='group'",
    ),
    "unknown rnn norm": (
        ["~experiment", "model=attention_seq2seq", "model.norm=group"],
        "model.norm='group' is not allowed: one of batch, layer, weight, none",
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
    "classes per batch not dividing the batch": (
        ["experiment=digits_mlp", "data.batch_size=8", "data.classes_per_batch=3"],
        "data.classes_per_batch=3 is not allowed: a divisor of data.batch_size=8",
    ),
    "label noise of 1": (["experiment=digits_mlp", "data.label_noise=1.0"], "data.label_noise=1.0"),
    "dropping noisy labels without noise": (
        ["experiment=digits_mlp", "data.drop_noisy=true"],
        "data.drop_noisy=True is not allowed: false unless data.label_noise > 0",
    ),
    "a causal Transformer read at a CLS state": (
        ["~experiment", "model=transformer_classifier", "model.causal=true", "model.pooling=first"],
        "model.pooling='first' is not allowed: mean or last with model.causal=true",
    ),
    "test lengths not beyond the trained ones": (
        ["data=order_count", "data.test_max_len=32"],
        "data.test_max_len=32 is not allowed: null or > data.max_len=32",
    ),
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
    # numbers that are not numbers
    "a learning rate that overflows to inf": (["optim.lr=1e309"], "optim.lr=inf is not allowed"),
    "NaN dropout": (["model.dropout=nan"], "model.dropout=nan is not allowed: a finite number"),
    "-inf weight decay": (["optim.weight_decay=-inf"], "optim.weight_decay=-inf"),
    "NaN label smoothing": (["regularization.label_smoothing=nan"], "label_smoothing=nan"),
    "inf for an integer": (["trainer.max_epochs=inf"], "trainer.max_epochs"),
    "a float for an integer": (["model.width=1e3"], "model.width"),
    "a word for a number": (["data.batch_size=abc"], "data.batch_size"),
    "seed out of range": (["seed=-1"], "seed=-1"),
    # keys that nothing reads: Hydra's + adds them to any node
    "+key at the top level": (["+colour=red"], "colour='red' is not allowed: a key of the top"),
    "++key at the top level": (["++colour=red"], "colour='red' is not allowed: a key of the top"),
    "+key in a model": (["+model.colour=red"], "model.colour='red' is not allowed: a key of model"),
    "+key in the trainer (typo)": (["+trainer.max_epoch=3"], "trainer.max_epoch=3"),
    "+key in the objective": (["+objective.mode=max"], "objective.mode='max'"),
    "+key in the logger": (["+logger.colour=red"], "logger.colour='red'"),
    "+key in paths": (["+paths.data=x"], "paths.data='x' is not allowed: a key of paths"),
    "+key in a preset group": (["+experiment.lr=1"], "experiment={'lr': 1} is not allowed"),
    "+callback without a class": (["+callbacks.mine.patience=3"], "callbacks.mine={'patience'"),
    "+key a callback does not take": (
        ["+callbacks.early_stopping.patient=3"],
        "callbacks.early_stopping.patient=3 is not allowed: a parameter of",
    ),
    "a callback that cannot be imported": (
        ["+callbacks.mine._target_=no.such.Callback"],
        "callbacks.mine._target_='no.such.Callback' is not allowed: an importable callable",
    ),
    # options that contradict each other
    "min_epochs > max_epochs": (
        ["trainer.min_epochs=5", "trainer.max_epochs=2"],
        "trainer.min_epochs=5 is not allowed: at most trainer.max_epochs=2",
    ),
    "two devices, one-device strategy": (
        ["trainer.devices=2", "trainer.strategy=single_device"],
        "trainer.devices=2 is not allowed: 1 with trainer.strategy=single_device",
    ),
    "checkpointing off, checkpoint callback on": (
        ["trainer.enable_checkpointing=false"],
        "trainer.enable_checkpointing=False is not allowed: true while callbacks.model_checkpoint",
    ),
    "unknown gradient clipping": (["trainer.gradient_clip_algorithm=max"], "clip_algorithm='max'"),
    "zero devices": (["trainer.devices=0"], "trainer.devices=0"),
    # data files: missing, empty, binary, a directory, wrong columns
    "corpus file missing": (
        ["data=corpus", "data.path=no/such.tsv"],
        "data.path='no/such.tsv' is not allowed: an existing file",
    ),
    "binary corpus": (["data=corpus", f"data.path={DATA / 'binary.bin'}"], "a UTF-8 text file"),
    "corpus path is a directory": (["data=corpus", f"data.path={DATA}"], "an existing file"),
    "binary price CSV": (
        ["experiment=sines_rnn", "data=prices_csv", f"data.csv_path={DATA / 'binary.bin'}"],
        "is not allowed: a readable CSV file",
    ),
    "empty price CSV": (
        ["experiment=sines_rnn", "data=prices_csv", f"data.csv_path={DATA / 'empty.csv'}"],
        "is not allowed: a readable CSV file (No columns to parse from file)",
    ),
    "price CSV path is a directory": (
        ["experiment=sines_rnn", "data=prices_csv", f"data.csv_path={DATA}"],
        "is not allowed: an existing CSV file",
    ),
    "price CSV with text in the target column": (
        ["experiment=sines_rnn", "data=prices_csv", f"data.csv_path={DATA / 'text_close.csv'}"],
        "a file whose column Close holds numbers; data row 1 does not",
    ),
    "MNIST data_dir is a file": (
        ["experiment=digits_resnet", "data=mnist", f"data.data_dir={DATA / 'binary.bin'}"],
        "is not allowed: a folder holding train-images-idx3-ubyte",
    ),
    # tracking stores: malformed, unreachable, credentials masked
    "a folder tracking store (MLflow 3 refuses it)": (
        ["logger.tracking_uri=file:///tmp/mlruns"],
        "logger.tracking_uri='file:///tmp/mlruns' is not allowed: a reachable database",
    ),
    "a SQLite store under a file": (
        [f"logger.tracking_uri=sqlite:///{DATA / 'empty.csv'}/mlflow.db"],
        "is not allowed: a SQLite file that can be created",
    ),
    "a tracking server with a password, unreachable": (
        ["logger.tracking_uri=http://user:pw-9@127.0.0.1:1"],
        "logger.tracking_uri='http://user:***@127.0.0.1:1' is not allowed",
    ),
    "a PostgreSQL store with a password, unreachable": (
        ["logger.tracking_uri=postgresql://user:pw-9@127.0.0.1:1/mlflow"],
        "logger.tracking_uri='postgresql://user:***@127.0.0.1:1/mlflow' is not allowed",
    ),
    # GPU options on a machine without one
    "CUDA accelerator": (["trainer.accelerator=cuda"], "trainer.accelerator='cuda'"),
    "the GPU scale preset": (["scale=gpu"], "trainer.accelerator='gpu' is not allowed"),
    "DDP over GPUs": (["trainer=ddp"], "trainer.accelerator='gpu' is not allowed"),
    "float16 on CPU": (["trainer.precision=16-mixed"], "trainer.precision='16-mixed'"),
    "resume from an unknown mode": (["resume=latest"], "resume='latest' is not allowed: auto"),
    "a last checkpoint every 0 steps": (
        ["callbacks.last_checkpoint.every_n_train_steps=0"],
        "callbacks.last_checkpoint.every_n_train_steps=0",
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
    assert "pw-9" not in err[0]  # passwords of URLs are masked
    assert not list(tmp_path.rglob("*")), "nothing written: no run, no store, no output folder"


def test_a_buffering_interval_mlflow_cannot_read_is_one_line_before_any_run(
    monkeypatch, capsys, tmp_path: Path
):
    """MLflow's logging thread dies on a non-integer MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS,
    and a run would then wait for it forever when fitting ends."""
    monkeypatch.setenv("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "0.5")
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "attnlab: config error: MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS='0.5' is not allowed: "
        "a whole number of seconds (environment)"
    ]
    assert not list(tmp_path.rglob("*")), "nothing written: no run, no store, no output folder"


def test_bad_input_in_a_real_process_prints_no_traceback(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "attnlab.training.train", "model.width=30", "model.heads=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "attnlab: config error: model.heads=4 is not allowed: a divisor of model.width=30"
    ]
    assert not (tmp_path / "mlflow.db").exists() or count_runs(tmp_path / "mlflow.db") == 0


BAD_COMMANDS = {
    "unknown command": (
        ["trian"],
        "unknown command 'trian'; one of train, eval, predict, report, claim, data, bench, runs, "
        "ui",
    ),
    "-m with --cfg hydra": (["train", "-m", "--cfg", "hydra"], "Only one of --run, --multirun"),
    "-m with --cfg job": (["train", "-m", "--cfg", "job"], "Only one of --run, --multirun"),
    "report without --experiment": (["report"], "one of the arguments --experiment --claim"),
    "report --experiment without a name": (["report", "--experiment"], "expected one argument"),
    "report on no store": (["report", "--experiment", "x"], "an existing MLflow store"),
    "report on an unreachable server": (
        ["report", "--experiment", "x", "--tracking-uri", "http://127.0.0.1:1"],
        "--tracking-uri='http://127.0.0.1:1' is not allowed: a reachable MLflow tracking server",
    ),
    "predict with texts and a file": (
        ["predict", "x", "--file", "inputs.txt"],
        "give the inputs as INPUT arguments or as --file, one of the two",
    ),
    "predict from a run of no store": (
        ["predict", "--run", "abc", "x"],
        "mlflow.db' is not allowed: an existing MLflow store; no such SQLite file",
    ),
    "eval of a folder that is not there": (
        ["eval", "--run", "./nofolder/"],
        "--run='./nofolder/' is not allowed: an existing run folder or an MLflow run id",
    ),
    "eval of a run of no store": (
        ["eval", "--run", "abc"],
        "mlflow.db' is not allowed: an existing MLflow store; no such SQLite file",
    ),
    "ui --auth without --server": (["ui", "--auth"], "--auth needs --server"),
    "ui --server --auth without a first admin password": (
        ["ui", "--server", "--auth", "--backend-store-uri", "sqlite:///team.db"],
        "--auth=True is not allowed: MLFLOW_AUTH_ADMIN_PASSWORD set: the first admin's password",
    ),
    "ui --port without a number": (["ui", "--port"], "argument --port: expected one argument"),
    "ui --port not a number": (["ui", "--port", "abc"], "invalid int value: 'abc'"),
    "ui on a folder store": (["ui", "--backend-store-uri", "mlruns"], "a reachable database"),
    "ui --artifacts-destination without --server": (
        ["ui", "--artifacts-destination", "x"],
        "--artifacts-destination needs --server",
    ),
    "runs of an unreachable database": (
        ["runs", "--tracking-uri", "postgresql://user:pw-9@127.0.0.1:1/x"],
        "--tracking-uri='postgresql://user:***@127.0.0.1:1/x' is not allowed",
    ),
    "a sweep with a +key nothing reads": (
        ["train", "-m", "sweep=transformer", "+model.colour=red"],
        "model.colour='red' is not allowed",
    ),
    "a malformed sweep storage": (
        ["train", "-m", "sweep=transformer", "hydra.sweeper.storage=optuna.db"],
        "hydra.sweeper.storage='optuna.db' is not allowed: a reachable database URL",
    ),
    "an unreachable sweep storage with a password": (
        [
            "train",
            "-m",
            "sweep=transformer",
            "hydra.sweeper.storage=postgresql://user:pw-9@127.0.0.1:1/optuna",
        ],
        "hydra.sweeper.storage='postgresql://user:***@127.0.0.1:1/optuna' is not allowed",
    ),  # fmt: skip
}


@pytest.mark.parametrize("argv, expected", BAD_COMMANDS.values(), ids=BAD_COMMANDS.keys())
def test_command_line_misuse_gives_a_few_lines_and_exit_2(
    argv, expected, capsys, tmp_path, monkeypatch
):
    def started(path, args):
        raise AssertionError(f"started {args}")

    monkeypatch.setattr(os, "execv", started)  # `attnlab ui` would become mlflow
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert 1 <= len(err.strip().splitlines()) <= 4, err  # argparse adds its usage lines
    assert expected in err and "Traceback" not in err and "pw-9" not in err
    assert not list(tmp_path.rglob("*")), "nothing written: no store, no study, no folder"


def test_a_full_disk_is_one_line_whatever_wraps_it():
    import errno

    from attnlab.core.errors import disk_full

    written = OSError(errno.ENOSPC, "No space left on device", "/runs/checkpoints/last.ckpt")
    try:
        raise RuntimeError("fit failed") from written
    except RuntimeError as wrapped:
        assert disk_full(wrapped) == (
            "no space left on the device writing /runs/checkpoints/last.ckpt: free some, "
            "or write elsewhere"
        )
    store = RuntimeError("(sqlite3.OperationalError) database or disk is full")
    assert disk_full(store) == "the tracking store's disk is full: free some, or use another store"
    assert disk_full(OSError(errno.EACCES, "Permission denied", "/runs")) is None


def test_an_exception_chain_with_a_cycle_is_read_once():
    """Hydra's error handling can leave an exception that is the context of its own context:
    reading the chain (config errors, a full disk) must end."""
    from attnlab.core.errors import chain, disk_full, one_line

    first, second = ValueError("first"), RuntimeError("second")
    first.__context__, second.__context__ = second, first
    assert list(chain(first)) == [first, second]
    assert disk_full(first) is None and one_line(first) is None
