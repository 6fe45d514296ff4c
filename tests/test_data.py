"""The date data set: seeded, disjoint splits, correct targets, many languages."""

from __future__ import annotations

import datetime as dt

import torch

from attnlab.data.dates import DateDataModule, make_date_pairs
from attnlab.data.text import CharVocab

SIZES = {"train": 400, "val": 50, "test": 50}


def test_pairs_are_seeded():
    assert make_date_pairs(SIZES, seed=3) == make_date_pairs(SIZES, seed=3)
    assert make_date_pairs(SIZES, seed=3) != make_date_pairs(SIZES, seed=4)


def test_splits_hold_disjoint_days():
    pairs = make_date_pairs(SIZES, seed=0)
    days = {split: {target for _, target in split_pairs} for split, split_pairs in pairs.items()}
    assert {split: len(d) for split, d in days.items()} == SIZES  # no day twice in a split
    assert not days["train"] & days["val"]
    assert not days["train"] & days["test"]
    assert not days["val"] & days["test"]


def test_targets_are_iso_dates_written_in_the_source():
    for source, target in make_date_pairs(SIZES, seed=1)["train"]:
        day = dt.date.fromisoformat(target)
        assert str(day.year) in source, (source, target)


def test_sources_span_scripts_and_languages():
    sources = [s for s, _ in make_date_pairs({"train": 2000}, seed=0)["train"]]
    text = " ".join(sources)
    assert "年" in text  # zh / ja
    assert any("\u0400" <= ch <= "\u04ff" for ch in text)  # Cyrillic (ru)
    assert any(month in text for month in ("novembre", "November", "noviembre", "novembro"))
    assert any("/" in s for s in sources) and any("." in s for s in sources)


def test_datamodule_publishes_dims_and_batches():
    data = DateDataModule(n_train=200, n_val=20, n_test=20, batch_size=16)
    data.setup("fit")
    dims = data.dims
    assert dims.pad_id == 0 and dims.bos_id == 1 and dims.eos_id == 2
    assert dims.max_tgt_len == len("2026-11-27") + 1
    batch = next(iter(data.train_dataloader()))
    assert batch.src.shape[0] == 16 and batch.src.shape[1] <= dims.max_src_len
    assert batch.tgt_in.shape == batch.tgt_out.shape == (16, dims.max_tgt_len)
    assert (batch.tgt_in[:, 0] == dims.bos_id).all()
    assert ((batch.tgt_out == dims.eos_id).sum(1) == 1).all()
    # teacher forcing: the output sequence is the input shifted by one
    assert torch.equal(
        batch.tgt_in[:, 1:], batch.tgt_out[:, :-1].masked_fill(batch.tgt_out[:, :-1] == 2, 0)
    )


def test_vocab_round_trip_and_unknown_characters():
    vocab = CharVocab(["2026-11-27"])
    ids = vocab.encode("2026-11-27", add_bos=True, add_eos=True)
    assert vocab.decode(ids) == "2026-11-27"
    assert vocab.encode("x") == [vocab.unk_id]
