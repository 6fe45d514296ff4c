"""What data, models and tasks promise each other, and nothing more.

A data module publishes one of the ``*Dims`` types after ``setup``; a registered model or task
names the Dims types it can be built from, and its constructor parameters of the same names are
filled from them. Optional abilities of a model or a data module are Protocols, checked with
``isinstance`` where a callback or a task uses them.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn


@dataclass(frozen=True)
class PairDims:
    """Source -> target token sequences (seq2seq)."""

    src_vocab_size: int
    tgt_vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    max_src_len: int
    max_tgt_len: int  # without BOS


@dataclass(frozen=True)
class TokenDims:
    """Token sequences -> one class each; ``group_names`` name the rows' buckets, if any."""

    vocab_size: int
    num_classes: int
    pad_id: int
    max_src_len: int
    group_names: tuple[str, ...] = ()


IGNORE_TAG = -100  # the tag of padding in tagging batches: out of the loss and every metric


@dataclass(frozen=True)
class TaggingDims:
    """Token sequences -> one tag per token; ``group_names`` name the tokens' buckets, if any."""

    vocab_size: int
    num_tags: int
    pad_id: int
    max_src_len: int
    tag_names: tuple[str, ...] = ()
    group_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageDims:
    """Square images -> one class each."""

    in_channels: int
    image_size: int
    num_classes: int


@dataclass(frozen=True)
class SeriesDims:
    """Windows of ``input_len`` steps x ``in_features`` -> the next ``horizon`` steps."""

    in_features: int
    input_len: int
    horizon: int
    target_column: int | None = None  # the input column that is the target, if one is


@runtime_checkable
class AttendsSource(Protocol):
    """A seq2seq model whose encoder-decoder attention can be read out for plots."""

    def cross_attention(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """(B, S), (B, T) -> weights (L, B, H, T, S) of each decoder layer."""
        ...


@runtime_checkable
class AttendsPairs(Protocol):
    """A model whose attention over every pair of positions can be read out for plots."""

    def pair_attention(self, tokens: Tensor) -> Tensor:
        """(B, T) -> weights (B, T, T): row t weighs every position t' (zero on padding)."""
        ...


@runtime_checkable
class DecodesStepwise(Protocol):
    """A seq2seq model that keeps a decoder state: greedy decoding in O(T) steps."""

    def decode_step(self, token: Tensor, memory: Any) -> tuple[Tensor, Any]:
        """token: (B,) -> logits (B, V) and the memory one step further."""
        ...


@runtime_checkable
class HasLayerEnds(Protocol):
    """A model whose first and last layer are named, for gradient norms (notes §5.1)."""

    @property
    def first_layer(self) -> nn.Module: ...

    @property
    def last_layer(self) -> nn.Module: ...


@runtime_checkable
class HasDeletableBlocks(Protocol):
    """A model whose blocks can be deleted one at a time at test time (notes §5.5.3)."""

    def deletable_blocks(self) -> list[int]: ...

    def without_block(self, index: int) -> AbstractContextManager[None]: ...


@runtime_checkable
class HasBaselines(Protocol):
    """Data with chance and shortcut scores to log beside the model's (a task a shortcut solves
    tests nothing): keys ``<metric key>/<baseline name>`` (``test/acc/chance``), logged with
    the prefix ``baseline/`` (attnlab.core.metric_keys.best_baseline reads them back)."""

    def baselines(self) -> dict[str, float]: ...


@runtime_checkable
class HasSourceText(Protocol):
    """Seq2seq data whose test sources can be read back as text (attention plots)."""

    splits: dict[str, list[tuple[str, str]]]
    src_vocab: Any
    tgt_vocab: Any


@runtime_checkable
class HasTokenText(Protocol):
    """Token classification data whose examples (ids, label, group) can be read back as words;
    ``class_names`` name the labels, if they have names."""

    itos: list[str]
    pad_id: int
    examples: dict[str, list[tuple[list[int], int, int]]]
    class_names: tuple[str, ...]


@runtime_checkable
class HasTagText(Protocol):
    """Tagging data whose sentences (ids, tags, groups) can be read back as words and tags."""

    itos: list[str]
    pad_id: int
    tag_names: list[str]
    sentences: dict[str, list[tuple[list[int], list[int], list[int]]]]


@runtime_checkable
class HasPixelScale(Protocol):
    """Image data that says how a raw image becomes a model input: raw values / ``pixel_max``
    (an image of ``native_size``), resized to ``image_size``, standardized, padded by ``pad``;
    ``load`` gives the raw splits back."""

    pixel_max: float
    native_size: int
    image_size: int | None
    pad: int
    mean: Tensor
    std: Tensor
    class_names: tuple[str, ...]

    def load(self) -> dict[str, tuple[Tensor, Tensor]]: ...


@runtime_checkable
class HasSeriesScale(Protocol):
    """Series data that maps standardised values back to the series' units (forecast plots);
    ``mean`` and ``std`` (F,) standardise each input column."""

    datasets: dict[str, Any]
    target_index: int
    input_len: int
    horizon: int
    mean: Any
    std: Any

    def unscale(self, values: Tensor) -> Tensor: ...
