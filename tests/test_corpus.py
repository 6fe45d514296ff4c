"""The parallel-corpus reader: tokenizers, min_freq, seeded splits and one-line mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.core.errors import ConfigError
from attnlab.data.corpus import CorpusDataModule
from attnlab.data.text import CharVocab, Vocab, read_parallel_corpus, word_tokens

SAMPLE = [
    ("Go.", "Va !"),
    ("Run!", "Cours !"),
    ("I see.", "Je vois."),
    ("I run.", "Je cours."),
    ("I won!", "J'ai gagné !"),
    ("Go on.", "Poursuis."),
    ("I know.", "Je sais."),
    ("I see you.", "Je te vois."),
    ("Help!", "À l'aide !"),
    ("Stop!", "Arrête !"),
]


def write_corpus(path: Path, pairs=SAMPLE, extra: str = "") -> str:
    lines = [f"{s}\t{t}\tCC-BY 2.0 (France) attribution" for s, t in pairs]
    path.write_text("\n".join(lines) + "\n\n" + extra, encoding="utf-8")
    return str(path)


def test_reader_keeps_two_columns_and_skips_blank_lines(tmp_path: Path):
    assert read_parallel_corpus(write_corpus(tmp_path / "c.tsv")) == SAMPLE


def test_word_tokenizer_splits_whitespace_and_punctuation():
    assert word_tokens("J'ai gagné !  Go.") == ["J", "'", "ai", "gagné", "!", "Go", "."]


def test_char_and_word_vocabularies():
    sources = [s for s, _ in SAMPLE]
    chars = Vocab(sources, tokenizer="char")
    assert chars.itos == CharVocab(sources).itos
    assert chars.decode(chars.encode("I see.", add_bos=True, add_eos=True)) == "I see."
    words = Vocab(sources, tokenizer="word")
    assert {"I", "see", ".", "!", "Go"} <= set(words.itos)
    assert len(words.encode("I see you.")) == 4
    assert words.decode(words.encode("I see you.")) == "I see you ."


def test_min_freq_sends_rare_tokens_to_unk():
    sources = [s for s, _ in SAMPLE]
    vocab = Vocab(sources, tokenizer="word", min_freq=2)
    assert set(vocab.itos[4:]) == {"I", ".", "!", "Go", "see"}
    assert vocab.encode("I won!") == [vocab.stoi["I"], vocab.unk_id, vocab.stoi["!"]]


@pytest.mark.parametrize("tokenizer", ["char", "word"])
def test_datamodule_splits_are_seeded_and_disjoint(tmp_path: Path, tokenizer: str):
    path = write_corpus(tmp_path / "c.tsv")
    options = dict(tokenizer=tokenizer, val_fraction=0.2, test_fraction=0.2, batch_size=4)
    data = CorpusDataModule(path, seed=1, **options)
    data.setup("fit")
    again = CorpusDataModule(path, seed=1, **options)
    again.setup("fit")
    assert data.splits == again.splits
    sizes = {name: len(pairs) for name, pairs in data.splits.items()}
    assert sizes == {"train": 6, "val": 2, "test": 2}
    assert sorted(p for pairs in data.splits.values() for p in pairs) == sorted(SAMPLE)
    dims = data.dims
    longest = max(len(data.src_vocab.tokenize(s)) for s, _ in SAMPLE)
    assert dims.max_src_len == longest
    batch = next(iter(data.train_dataloader()))
    assert batch.src.shape[0] == 4 and batch.tgt_in.shape == batch.tgt_out.shape


def test_line_without_a_tab_names_the_line(tmp_path: Path):
    path = write_corpus(tmp_path / "c.tsv", extra="Hello there\n")
    with pytest.raises(ConfigError, match="line 12 has no tab") as error:
        read_parallel_corpus(path)
    assert error.value.key == "data.path" and "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["", "\n \n"], ids=["empty", "blank lines"])
def test_empty_corpus_is_a_config_error(tmp_path: Path, text: str):
    path = tmp_path / "empty.tsv"
    path.write_text(text)
    with pytest.raises(ConfigError, match="at least one source<TAB>target line"):
        CorpusDataModule(str(path)).setup("fit")


def test_missing_file_and_too_few_pairs(tmp_path: Path):
    with pytest.raises(ConfigError, match="data.path=.*an existing file"):
        read_parallel_corpus(tmp_path / "nope.tsv")
    path = write_corpus(tmp_path / "c.tsv", pairs=SAMPLE[:3])
    with pytest.raises(ConfigError, match="3 pairs give"):
        CorpusDataModule(path).setup("fit")


def test_line_with_an_empty_side_names_the_line(tmp_path: Path):
    path = tmp_path / "pairs.tsv"
    path.write_text("hello\tbonjour\n\tvide\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2 has an empty one"):
        read_parallel_corpus(path)
