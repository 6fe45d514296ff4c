"""Bad input: one line naming the key, the value and what is allowed; exit 2; no MLflow run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from attnlab.cli import main

BAD_INPUTS = {
    "unknown model name": (["model=gpt9"], "model='gpt9'"),
    "d_model not divisible by heads": (["model.d_model=30", "model.heads=4"], "model.heads=4"),
    "dropout outside [0,1)": (["model.dropout=1.0"], "model.dropout=1.0"),
    "batch size 0": (["data.batch_size=0"], "data.batch_size=0"),
    "unknown override key": (["model.colour=red"], "model.colour"),
    "unknown trainer key (typo)": (["trainer.max_epoch=3"], "trainer.max_epoch"),
    "missing experiment file": (["experiment=does_not_exist"], "experiment='does_not_exist'"),
    "malformed tracking URI": (["logger.tracking_uri=mlflow.db"], "logger.tracking_uri"),
    "negative learning rate": (["optim.lr=-0.1"], "optim.lr=-0.1"),
    "wrong type": (["trainer.max_epochs=many"], "trainer.max_epochs"),
    "unknown objective metric": (["objective.metric=test/bleu"], "objective.metric"),
    "unknown direction": (["objective.direction=up"], "objective.direction='up'"),
    "gpu trainer without a GPU": (["trainer=gpu"], "trainer.accelerator='gpu'"),
    "unknown locale": (["data.locales=[en_US,xx_QQ]"], "data.locales='xx_QQ'"),
    "label smoothing of 1": (
        ["regularization.label_smoothing=1"],
        "regularization.label_smoothing",
    ),
    "more examples than days": (["data.year_min=2000", "data.year_max=2001"], "data.n_train"),
    "unknown positional encoding": (["model.positional=rotary"], "model.positional='rotary'"),
    "unparsable override": (["model.d_model=["], "model.d_model=["),
    "monitor of an unknown metric": (
        ["callbacks.early_stopping.monitor=val/bleu"],
        "callbacks.early_stopping.monitor",
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
        [sys.executable, "-m", "attnlab.train", "model.d_model=30", "model.heads=4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "attnlab: config error: model.heads=4 is not allowed: a divisor of model.d_model=30"
    ]
    assert not (tmp_path / "mlflow.db").exists() or count_runs(tmp_path / "mlflow.db") == 0


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2
    assert "unknown command 'trian'" in capsys.readouterr().err
