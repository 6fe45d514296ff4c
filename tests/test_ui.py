"""Run names, the compare view and the addresses `attnlab ui` prints (fast; the browser tests
are in test_browser.py)."""

from __future__ import annotations

import json
import sys

import optuna
import pytest
from mlflow import MlflowClient
from omegaconf import OmegaConf

from attnlab.cli import main
from attnlab.commands.ui import open_when_up
from attnlab.tracking.mlflow_run import compare_columns, distinguishing, run_name
from attnlab.tracking.names import (
    MAX_LENGTH,
    describe,
    job_pairs,
    short_value,
    swept_keys,
    trial_name,
)
from attnlab.tracking.views import (
    KIND,
    KIND_TAG,
    VIEW_TAG,
    prepare_experiment,
    runs_url,
    view_state,
)

AGREEMENT = ["experiment=agreement", "model=rnn_classifier", "data.n_train=256"]


def test_a_name_is_the_overrides_that_change_the_run():
    overrides = [*AGREEMENT, "logger.tracking_uri=sqlite:///x.db", "+tags.purpose=demo",
                 "callbacks.progress_bar=null", "++trial.number=3"]  # fmt: skip
    pairs = job_pairs(overrides, swept=None)
    assert describe(pairs) == "model=rnn_classifier data.n_train=256"
    assert describe(job_pairs(["experiment=agreement"], swept=None)) == "defaults"


def test_a_multirun_name_keeps_only_what_was_swept(tmp_path):
    sweep = {"hydra": {"sweeper": {"params": {"seed": "0,1"}}, "overrides": {"task": [
        "experiment=order_count", "model.positional=sinusoidal,none",
        "data.question=choice(order,count)", "trainer.max_epochs=2"]}}}  # fmt: skip
    OmegaConf.save(OmegaConf.create(sweep), tmp_path / "multirun.yaml")
    swept = swept_keys(tmp_path)
    assert swept == {"seed", "model.positional", "data.question"}
    job = ["experiment=order_count", "model.positional=none", "data.question=order",
           "trainer.max_epochs=2", "seed=1"]  # fmt: skip
    assert describe(job_pairs(job, swept)) == "model.positional=none data.question=order seed=1"
    assert swept_keys(tmp_path / "absent") is None


def test_long_values_and_names_are_shortened():
    assert short_value(0.00123456789) == "0.00123"
    assert short_value("/data/corpora/fra.txt") == "fra.txt"
    assert short_value(True) == "true"
    assert len(short_value("x" * 100)) == 24
    pairs = [("model.dropout", 0.1), ("data.dropout", 0.2)]
    assert describe(pairs) == "model.dropout=0.1 data.dropout=0.2"  # short enough: as given
    long = [(f"model.key{i}", "v" * 5) for i in range(30)]
    name = describe(long[:6])
    assert name.startswith("key0=vvvvv key1=vvvvv") and len(name) <= MAX_LENGTH
    name = describe(long)
    assert len(name) <= MAX_LENGTH and name.startswith("key0=vvvvv key1=vvvvv")
    assert name.endswith(f" …+{30 - name.count('=')}")


def test_a_trial_is_named_by_number_and_sampled_values():
    sampled = {"model.heads": 4, "optim.lr": 0.0012345678, "model.positional": "none"}
    assert trial_name(3, sampled) == "trial-3 model.heads=4 optim.lr=0.00123 model.positional=none"
    assert trial_name(0, {}) == "trial-0"


def test_a_job_names_its_run_and_its_compare_columns(make_cfg):
    cfg = make_cfg(*AGREEMENT, "data.max_distance=20")
    pairs = distinguishing(cfg)
    assert run_name(cfg, pairs) == "model=rnn_classifier data.n_train=256 data.max_distance=20"
    # a group override is compared through its option's param
    assert compare_columns(pairs) == ["choices.model", "data.n_train", "data.max_distance"]


def test_the_view_adds_columns_and_sorts_by_the_objective():
    state = view_state({}, ["choices.model"], "test/acc", minimize=False)
    assert state == {
        "selectedColumns": ["params.`choices.model`", "metrics.`test/acc`"],
        "orderByKey": "metrics.`test/acc`",
        "orderByAsc": False,
    }
    later = view_state(state, ["seed", "choices.model"], "val/error", minimize=True)
    assert later["selectedColumns"] == [
        "params.`choices.model`", "params.`seed`", "metrics.`test/acc`", "metrics.`val/error`"
    ]  # fmt: skip
    assert later["orderByKey"] == "metrics.`val/error`" and later["orderByAsc"] is True


def test_an_experiment_is_tagged_for_training_with_its_view(tracking_uri):
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment("agreement")
    prepare_experiment(client, experiment_id, ["choices.model"], "test/acc", minimize=False)
    prepare_experiment(client, experiment_id, ["seed"], "test/acc", minimize=False)
    tags = client.get_experiment(experiment_id).tags
    assert tags[KIND_TAG] == KIND
    envelope = json.loads(tags[VIEW_TAG])  # the UI's saved-view format
    assert envelope["name"] and envelope["createdAt"] <= envelope["updatedAt"]
    state = json.loads(envelope["state"])
    assert state["selectedColumns"][:2] == ["params.`choices.model`", "params.`seed`"]


def test_addresses():
    base = "http://127.0.0.1:5000"
    assert runs_url(base, "7") == (
        f"{base}/#/experiments/7/runs?workflowType=machine_learning&viewStateShareKey=attnlab"
    )
    assert runs_url(base, "7", view=False).endswith("/7/runs?workflowType=machine_learning")
    assert runs_url(base, None) == f"{base}/#/experiments?workflowType=machine_learning"


def printed_url(capsys, *args: str) -> str:
    main(["ui", "--print-url", *args])
    return capsys.readouterr().out.strip().splitlines()[-1].split(": ", 1)[1]


def test_ui_prints_the_runs_table_of_the_latest_or_named_experiment(capsys, tiny, tracking_uri):
    assert printed_url(capsys).endswith("/#/experiments?workflowType=machine_learning")  # no runs
    main(["train", "-m", "optim.lr=1e-3,3e-3", *tiny, "debug=limit", "logger.log_model=false"])
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], max_results=10)
    assert sorted(r.info.run_name for r in runs) == ["optim.lr=0.001", "optim.lr=0.003"]
    assert sorted(r.data.tags["hydra.job_num"] for r in runs) == ["0", "1"]
    assert {r.data.params["choices.model"] for r in runs} == {"transformer_small"}
    for record in runs:  # per-run folders are a tag, not params that differ between any two runs
        folder = record.data.tags["output_dir"]
        assert not [k for k, v in record.data.params.items() if v.startswith(folder)]
        assert "callbacks.model_checkpoint.monitor" in record.data.params
    state = json.loads(json.loads(experiment.tags[VIEW_TAG])["state"])
    assert state["selectedColumns"] == ["params.`optim.lr`", "metrics.`test/exact_match`"]
    expected = runs_url("http://127.0.0.1:5000", experiment.experiment_id)
    assert printed_url(capsys) == expected
    assert printed_url(capsys, "--experiment", "date_transformer", "--port", "5001") == (
        expected.replace(":5000", ":5001")
    )


def test_a_single_run_is_named_by_its_overrides_and_ui_opens_its_experiment(
    capsys, tiny, tracking_uri
):
    main(["train", *tiny, "debug=limit", "logger.log_model=false", "model.heads=4"])
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("date_transformer")
    (record,) = client.search_runs([experiment.experiment_id], max_results=10)
    name = record.info.run_name  # tiny's overrides and model.heads=4 after its model.heads=2
    assert name.startswith("n_train=256 n_val=32 ") and " heads=4 " in name and "=2 " not in name
    assert "hydra.job_num" not in record.data.tags  # not a multirun
    assert record.data.tags["hydra.overrides"].endswith("logger.log_model=false model.heads=4")
    assert printed_url(capsys) == runs_url("http://127.0.0.1:5000", experiment.experiment_id)


def test_ui_names_the_experiments_when_one_is_unknown(capsys, tracking_uri):
    MlflowClient(tracking_uri).create_experiment("agreement")
    capsys.readouterr()  # MLflow's lines about the new store
    with pytest.raises(SystemExit) as stop:
        main(["ui", "--print-url", "--experiment", "nope"])
    assert stop.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("attnlab: config error: --experiment='nope'") and "agreement" in line


def test_ui_optuna_prints_the_newest_study(capsys, tmp_path):
    storage = f"sqlite:///{tmp_path}/optuna.db"
    with pytest.raises(SystemExit) as stop:
        main(["ui", "--optuna", "--print-url", "--storage", storage])
    assert stop.value.code == 2 and "run `attnlab train -m sweep=...`" in capsys.readouterr().err
    for name in ("first", "second"):
        optuna.create_study(study_name=name, storage=storage)
    assert printed_url(capsys, "--optuna").endswith(":8080/dashboard/studies/2")
    assert printed_url(capsys, "--optuna", "--study", "first").endswith("/dashboard/studies/1")


def test_ui_execs_the_servers_bound_to_loopback(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr("os.execv", lambda program, argv: calls.append(argv))
    main(["ui", "--no-browser", "--workers", "1"])
    optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/optuna.db")
    main(["ui", "--optuna", "--no-browser"])
    mlflow_ui, dashboard = calls
    assert mlflow_ui[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert mlflow_ui[-2:] == ["--workers", "1"] and "127.0.0.1" in mlflow_ui
    assert dashboard[0].endswith("optuna-dashboard")
    assert dashboard[1:] == ["sqlite:///optuna.db", "--host", "127.0.0.1", "--port", "8080"]


def test_ui_opens_a_browser_where_one_exists(monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("os.execv", lambda program, argv: None)
    monkeypatch.setattr("attnlab.commands.ui.browser_available", lambda: True)
    monkeypatch.setattr("attnlab.commands.ui.open_later", lambda url, health: opened.append(health))
    main(["ui", "--no-browser"])
    main(["ui", "--port", "5001"])
    assert opened == ["http://127.0.0.1:5001/health"]


def test_the_browser_opens_once_the_server_answers(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    with ThreadingHTTPServer(("127.0.0.1", 0), Healthy) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        health = f"http://127.0.0.1:{server.server_address[1]}/health"
        open_when_up("http://the/runs/table", health, timeout=10)
        server.shutdown()
    assert opened == ["http://the/runs/table"]
