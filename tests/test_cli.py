"""The ``attnlab`` entry: its table of commands, their help, --version and the claim aliases."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version

import pytest
from mlflow import MlflowClient
from test_claims import fill_store

from attnlab.bench.cli import BENCHMARKS
from attnlab.claims import spec
from attnlab.cli import COMMANDS, main

HELPS = [
    *([command.name] for command in COMMANDS),
    *(["bench", benchmark.name] for benchmark in BENCHMARKS),
    ["claim", "list"],
    ["claim", "run"],
    ["claim", "report"],
    ["data", "download"],
]


def exit_code(argv: list[str]) -> int:
    """``attnlab ARGV`` in this process: the code it returns or exits with."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


@pytest.mark.parametrize("argv", HELPS, ids=" ".join)
def test_every_command_answers_help_as_plain_text(argv, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["attnlab"])  # train hands its arguments to Hydra there
    assert exit_code([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.strip() and "``" not in out  # RST literals of docstrings lose their backticks


def table(text: str) -> dict[str, str]:
    """The rows of a listing of commands: name -> summary."""
    rows = [line.split(None, 1) for line in text.splitlines() if line.startswith("  ")]
    return {name: summary for name, summary in rows if not name.startswith("-")}


def test_the_help_lists_the_table_and_imports_no_command():
    heavy = "('torch', 'lightning', 'mlflow', 'hydra', 'attnlab')"
    code = (
        "import sys; from attnlab.cli import main; main(['--help']); "
        f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {heavy}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    listing, _, modules = done.stdout.strip().rpartition("\n")
    assert table(listing) == {command.name: command.summary for command in COMMANDS}
    assert modules == "['attnlab', 'attnlab.cli']"


# Commands that answer before any training, with their exit codes (2: a config error).
ANSWER_AT_ONCE = {
    "help": (["--help"], 0),
    "claim list": (["claim", "list"], 0),
    "claim plan help": (["claim", "plan", "--help"], 0),
    "data download help": (["data", "download", "--help"], 0),
    "train help": (["train", "--help"], 0),
    "train cfg job": (["train", "--cfg", "job"], 0),
    "train cfg job, overrides": (["train", "--cfg", "job", "experiment=sort", "optim.lr=0.01"], 0),
    "train cfg job, a bad value": (["train", "--cfg", "job", "model.width=abc"], 2),
    "train cfg job, an unknown key": (["train", "--cfg", "job", "model.colour=red"], 2),
    "train cfg job, an unknown option": (["train", "--cfg", "job", "model=nope"], 2),
}


@pytest.mark.parametrize("argv, code", ANSWER_AT_ONCE.values(), ids=ANSWER_AT_ONCE.keys())
def test_commands_that_answer_at_once_import_no_torch(argv, code, tmp_path, monkeypatch):
    """None imports torch, Lightning or MLflow (their speed: ``attnlab bench perf``, section
    cli). A user's own components ($ATTNLAB_COMPONENTS, the tests' model) would bring torch in."""
    monkeypatch.delenv("ATTNLAB_COMPONENTS")
    heavy = ("torch", "lightning", "mlflow")
    loaded = tmp_path / "modules.txt"
    program = (
        "import atexit, sys\n"
        "def record():\n"
        f"    names = sorted(m for m in sys.modules if m.partition('.')[0] in {heavy})\n"
        f"    open({str(loaded)!r}, 'w').write(' '.join(names))\n"
        "atexit.register(record)\n"
        "from attnlab.cli import main\n"
        f"main({argv!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    assert done.stdout if code == 0 else done.stderr.startswith("attnlab: config error: ")
    assert loaded.read_text() == ""


def test_version_prints_the_installed_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"attnlab {version('attnlab')}\n"


def test_no_command_shows_the_list_and_an_unknown_one_names_them(capsys):
    assert exit_code([]) == 2
    assert "commands:" in capsys.readouterr().err
    assert exit_code(["claims"]) == 2
    names = ", ".join(command.name for command in COMMANDS)
    expected = f"attnlab: unknown command 'claims'; one of {names} (attnlab -h)\n"
    assert capsys.readouterr().err == expected


def test_bench_help_lists_the_benchmarks(capsys):
    assert main(["bench", "--help"]) == 0
    listed = table(capsys.readouterr().out)
    assert listed == {"complexity": BENCHMARKS[0].summary, "perf": BENCHMARKS[1].summary}


@pytest.mark.parametrize("argv", [["claim"], ["claim", "run"], ["claim", "report"]], ids=" ".join)
def test_claim_help_lists_the_claims(argv, capsys):
    assert exit_code([*argv, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the list anywhere
    names = spec.names()
    assert len(names) > 1 and ", ".join(names) in out


def run_both(claim_report: list[str], report: list[str], tmp_path, monkeypatch, capsys):
    """``attnlab claim report ...`` and ``attnlab report ...``, each in a folder of its own: the
    exit code, stdout and stderr of each."""
    outcomes = []
    for command in (["claim", "report", *claim_report], ["report", *report]):
        folder = tmp_path / command[0]
        folder.mkdir()
        monkeypatch.chdir(folder)
        code = exit_code(command)
        out = capsys.readouterr()
        outcomes.append((code, out.out, out.err))
    return outcomes


@pytest.mark.parametrize(
    "claim_report, report", [(["position"], ["--claim", "position"]), (["--all"], ["--claims"])]
)
def test_claim_report_is_report_claim_on_an_empty_store(
    claim_report, report, tmp_path, monkeypatch, capsys
):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).search_experiments()  # creates the store, with no runs
    capsys.readouterr()
    store = ["--tracking-uri", uri]
    new, alias = run_both(claim_report + store, report + store, tmp_path, monkeypatch, capsys)
    assert new == alias
    code, out, _ = new
    assert code == 1 and "claim position: no finished runs of scale cpu" in out


def test_claim_report_is_report_claim_on_a_filled_store(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fill_store(uri)
    capsys.readouterr()
    options = ["--tracking-uri", uri, "--out", "out"]
    new, alias = run_both(
        ["position", *options], ["--claim", "position", *options], tmp_path, monkeypatch, capsys
    )
    run_ids = re.compile(r"position [0-9a-f]{32}")  # of the run each logs its verdict in
    assert new[0] == alias[0] and new[2] == alias[2]
    assert run_ids.sub("position RUN", new[1]) == run_ids.sub("position RUN", alias[1])
    assert new[0] == 0 and "claim position: reproduced" in new[1]
    assert (tmp_path / "claim/out/position.md").is_file()
