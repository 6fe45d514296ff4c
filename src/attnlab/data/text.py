"""Vocabularies, tokenizers, padding and tab-separated parallel corpora for seq2seq data."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from attnlab.core.errors import ConfigError

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
WORD_PATTERN = re.compile(r"\w+|[^\w\s]")  # runs of letters/digits, or one punctuation mark


def char_tokens(text: str) -> list[str]:
    return list(text)


def word_tokens(text: str) -> list[str]:
    """Split on whitespace and around punctuation: "Don't go." -> Don ' t go ."""
    return WORD_PATTERN.findall(text)


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"char": char_tokens, "word": word_tokens}
JOINERS = {"char": "", "word": " "}


class Vocab:
    """Maps tokens to ids; ids 0-3 are <pad>, <bos>, <eos>, <unk>.

    Built from ``texts`` split by ``tokenizer`` ("char" or "word"); tokens seen fewer than
    ``min_freq`` times are left out and encode as <unk>.
    """

    pad_id, bos_id, eos_id, unk_id = range(4)

    def __init__(self, texts: Iterable[str], tokenizer: str = "char", min_freq: int = 1):
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer={tokenizer!r}: one of {', '.join(TOKENIZERS)}")
        self.tokenizer = tokenizer
        counts = Counter(token for text in texts for token in self.tokenize(text))
        kept = sorted(token for token, count in counts.items() if count >= min_freq)
        self.itos: list[str] = [*SPECIALS, *kept]
        self.stoi = {token: index for index, token in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def state(self) -> dict[str, str | list[str]]:
        """Plain values that rebuild this vocabulary with ``Vocab.from_state``."""
        return {"tokenizer": self.tokenizer, "tokens": list(self.itos)}

    @classmethod
    def from_state(cls, state: dict[str, str | list[str]]) -> Vocab:
        """The vocabulary ``state()`` described, ids unchanged."""
        vocab = cls.__new__(cls)
        vocab.tokenizer = state["tokenizer"]
        vocab.itos = list(state["tokens"])
        vocab.stoi = {token: index for index, token in enumerate(vocab.itos)}
        return vocab

    def tokenize(self, text: str) -> list[str]:
        return TOKENIZERS[self.tokenizer](text)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = [self.stoi.get(token, self.unk_id) for token in self.tokenize(text)]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at EOS and dropping the other special tokens.

        Words are joined by single spaces, so word-level text comes back normalised.
        """
        tokens = []
        for index in ids:
            if index == self.eos_id:
                break
            if index >= len(SPECIALS):
                tokens.append(self.itos[index])
        return JOINERS[self.tokenizer].join(tokens)


class CharVocab(Vocab):
    """Every character of ``texts``; ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, texts: Iterable[str]):
        super().__init__(texts, tokenizer="char")


def read_parallel_corpus(path: str | Path) -> list[tuple[str, str]]:
    """``source<TAB>target`` lines -> pairs; blank lines are skipped, columns after the second
    (such as an attribution) are ignored. Mistakes raise ConfigError naming ``data.path``.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError("data.path", str(path), "an existing file of source<TAB>target lines")
    try:
        lines = file.read_text(encoding="utf-8").split("\n")  # numbered as editors do
    except UnicodeDecodeError:
        raise ConfigError("data.path", str(path), "a UTF-8 text file") from None
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            allowed = f"source<TAB>target on every line; line {number} has no tab"
            raise ConfigError("data.path", str(path), allowed)
        source, target = line.rstrip("\r").split("\t")[:2]
        if not source.strip() or not target.strip():
            allowed = f"a source and a target on every line; line {number} has an empty one"
            raise ConfigError("data.path", str(path), allowed)
        pairs.append((source, target))
    if not pairs:
        raise ConfigError("data.path", str(path), "a corpus of at least one source<TAB>target line")
    return pairs


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> Tensor:
    """List of id lists -> (B, max_len) long tensor right-padded with pad_id."""
    width = max(len(seq) for seq in sequences)
    batch = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return batch
