"""Shortcut baselines: one naming convention over every data module, scores that are right on
examples worked by hand, and the best baseline of a metric found again from logged metrics."""

from __future__ import annotations

import re

import numpy as np
import pytest

from attnlab.core.metric_keys import best_baseline
from attnlab.data.adding import AddingDataModule
from attnlab.data.baselines import (
    classification_baselines,
    copy_source_baselines,
    one_hot,
)
from attnlab.data.dates import DateDataModule
from attnlab.data.images import DigitsDataModule
from attnlab.data.probes import AgreementDataModule, OrderCountDataModule
from attnlab.data.sentiment import PairSentimentDataModule
from attnlab.data.series import SineDataModule
from attnlab.data.symbols import SymbolsDataModule
from attnlab.data.tagging import AmbiguousTaggingDataModule
from attnlab.data.text import CharVocab
from attnlab.tasks.classify import ClassifyTask
from attnlab.tasks.forecast import ForecastTask
from attnlab.tasks.seq2seq import Seq2SeqTask
from attnlab.tasks.tag import TagTask

SMALL = dict(n_train=300, n_val=20, n_test=200)
# Every kind of data that has baselines, and the task whose metrics they stand beside.
DATA = {
    "agreement": (lambda: AgreementDataModule(**SMALL), ClassifyTask),
    "order_count": (lambda: OrderCountDataModule(**SMALL), ClassifyTask),
    "sentiment": (lambda: PairSentimentDataModule(**SMALL), ClassifyTask),
    "digits": (lambda: DigitsDataModule(), ClassifyTask),
    "tagging": (lambda: AmbiguousTaggingDataModule(**SMALL), TagTask),
    "symbols": (lambda: SymbolsDataModule(task="reverse", **SMALL), Seq2SeqTask),
    "dates": (lambda: DateDataModule(**SMALL), Seq2SeqTask),
    "sines": (lambda: SineDataModule(**SMALL), ForecastTask),
    "adding": (lambda: AddingDataModule(length=10, **SMALL), ForecastTask),
}


@pytest.mark.parametrize("name", DATA)
def test_every_baseline_is_named_metric_key_slash_baseline_name(name: str):
    """``<split>/<metric>/<name>`` or ``<split>/<metric>_by_<kind>/<bucket>/<name>``, where
    <metric> is one the task logs: what ``attnlab report`` looks a model's metric up by."""
    make, task = DATA[name]
    data = make()
    data.setup("fit")
    baselines = data.baselines()
    metrics = "|".join(task.metric_names)
    pattern = re.compile(rf"test/({metrics})(_by_[a-z]+/[^/]+)?/[a-z0-9_]+")
    assert baselines
    for key, value in baselines.items():
        assert pattern.fullmatch(key), key
        assert np.isfinite(value), key


def test_sequence_classification_baselines_are_logged_per_bucket():
    data = OrderCountDataModule(question="count", **SMALL)
    data.setup()
    baselines = data.baselines()
    for bucket in data.group_names:  # the count question needs no order: a bag solves it
        assert baselines[f"test/acc_by_group/{bucket}/chance"] == 0.5
        assert baselines[f"test/acc_by_group/{bucket}/bag_of_tokens"] > 0.9
    assert baselines["test/error/bag_of_tokens"] == pytest.approx(
        1 - baselines["test/acc/bag_of_tokens"]
    )


def test_classification_scores_count_a_coin_as_half_right():
    labels = [0, 1, 1, 0]
    predictions = {
        "always_one": one_hot([1, 1, 1, 1], 2),
        "coin": np.full((4, 2), 0.5),
        "right_on_group_0": one_hot([0, 1, 0, 1], 2),
    }
    scores = classification_baselines(predictions, labels, [0, 0, 1, 1], ["a", "b"])
    assert scores["test/acc/always_one"] == 0.5 and scores["test/error/always_one"] == 0.5
    assert scores["test/acc/coin"] == 0.5
    assert scores["test/acc_by_group/a/right_on_group_0"] == 1.0
    assert scores["test/acc_by_group/b/right_on_group_0"] == 0.0


def test_image_baselines_are_chance_and_the_majority_class():
    data = DigitsDataModule()
    data.setup()
    baselines = data.baselines()
    labels = data.datasets["test"].tensors[1]
    majority = int(data.datasets["train"].tensors[1].bincount().argmax())
    assert baselines["test/acc/chance"] == pytest.approx(1 / 10)
    assert baselines["test/error/chance"] == pytest.approx(9 / 10)
    assert baselines["test/acc/majority_class"] == pytest.approx(
        float((labels == majority).float().mean())
    )


def test_copying_the_source_is_scored_as_the_seq2seq_task_scores_output():
    vocab = CharVocab(["abc"])
    scores = copy_source_baselines([("ab", "ba"), ("aa", "aa"), ("abc", "ab")], vocab)
    # targets + EOS: "ba$" "aa$" "ab$" (9 tokens); copies "ab$" "aa$" "abc$" cut to 3: "abc"
    assert scores["test/token_acc/copy_source"] == pytest.approx((1 + 3 + 2) / 9)
    assert scores["test/exact_match/copy_source"] == pytest.approx(1 / 3)
    copy = SymbolsDataModule(task="copy", **SMALL)
    copy.setup()
    assert set(copy.baselines().values()) == {1.0}  # the copy task is its own baseline


def test_date_sources_written_in_iso_are_copied_right():
    data = DateDataModule(**SMALL)
    data.setup()
    iso = np.mean([source == target for source, target in data.splits["test"]])
    assert 0 < iso < 0.2
    assert data.baselines()["test/exact_match/copy_source"] == pytest.approx(iso)


def test_best_baseline_reads_the_direction_from_the_metric():
    logged = {
        "test/acc": 0.9,
        "baseline/test/acc/chance": 0.5,
        "baseline/test/acc/bag_of_tokens": 0.62,
        "baseline/test/acc_by_group/1-4/bag_of_tokens": 0.99,  # another metric key
        "baseline/test/error/chance": 0.5,
        "baseline/test/error/bag_of_tokens": 0.38,
        "baseline/test/mse/repeat_last": 2.0,
        "baseline/test/mse/predict_1": 0.17,
    }
    assert best_baseline(logged, "test/acc") == ("bag_of_tokens", 0.62)
    assert best_baseline(logged, "test/error") == ("bag_of_tokens", 0.38)
    assert best_baseline(logged, "test/mse") == ("predict_1", 0.17)
    assert best_baseline(logged, "test/acc_by_group/1-4") == ("bag_of_tokens", 0.99)
    assert best_baseline(logged, "test/acc", higher_is_better=False) == ("chance", 0.5)
    assert best_baseline(logged, "test/bleu") is None


def test_one_bucket_order_for_plots_and_reports():
    """lt first and ge last within their numbers, numbered buckets by their first number,
    names without a number at the end: the order of every bucket table and bar plot."""
    from attnlab.core.metric_keys import bucket_order

    names = ["ge40", "left", "20-39", "lt20", "plain", "ge15", "5-8", "10-14", "lt10", "1-4"]
    assert sorted(names, key=bucket_order) == [
        "lt10", "lt20", "1-4", "5-8", "10-14", "20-39", "ge15", "ge40", "left", "plain",
    ]  # fmt: skip


def test_the_train_test_gap_needs_both_errors():
    from attnlab.core.metric_keys import train_test_gap

    assert train_test_gap({"test/error": 0.25, "train_eval/error": 0.125}) == 0.125
    assert train_test_gap({"test/error": 0.25}) is None
