"""Synthetic tasks: seeded, balanced, free of shortcuts; bucketing cuts padding and shards."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch

from attnlab.core.contracts import TokenDims
from attnlab.data.baselines import bag_of_tokens_accuracy
from attnlab.data.bucketing import BucketBatchSampler, padding_fraction
from attnlab.data.probes import MARK, VERB, A, AgreementDataModule, B, OrderCountDataModule
from attnlab.data.sampling import bucket_ranges
from attnlab.data.sentiment import PairSentimentDataModule
from attnlab.data.symbols import SYMBOL_TASKS, SymbolsDataModule
from attnlab.training.train import run

SMALL = dict(n_train=200, n_val=20, n_test=20)
CLASSIFICATION = {
    "agreement": lambda **kw: AgreementDataModule(**kw),
    "order": lambda **kw: OrderCountDataModule(question="order", **kw),
    "count": lambda **kw: OrderCountDataModule(question="count", **kw),
    "sentiment": lambda **kw: PairSentimentDataModule(**kw),
}


@pytest.mark.parametrize("task, expected", [("copy", "cab"), ("reverse", "bac"), ("sort", "abc")])
def test_symbol_tasks_are_seeded_and_transform_correctly(task: str, expected: str):
    def pairs(seed: int):
        data = SymbolsDataModule(task=task, min_len=3, max_len=9, seed=seed, **SMALL)
        data.setup()
        return data.splits

    assert pairs(1) == pairs(1) and pairs(1) != pairs(2)
    for source, target in pairs(1)["train"]:
        assert 3 <= len(source) <= 9 and set(source) <= set("abcdefghij")
        assert target == SYMBOL_TASKS[task](source)
    assert SYMBOL_TASKS[task]("cab") == expected


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_is_seeded_balanced_and_publishes_dims(name: str):
    def build(seed: int):
        data = CLASSIFICATION[name](n_train=400, n_val=40, n_test=40, seed=seed)
        data.setup()
        return data

    data = build(0)
    assert data.examples == build(0).examples and data.examples != build(1).examples
    dims = data.dims
    assert isinstance(dims, TokenDims) and len(dims.group_names) == len(data.ranges)
    assert dims.num_classes == 2 and dims.pad_id == 0
    labels = torch.tensor([label for _, label, _ in data.examples["train"]])
    groups = torch.tensor([group for _, _, group in data.examples["train"]])
    for group in range(len(dims.group_names)):  # 50% chance within every bucket
        assert labels[groups == group].float().mean() == 0.5
    tokens, batch_labels, batch_groups = next(iter(data.train_dataloader()))
    assert tokens.dtype == torch.long and tokens.shape[0] == 128
    assert tokens.max() < dims.vocab_size and tokens.shape[1] <= dims.max_src_len
    assert batch_labels.shape == batch_groups.shape == (128,)


def test_agreement_distances_fall_in_their_buckets():
    data = AgreementDataModule(**SMALL, bucket_edges=(5, 9, 14, 21))
    data.setup()
    assert data.dims.group_names == ("1-4", "5-8", "9-13", "14-20", "21-40")
    for ids, _, group in data.examples["train"]:
        subject = ids.index(MARK) + 1  # the subject stands right after the marker
        distance = len(ids) - 2 - subject  # tokens between the subject and the verb
        low, high = data.ranges[group]
        assert low <= distance <= high
        assert ids[-1] == VERB and ids.count(MARK) == 1 and ids.count(VERB) == 1


def test_agreement_label_is_the_number_of_the_noun_at_the_subjects_place():
    """A model that reads the subject's place is right on every example, in every split."""
    data = AgreementDataModule(**SMALL)
    data.setup()
    for examples in data.examples.values():
        for ids, label, _ in examples:
            assert data.number(data.subject(ids)) == label
    # ... and the subject is one of the nouns the other places hold, not a token of its own
    subjects = {data.subject(ids) for ids, _, _ in data.examples["train"]}
    others = {t for ids, _, _ in data.examples["train"] for t in ids if data.number(t) is not None}
    assert subjects == others == set(data.nouns[0]) | set(data.nouns[1])


def test_agreement_is_at_chance_for_a_bag_of_tokens_and_the_majority():
    """Overall and in every distance bucket: a logistic regression on token counts and the
    majority number sit within 0.05 of chance (0.5) on the test split; the last noun leans to
    the evening noun, more at short distances; every sequence holds one singular and one plural
    noun more than its attractors."""
    data = AgreementDataModule(n_train=4000, n_val=2, n_test=5000, seed=3)
    data.setup()
    train = [(ids, y) for ids, y, _ in data.examples["train"]]
    test = data.examples["test"]
    assert bag_of_tokens_accuracy(
        train, [(ids, y) for ids, y, _ in test], data.dims.vocab_size
    ) == (pytest.approx(0.5, abs=0.05))
    for group, name in enumerate(data.group_names):
        bucket = [(ids, y) for ids, y, g in test if g == group]
        score = bag_of_tokens_accuracy(train, bucket, data.dims.vocab_size)
        assert score == pytest.approx(0.5, abs=0.05), name
    baselines = data.baselines()
    for metric in ("test/acc", *(f"test/acc_by_group/{name}" for name in data.group_names)):
        assert baselines[f"{metric}/chance"] == 0.5
        for shortcut in ("bag_of_tokens", "majority"):
            assert baselines[f"{metric}/{shortcut}"] == pytest.approx(0.5, abs=0.05), metric
    last_noun = [baselines[f"test/acc_by_group/{name}/last_noun"] for name in data.group_names]
    assert 0.25 < last_noun[0] < last_noun[-1] < 0.5
    for ids, label, _ in test:
        numbers = [data.number(t) for t in ids if data.number(t) is not None]
        assert numbers.count(label) >= 1 and numbers.count(1 - label) >= 1
    # the nouns after the subject are coins but for the evening noun, when it falls there
    numbers = [
        data.number(token) == label
        for ids, label, _ in test
        for token in ids[ids.index(MARK) + 2 :]
        if data.number(token) is not None
    ]
    assert 0.4 < sum(numbers) / len(numbers) < 0.5


def test_agreement_diagnostic_buckets_give_every_other_noun_the_opposite_number():
    """With ``diagnostic``, the test split alone gains attracted_<bucket> copies, where every
    noun but the subject has the opposite number: the last noun and the majority are wrong
    there; train and validation keep the plain buckets only."""
    data = AgreementDataModule(n_train=400, n_val=40, n_test=4000, seed=3, diagnostic=True)
    data.setup()
    plain = [f"{low}-{high}" for low, high in data.ranges]
    assert data.dims.group_names == (*plain, *(f"attracted_{name}" for name in plain))
    for split in ("train", "val"):
        assert {group for _, _, group in data.examples[split]} == set(range(len(plain)))
    for ids, label, group in data.examples["test"]:
        assert data.number(data.subject(ids)) == label  # the subject still decides
        subject = ids.index(MARK) + 1
        others = {data.number(t) for t in ids[:subject] + ids[subject + 1 :]} - {None}
        assert others == {1 - label} if group >= len(plain) else 1 - label in others
    baselines = data.baselines()
    for name in plain:  # the majority ties (a coin) where the evening noun is the only other noun
        assert baselines[f"test/acc_by_group/attracted_{name}/last_noun"] == 0.0
        assert baselines[f"test/acc_by_group/attracted_{name}/majority"] < 0.15


def test_order_and_count_questions():
    order = OrderCountDataModule(question="order", **SMALL)
    order.setup()
    for ids, label, _ in order.examples["train"]:
        assert ids.count(A) == ids.count(B) == 1
        assert (ids.index(A) < ids.index(B)) == bool(label)
    count = OrderCountDataModule(question="count", **SMALL)
    count.setup()
    for ids, label, _ in count.examples["train"]:
        assert min(ids.count(A), ids.count(B)) >= 1 and ids.count(A) != ids.count(B)
        assert (ids.count(A) > ids.count(B)) == bool(label)


def test_lengths_beyond_the_trained_ones_are_drawn_in_the_test_split_alone():
    data = OrderCountDataModule(
        question="order", min_len=8, max_len=32, bucket_edges=(), test_max_len=64, **SMALL
    )
    data.setup()
    assert data.group_names == ["8-32", "33-64"] and data.dims.max_src_len > 32
    for split in ("train", "val"):
        assert all(len(ids) <= 32 and group == 0 for ids, _, group in data.examples[split])
    test = data.examples["test"]
    assert {group for *_, group in test} == {0, 1}
    assert all((len(ids) > 32) == (group == 1) and len(ids) <= 64 for ids, _, group in test)
    for group in (0, 1):  # labels balanced in each bucket: chance is 0.5 there too
        labels = [label for _, label, g in test if g == group]
        assert sum(labels) * 2 == len(labels)
    plain = OrderCountDataModule(question="order", min_len=8, max_len=32, bucket_edges=(), **SMALL)
    plain.setup()  # without test_max_len: the same train and validation draws
    assert plain.examples["train"] == data.examples["train"]
    assert plain.examples["val"] == data.examples["val"]


def test_bucket_ranges_and_bad_edges():
    assert bucket_ranges(8, 32, [16, 24]) == [(8, 15), (16, 23), (24, 32)]
    for edges in ([9, 5], [1, 5], [5, 41]):
        with pytest.raises(ValueError, match="bucket edges"):
            bucket_ranges(1, 40, edges)


def padding_of(data: SymbolsDataModule) -> float:
    batches = list(data.train_dataloader())
    return sum(padding_fraction(b.src) * b.src.numel() for b in batches) / sum(
        b.src.numel() for b in batches
    )


def test_bucketing_cuts_padding():
    common = dict(min_len=5, max_len=60, n_train=2000, n_val=10, n_test=10, batch_size=32)
    plain, bucketed = SymbolsDataModule(**common), SymbolsDataModule(**common, bucketing=True)
    plain.setup()
    bucketed.setup()
    with_buckets, without = padding_of(bucketed), padding_of(plain)
    assert with_buckets < 0.10 and with_buckets < without / 4, (with_buckets, without)
    seen = sorted(i for batch in bucketed.train_dataloader().batch_sampler for i in batch)
    assert seen == list(range(2000))


@pytest.mark.parametrize("n, batch_size, replicas", [(1000, 32, 2), (999, 7, 3), (5, 1, 2)])
def test_bucket_shards_are_disjoint_complete_and_equal(n: int, batch_size: int, replicas: int):
    lengths = torch.randint(1, 40, (n,), generator=torch.Generator().manual_seed(0)).tolist()
    samplers = [
        BucketBatchSampler(lengths, batch_size, seed=7, num_replicas=replicas, rank=rank)
        for rank in range(replicas)
    ]
    for sampler in samplers:
        sampler.set_epoch(3)
    shards = [[i for batch in sampler for i in batch] for sampler in samplers]
    assert sorted(i for shard in shards for i in shard) == list(range(n))  # disjoint, complete
    assert len({len(list(sampler)) for sampler in samplers}) == 1  # equal batch counts
    assert all(len(list(sampler)) == len(sampler) for sampler in samplers)
    for batch in samplers[0]:
        assert len(batch) <= batch_size


def test_bucket_order_changes_with_the_epoch_lightning_sets():
    sampler = BucketBatchSampler(list(range(1, 200)), batch_size=8, boundaries=[50, 100, 150])
    loader = torch.utils.data.DataLoader(range(199), batch_sampler=sampler)
    first = list(sampler)
    _set_sampler_epoch(loader, 1)  # what Lightning's fit loop calls at every epoch
    assert sampler.epoch == 1 and list(sampler) != first
    _set_sampler_epoch(loader, 0)
    assert list(sampler) == first
    for batch in first:  # boundaries keep every batch inside one bucket (index i: length i + 1)
        assert len({(index + 1) // 50 for index in batch}) == 1


def test_attention_seq2seq_trains_on_reverse_through_the_config_tree(make_cfg):
    cfg = make_cfg(
        "~experiment", "data=reverse", "model=attention_seq2seq", "debug=fdr", "logger=none",
        "data.n_train=64", "data.n_val=16", "data.n_test=16", "data.batch_size=16",
        "data.bucketing=true", "model.width=16", "model.emb_dim=8", "task.beam_width=2",
        "callbacks.progress_bar=null", "callbacks.model_summary=null",
    )  # fmt: skip
    assert 0.0 <= run(cfg) <= 1.0


def test_a_tracked_run_logs_the_data_baselines(make_cfg, tracking_uri):
    from mlflow import MlflowClient

    from attnlab.training.train import run

    run(make_cfg("experiment=order_count", "debug=limit", "data.n_train=256", "data.n_val=64",
                 "data.n_test=64", "logger.log_model=false"))  # fmt: skip
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("order_count")
    (record,) = client.search_runs([experiment.experiment_id], max_results=2)
    assert record.data.metrics["baseline/test/acc/chance"] == 0.5
    assert "baseline/test/acc/bag_of_tokens" in record.data.metrics
    assert "baseline/test/acc_by_group/8-15/bag_of_tokens" in record.data.metrics
    assert "test/acc" in record.data.metrics
