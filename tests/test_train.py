"""End-to-end runs through the real config tree, shrunk to a few seconds each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from attnlab.cli import main
from attnlab.tasks.seq2seq import Seq2SeqTask
from attnlab.training.train import run


def only_run(tracking_uri: str, experiment: str = "date_transformer"):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=10)
    assert len(runs) == 1
    return client, runs[0]


def test_fast_dev_run_without_logger(make_cfg, tiny):
    value = run(make_cfg(*tiny, "debug=fdr", "logger=none"))
    assert 0.0 <= value <= 1.0


def test_limited_run_is_tracked_in_mlflow(make_cfg, tracking_uri, tiny):
    cfg = make_cfg(*tiny, "debug=limit", "+tags.purpose=test")
    value = run(cfg)
    client, record = only_run(tracking_uri)
    assert record.info.status == "FINISHED"
    params = record.data.params
    assert params["model.width"] == "32"
    assert params["optim._target_"] == "torch.optim.AdamW"
    assert params["data.locales.0"] == "en_US"
    assert record.data.tags["purpose"] == "test"
    assert len(record.data.tags["git_commit"]) in (40, len("unknown"))
    assert {"command", "host"} <= set(record.data.tags)
    tags = record.data.tags
    assert tags["mlflow.source.git.commit"] == tags["git_commit"]
    assert tags["version.torch"] == torch.__version__ and tags["version.attnlab"]
    assert {"version.lightning", "version.mlflow", "version.optuna", "version.hydra"} <= set(tags)
    assert int(tags["torch.threads"]) >= 1
    folders = [a.path for a in client.list_artifacts(record.info.run_id) if a.is_dir]
    uploaded = [f.path for d in folders for f in client.list_artifacts(record.info.run_id, d)]
    assert any(path.endswith(".ckpt") for path in uploaded)  # the logger's, run ended by attnlab
    assert params["distributed.accelerator"] == "CPUAccelerator"
    metrics = record.data.metrics
    assert metrics["test/exact_match"] == pytest.approx(value)
    assert 0 < metrics["train/src_padding"] < 1
    assert 0.0 <= metrics["test/bleu"] <= 1.0
    logged = ("train/loss_step", "val/loss", "val/token_acc", "test/token_acc", "lr-AdamW/decay")
    for name in logged:
        assert name in metrics
    history = client.get_metric_history(record.info.run_id, "val/loss")
    assert len(history) == 2  # one point per epoch
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"config.yaml", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(record.info.run_id, "plots")}
    assert plots == {"plots/attention_layer1.png"}  # the tiny model has one decoder layer
    checkpoint_dirs = artifacts - {"config.yaml", "plots", "hydra"}
    assert checkpoint_dirs, artifacts  # best and last checkpoints (Lightning's log_model)
    local = client.download_artifacts(record.info.run_id, "config.yaml")
    assert "width: 32" in Path(local).read_text()


def test_best_checkpoint_loads_into_a_fresh_task(make_cfg, tmp_path, tiny):
    cfg = make_cfg(*tiny, "debug=limit", "logger=none")
    run(cfg)
    best = next((tmp_path / "output" / "checkpoints").glob("epoch*.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert any(key.startswith("model.encoder.") for key in state["state_dict"])
    assert state["hyper_parameters"]["pad_id"] == 0


def test_exception_marks_the_run_failed(make_cfg, tracking_uri, monkeypatch, tiny):
    def broken_test_step(self, batch, batch_idx):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(Seq2SeqTask, "test_step", broken_test_step)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        run(make_cfg(*tiny, "debug=limit"))
    _, record = only_run(tracking_uri)
    assert record.info.status == "FAILED"


def test_ctrl_c_marks_the_run_failed(make_cfg, tracking_uri, monkeypatch, tiny):
    def interrupted(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(Seq2SeqTask, "training_step", interrupted)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run(make_cfg(*tiny, "debug=limit"))
    _, record = only_run(tracking_uri)
    assert record.info.status == "FAILED"


def test_multirun_makes_one_mlflow_run_per_job(tracking_uri, capsys, tiny):
    main(["train", "-m", "optim.lr=1e-3,3e-3", *tiny, "debug=limit", "logger.log_model=false"])
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([exp.experiment_id], max_results=10)
    assert sorted(r.data.params["optim.lr"] for r in runs) == ["0.001", "0.003"]
    assert all(r.info.status == "FINISHED" for r in runs)


def test_cfg_job_prints_the_composed_config(capsys):
    main(["train", "--cfg", "job", "model.heads=8"])
    out = capsys.readouterr().out
    assert "heads: 8" in out and "_target_: attnlab.models.transformer.Seq2SeqTransformer" in out


@pytest.mark.slow
def test_a_compiled_model_trains_and_its_checkpoint_loads_uncompiled(make_cfg, tmp_path):
    cfg = make_cfg("experiment=digits_mlp", "debug=limit", "logger=none", "trainer.compile=true")
    assert 0.0 <= run(cfg) <= 1.0
    (last,) = tmp_path.glob("output/checkpoints/last.ckpt")
    state = torch.load(last, weights_only=True)["state_dict"]
    assert not [key for key in state if "_orig_mod" in key]  # torch.compile's wrapper prefix


def test_the_progress_bar_shows_the_loss_and_the_monitored_metric_not_v_num():
    from types import SimpleNamespace

    from attnlab.training.callbacks import ProgressBar

    trainer = SimpleNamespace(
        loggers=[SimpleNamespace(version="0123456789abcdef")],  # shown as v_num by Lightning
        progress_bar_metrics={},
        callback_metrics={"train/loss_step": torch.tensor(0.51234), "val/acc": torch.tensor(0.9)},
    )
    shown = ProgressBar(monitor="val/acc").get_metrics(trainer, None)
    assert shown == {"train/loss": "0.5123", "val/acc": "0.9"}


@pytest.mark.parametrize("max_epochs, description", [(-1, "Epoch 3"), (5, "Epoch 3/4")])
def test_the_progress_bar_names_the_last_epoch_only_when_there_is_one(max_epochs, description):
    from types import SimpleNamespace

    from attnlab.training.callbacks import ProgressBar

    bar = ProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs)
    assert bar._get_train_description(3).rstrip() == description
