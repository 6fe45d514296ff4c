"""A model registered by a test module alone, as a user's own model file would be: nothing in
conf/, attnlab's sources or the tests' case lists names it (tests/test_registry.py checks that
the registry-parametrised tests pick it up)."""

from __future__ import annotations

from torch import Tensor, nn

from attnlab.core.contracts import TokenDims
from attnlab.core.registry import Settings, register


def check_mean_pool(c: Settings) -> None:
    c.positive("width")


@register("model", "test_mean_pool", check=check_mean_pool, data=(TokenDims,))
class MeanPoolClassifier(nn.Module):
    """Embeddings averaged over the real tokens, then a linear head: a bag of tokens."""

    def __init__(self, vocab_size: int, num_classes: int, pad_id: int = 0, width: int = 32):
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, width, padding_idx=pad_id)
        self.head = nn.Linear(width, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, S) -> logits (B, num_classes)."""
        real = (tokens != self.pad_id)[..., None].float()  # (B, S, 1)
        pooled = (self.embed(tokens) * real).sum(1) / real.sum(1)  # (B, width)
        return self.head(pooled)  # (B, num_classes)
