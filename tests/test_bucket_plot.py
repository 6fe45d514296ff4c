"""The per-bucket bar chart: its figure, bucket order, and the artifact of a tracked run."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
from mlflow import MlflowClient

from attnlab.core.metric_keys import bucket_metrics, bucket_order
from attnlab.core.plots import bucket_bars
from attnlab.training import callbacks
from attnlab.training.callbacks import BucketPlot
from attnlab.training.train import run

QUIET = ["callbacks.progress_bar=null", "callbacks.model_summary=null"]


def heights(fig) -> list[float]:
    return [bar.get_height() for bar in fig.axes[0].patches]


def test_bar_heights_and_labels_are_the_given_values():
    fig = bucket_bars(["lt10", "10-14", "ge15"], [0.9, 0.5, 0.25], "test/exact_match", "len")
    assert heights(fig) == [0.9, 0.5, 0.25]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["lt10", "10-14", "ge15"]
    assert fig.axes[0].get_ylim() == (0.0, 1.05)  # rates share one axis
    fig = bucket_bars(["a", "b"], [3.0, 7.5], "test/mse", "kind")
    assert heights(fig) == [3.0, 7.5] and fig.axes[0].get_ylim()[1] > 7.5


def test_buckets_are_found_by_name_and_sorted_naturally():
    logged = {
        "test/exact_match_by_len/ge40": torch.tensor(0.1),
        "test/exact_match_by_len/lt20": torch.tensor(0.9),
        "test/exact_match_by_len/20-39": torch.tensor(0.5),
        "test/acc_by_group/14-20": 0.7,
        "test/acc_by_group/5-8": 0.9,
        "test/acc_by_group/21-40": 0.6,
        "test/acc_by_group/1-4": 1.0,
        "test/exact_match": 0.5,  # no bucket
        "test/member0/acc": 0.5,  # an ensemble member, not a bucket
        "val/acc_by_group/1-4": 0.2,  # validation: not plotted
    }
    found = bucket_metrics(logged)
    assert set(found) == {("exact_match", "len"), ("acc", "group")}
    assert sorted(found["exact_match", "len"], key=bucket_order) == ["lt20", "20-39", "ge40"]
    assert sorted(found["acc", "group"], key=bucket_order) == ["1-4", "5-8", "14-20", "21-40"]
    assert found["exact_match", "len"]["lt20"] == pytest.approx(0.9)


def test_without_bucket_metrics_it_says_so_and_draws_nothing(caplog, tmp_path):
    trainer = SimpleNamespace(callback_metrics={"test/exact_match": 1.0}, loggers=[])
    with caplog.at_level(logging.INFO):
        BucketPlot(output_dir=str(tmp_path)).on_test_end(trainer, None)
    assert "BucketPlot: no test/<metric>_by_<kind>/<bucket> metrics" in caplog.text
    assert not any(tmp_path.iterdir())


TINY_RUNS = {
    "copy": (
        ["experiment=copy", "data.n_train=128", "data.n_val=32", "data.n_test=64",
         "data.batch_size=32", "model.width=16", "model.emb_dim=8",
         "callbacks.attention_maps=null"],
        ["token_acc_by_len", "exact_match_by_len", "bleu_by_len"],
    ),
    "order_count": (
        ["experiment=order_count", "data.n_train=128", "data.n_val=32", "data.n_test=64",
         "data.batch_size=32", "model.width=16", "model.ff_width=32"],
        ["acc_by_group"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", TINY_RUNS)
def test_tracked_run_logs_the_bars_of_its_bucket_metrics(
    name: str, make_cfg, tracking_uri, monkeypatch, tmp_path
):
    overrides, families = TINY_RUNS[name]
    drawn = {}

    def spy(buckets, values, title, *args):
        fig = bucket_bars(buckets, values, title, *args)
        drawn[title] = (buckets, heights(fig))
        return fig

    monkeypatch.setattr(callbacks, "bucket_bars", spy)
    run(make_cfg(*overrides, "debug=limit", "logger.log_model=false", *QUIET))
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    (record,) = client.search_runs([experiment.experiment_id], max_results=2)
    plots = {a.path for a in client.list_artifacts(record.info.run_id, "plots")}
    assert len(drawn) == len(families)  # one chart per metric and kind of bucket
    for family in families:
        artifact = f"plots/{family}.png"
        assert artifact in plots
        assert (tmp_path / "output" / artifact).is_file()
        buckets, bars = drawn["test/" + family.replace("_by_", " by ")]
        logged = [record.data.metrics[f"test/{family}/{b}"] for b in buckets]
        assert bars == pytest.approx(logged)
        assert sorted(buckets, key=bucket_order) == buckets and len(buckets) == 3
