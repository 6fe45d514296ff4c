"""Character vocabularies and padding for sequence-to-sequence data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


class CharVocab:
    """Maps characters to ids; ids 0-3 are <pad>, <bos>, <eos>, <unk>."""

    def __init__(self, texts: Iterable[str]):
        chars = sorted({ch for text in texts for ch in text})
        self.itos: list[str] = [*SPECIALS, *chars]
        self.stoi = {token: index for index, token in enumerate(self.itos)}

    pad_id, bos_id, eos_id, unk_id = range(4)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = [self.stoi.get(ch, self.unk_id) for ch in text]
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text, stopping at EOS and dropping the other special tokens."""
        chars = []
        for index in ids:
            if index == self.eos_id:
                break
            if index >= len(SPECIALS):
                chars.append(self.itos[index])
        return "".join(chars)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Ids -> one label per id (special tokens included), for plots."""
        return [self.itos[index] for index in ids]


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> Tensor:
    """List of id lists -> (B, max_len) long tensor right-padded with pad_id."""
    width = max(len(seq) for seq in sequences)
    batch = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        batch[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return batch
