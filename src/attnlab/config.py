"""Structured-config schemas (types, ranges, cross-field rules) registered in Hydra's ConfigStore.

YAML files in conf/ name their schema in their defaults list (``/schema/<group>/<name>@_here_``),
so OmegaConf checks types and unknown keys while composing. Ranges and rules that span fields
live in ``__post_init__``, which runs when ``validate`` turns each node into its dataclass.

``register_schemas`` also registers one OmegaConf resolver, ``lr_for_batch``: the linear
scaling rule, e.g. ``optim.lr: ${lr_for_batch:0.1,${data.batch_size},128}`` gives 0.1 at a
batch of 128 and 0.025 at 32.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import MISSING, DictConfig, OmegaConf

from attnlab.errors import ConfigError


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(key, value, "must be > 0")


def _non_negative(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(key, value, "must be >= 0")


def _probability(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(key, value, "must be in [0, 1)")


def _one_of(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(key, value, f"one of {', '.join(map(str, allowed))}")


def _sequence_norm(value: str) -> None:
    from attnlab.models.norms import SEQUENCE_NORMS

    _one_of("model.norm", value, SEQUENCE_NORMS)


@dataclass
class DatesData:
    _target_: str = "attnlab.data.dates.DateDataModule"
    n_train: int = 20000
    n_val: int = 1000
    n_test: int = 2000
    locales: list[str] = field(default_factory=list)
    year_min: int = 1900
    year_max: int = 2099
    seed: int = 0
    batch_size: int = 128
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "batch_size"):
            _positive(f"data.{name}", getattr(self, name))
        _non_negative("data.num_workers", self.num_workers)
        if not 1 <= self.year_min <= self.year_max <= 9999:
            raise ConfigError("data.year_max", self.year_max, f">= data.year_min={self.year_min}")
        n_days = (dt.date(self.year_max, 12, 31) - dt.date(self.year_min, 1, 1)).days + 1
        total = self.n_train + self.n_val + self.n_test
        if total > n_days:
            raise ConfigError(
                "data.n_train", self.n_train, f"train+val+test <= {n_days} days in the year range"
            )
        from babel import Locale, UnknownLocaleError

        if not self.locales:
            raise ConfigError("data.locales", self.locales, "at least one CLDR locale")
        for locale in self.locales:
            try:
                Locale.parse(locale)
            except (UnknownLocaleError, ValueError):
                allowed = "a CLDR locale such as en_US, fr, zh"
                raise ConfigError("data.locales", locale, allowed) from None


@dataclass
class Transformer:
    _target_: str = "attnlab.models.transformer.Seq2SeqTransformer"
    d_model: int = 128
    heads: int = 4
    enc_layers: int = 2
    dec_layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    norm_first: bool = False
    positional: str = "sinusoidal"
    max_len: int = 512
    tie_embeddings: bool = False
    norm: str = "layer"

    def __post_init__(self) -> None:
        for name in ("enc_layers", "dec_layers"):
            _positive(f"model.{name}", getattr(self, name))
        _transformer_checks(self)


def _transformer_checks(model: Any) -> None:
    """Sizes, d_model % heads, dropout, positional encoding and norm of any Transformer schema."""
    from attnlab.models.transformer import NORMS

    for name in ("d_model", "heads", "d_ff", "max_len"):
        _positive(f"model.{name}", getattr(model, name))
    if model.d_model % model.heads:
        raise ConfigError("model.heads", model.heads, f"a divisor of model.d_model={model.d_model}")
    if model.d_model % 2:
        raise ConfigError("model.d_model", model.d_model, "an even number (sin/cos pairs)")
    _probability("model.dropout", model.dropout)
    _one_of("model.positional", model.positional, ("sinusoidal", "learned", "none"))
    _one_of("model.norm", model.norm, NORMS)


@dataclass
class ImageData:
    """Shared keys of the image data modules (attnlab.data.images)."""

    _target_: str = "attnlab.data.images.DigitsDataModule"
    val_fraction: float = 0.1
    train_fraction: float = 1.0
    image_size: Any = None  # resize to image_size x image_size; null keeps the native size
    pad: int = 0
    random_crop_padding: int = 0
    hflip: bool = False
    gaussian_noise: float = 0.0
    seed: int = 0
    batch_size: int = 128
    num_workers: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError("data.val_fraction", self.val_fraction, "must be in (0, 1)")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError("data.train_fraction", self.train_fraction, "must be in (0, 1]")
        if self.image_size is not None and (
            not isinstance(self.image_size, int) or self.image_size < 1
        ):
            raise ConfigError("data.image_size", self.image_size, "a positive integer or null")
        for name in ("pad", "random_crop_padding", "gaussian_noise", "num_workers"):
            _non_negative(f"data.{name}", getattr(self, name))
        _positive("data.batch_size", self.batch_size)


@dataclass
class DigitsData(ImageData):
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError("data.test_fraction", self.test_fraction, "must be in (0, 1)")


@dataclass
class CIFAR10Data(ImageData):
    _target_: str = "attnlab.data.images.CIFAR10DataModule"
    data_dir: str = "data/cifar10"


@dataclass
class MNISTData(ImageData):
    _target_: str = "attnlab.data.images.MNISTDataModule"
    data_dir: str = "data/mnist"
    dataset: str = "mnist"

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of("data.dataset", self.dataset, ("mnist", "fashion_mnist"))


@dataclass
class ResNet:
    _target_: str = "attnlab.models.resnet.ResNet"
    depth: int = 20
    unit: str = "v1"
    shortcut: str = "identity"
    norm: str = "batch"
    groups: int = 8
    width_multiplier: float = 1.0
    shortcut_scale: float = 0.5
    shortcut_dropout: float = 0.5

    def __post_init__(self) -> None:
        from attnlab.models.norms import NORMS
        from attnlab.models.resnet import SHORTCUTS, UNITS, blocks_per_stage, stage_channels

        try:
            blocks_per_stage(self.depth)
        except ValueError:
            allowed = "6n + 2 (8, 14, 20, 32, 56, 110 ...)"
            raise ConfigError("model.depth", self.depth, allowed) from None
        _one_of("model.unit", self.unit, UNITS)
        _one_of("model.shortcut", self.shortcut, SHORTCUTS)
        _one_of("model.norm", self.norm, NORMS)
        _positive("model.width_multiplier", self.width_multiplier)
        _positive("model.groups", self.groups)
        channels = stage_channels(self.width_multiplier)
        if self.norm == "group" and any(c % self.groups for c in channels):
            raise ConfigError(
                "model.groups",
                self.groups,
                f"a divisor of every stage's channels {list(channels)} "
                f"(model.width_multiplier={self.width_multiplier})",
            )
        _non_negative("model.shortcut_scale", self.shortcut_scale)
        _probability("model.shortcut_dropout", self.shortcut_dropout)


@dataclass
class MLP:
    _target_: str = "attnlab.models.mlp.MLP"
    width: int = 256
    depth: int = 2
    dropout: float = 0.0
    norm: str = "none"
    width_multiplier: float = 1.0

    def __post_init__(self) -> None:
        from attnlab.models.mlp import MLP_NORMS

        _positive("model.width", self.width)
        _non_negative("model.depth", self.depth)
        _probability("model.dropout", self.dropout)
        _one_of("model.norm", self.norm, MLP_NORMS)
        _positive("model.width_multiplier", self.width_multiplier)


@dataclass
class SeriesData:
    """Shared keys of the sequence regression data modules (attnlab.data.series)."""

    _target_: str = "attnlab.data.series.SineDataModule"
    input_len: int = 48
    horizon: int = 12
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        for name in ("input_len", "horizon", "batch_size"):
            _positive(f"data.{name}", getattr(self, name))
        _non_negative("data.num_workers", self.num_workers)


@dataclass
class SinesData(SeriesData):
    n_train: int = 4000
    n_val: int = 500
    n_test: int = 500
    noise_std: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_train", "n_val", "n_test"):
            _positive(f"data.{name}", getattr(self, name))
        _non_negative("data.noise_std", self.noise_std)


def _split_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"data.{name}", value, "must be in (0, 1)")
    if val_fraction + test_fraction >= 1.0:
        allowed = f"< 1 - data.val_fraction={val_fraction}, leaving rows to train on"
        raise ConfigError("data.test_fraction", test_fraction, allowed)


@dataclass
class TableSeriesData(SeriesData):
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        super().__post_init__()
        _split_fractions(self.val_fraction, self.test_fraction)


@dataclass
class PricesData(TableSeriesData):
    _target_: str = "attnlab.data.series.PricesDataModule"
    n_steps: int = 3000
    seed: int = 0
    target: str = "Close"
    features: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        from attnlab.data.series import PRICE_COLUMNS, split_sizes

        _one_of("data.target", self.target, PRICE_COLUMNS)
        for name in self.features:
            _one_of("data.features", name, PRICE_COLUMNS)
        sizes = split_sizes(self.n_steps, self.val_fraction, self.test_fraction)
        span = self.input_len + self.horizon
        if min(sizes.values()) < span:
            allowed = f"one window of data.input_len + data.horizon = {span} steps in each split"
            raise ConfigError("data.n_steps", self.n_steps, f"{allowed}; it gives {sizes}")


@dataclass
class CSVPricesData(TableSeriesData):
    _target_: str = "attnlab.data.series.CSVPricesDataModule"
    csv_path: str = MISSING
    target: str = "Close"
    features: list[str] = field(default_factory=list)
    date_column: Any = "Date"  # null: keep the file's row order


@dataclass
class StatsmodelsSeriesData(TableSeriesData):
    _target_: str = "attnlab.data.series.StatsmodelsSeriesDataModule"
    name: str = "sunspots"

    def __post_init__(self) -> None:
        super().__post_init__()
        from attnlab.data.series import STATSMODELS_SERIES

        _one_of("data.name", self.name, tuple(STATSMODELS_SERIES))


@dataclass
class AddingData:
    _target_: str = "attnlab.data.series.AddingDataModule"
    length: int = 100
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.length < 2:
            raise ConfigError("data.length", self.length, ">= 2 (one marker in each half)")
        for name in ("n_train", "n_val", "n_test", "batch_size"):
            _positive(f"data.{name}", getattr(self, name))
        _non_negative("data.num_workers", self.num_workers)


@dataclass
class CorpusData:
    _target_: str = "attnlab.data.corpus.CorpusDataModule"
    path: str = MISSING
    tokenizer: str = "word"
    min_freq: int = 1
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        _one_of("data.tokenizer", self.tokenizer, ("char", "word"))
        _positive("data.min_freq", self.min_freq)
        _split_fractions(self.val_fraction, self.test_fraction)
        _positive("data.batch_size", self.batch_size)
        _non_negative("data.num_workers", self.num_workers)


@dataclass
class RNNForecaster:
    _target_: str = "attnlab.models.forecast.RNNForecaster"
    hidden_size: int = 64
    num_layers: int = 1
    cell: str = "gru"
    dropout: float = 0.0
    norm: str = "none"
    relative: bool = False

    def __post_init__(self) -> None:
        _positive("model.hidden_size", self.hidden_size)
        _positive("model.num_layers", self.num_layers)
        _one_of("model.cell", self.cell, ("gru", "lstm"))
        _sequence_norm(self.norm)
        _probability("model.dropout", self.dropout)


@dataclass
class Seq2SeqForecaster:
    _target_: str = "attnlab.models.forecast.Seq2SeqForecaster"
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    norm: str = "none"
    relative: bool = False

    def __post_init__(self) -> None:
        _positive("model.hidden_size", self.hidden_size)
        _positive("model.num_layers", self.num_layers)
        _sequence_norm(self.norm)
        _probability("model.dropout", self.dropout)


@dataclass
class TransformerClassifier:
    _target_: str = "attnlab.models.transformer.TransformerClassifier"
    d_model: int = 128
    heads: int = 4
    layers: int = 2
    d_ff: int = 512
    dropout: float = 0.1
    norm_first: bool = False
    positional: str = "sinusoidal"
    pooling: str = "mean"
    max_len: int = 512
    norm: str = "layer"

    def __post_init__(self) -> None:
        _positive("model.layers", self.layers)
        _transformer_checks(self)
        _one_of("model.pooling", self.pooling, ("mean", "first"))


def _score(value: str) -> None:
    from attnlab.models.attention import SCORES

    _one_of("model.score", value, tuple(SCORES))


@dataclass
class RNNModel:
    """Shared keys of attnlab.models.rnn's models."""

    _target_: str = "attnlab.models.rnn.RNNEncoderDecoder"
    emb_dim: int = 64
    hidden: int = 128
    layers: int = 1
    cell: str = "gru"
    bidirectional: bool = True
    dropout: float = 0.1
    norm: str = "none"

    def __post_init__(self) -> None:
        from attnlab.models.rnn import NORMS

        for name in ("emb_dim", "hidden", "layers"):
            _positive(f"model.{name}", getattr(self, name))
        _one_of("model.cell", self.cell, ("gru", "lstm"))
        _one_of("model.norm", self.norm, NORMS)
        _probability("model.dropout", self.dropout)
        if self.bidirectional and self.hidden % 2:
            allowed = "an even number with model.bidirectional=true (half per direction)"
            raise ConfigError("model.hidden", self.hidden, allowed)


@dataclass
class AttentionSeq2Seq(RNNModel):
    _target_: str = "attnlab.models.rnn.AttentionSeq2Seq"
    score: str = "additive"

    def __post_init__(self) -> None:
        super().__post_init__()
        _score(self.score)


@dataclass
class RNNClassifier(RNNModel):
    _target_: str = "attnlab.models.rnn.RNNClassifier"
    cell: str = "lstm"
    bidirectional: bool = False
    pooling: str = "last"

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of("model.pooling", self.pooling, ("last", "mean"))


@dataclass
class ConvModel:
    """Shared keys of attnlab.models.conv's models (the conv stack)."""

    _target_: str = "attnlab.models.conv.ConvClassifier"
    channels: int = 128
    kernel: int = 3
    dilation: int = 2
    depth: int = 4
    causal: bool = True
    residual: bool = True
    dropout: float = 0.1
    norm: str = "none"

    def __post_init__(self) -> None:
        for name in ("channels", "kernel", "dilation", "depth"):
            _positive(f"model.{name}", getattr(self, name))
        _sequence_norm(self.norm)
        _probability("model.dropout", self.dropout)


@dataclass
class ConvSeq2Seq(ConvModel):
    _target_: str = "attnlab.models.conv.ConvEncoderAttentionDecoder"
    causal: bool = False
    emb_dim: int = 64
    layers: int = 1
    cell: str = "gru"
    score: str = "additive"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("emb_dim", "layers"):
            _positive(f"model.{name}", getattr(self, name))
        _one_of("model.cell", self.cell, ("gru", "lstm"))
        _score(self.score)


@dataclass
class SyntheticData:
    """Shared keys of attnlab.data.synthetic's data modules."""

    _target_: str = "attnlab.data.synthetic.SymbolsDataModule"
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 2000
    seed: int = 0
    batch_size: int = 128
    num_workers: int = 0
    bucketing: bool = False

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test", "batch_size"):
            _positive(f"data.{name}", getattr(self, name))
        _non_negative("data.num_workers", self.num_workers)


def _min_max(name: str, low: int, high: int, least: int) -> None:
    if low < least:
        raise ConfigError(f"data.min_{name}", low, f">= {least}")
    if high < low:
        raise ConfigError(f"data.max_{name}", high, f">= data.min_{name}={low}")


def _bucket_edges(edges: list[int], name: str, low: int, high: int) -> None:
    from attnlab.data.synthetic import bucket_ranges

    try:
        bucket_ranges(low, high, edges)
    except ValueError:
        allowed = f"increasing values, each in (data.min_{name}={low}, data.max_{name}={high}]"
        raise ConfigError("data.bucket_edges", list(edges), allowed) from None


@dataclass
class SymbolsData(SyntheticData):
    task: str = "reverse"
    n_symbols: int = 10
    min_len: int = 5
    max_len: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of("data.task", self.task, ("copy", "reverse", "sort"))
        if not 1 <= self.n_symbols <= 26:
            raise ConfigError("data.n_symbols", self.n_symbols, "1 to 26 (letters a-z)")
        _min_max("len", self.min_len, self.max_len, 1)


@dataclass
class AgreementData(SyntheticData):
    _target_: str = "attnlab.data.synthetic.AgreementDataModule"
    min_distance: int = 1
    max_distance: int = 40
    bucket_edges: list[int] = field(default_factory=lambda: [5, 9, 14, 21])
    n_nouns: int = 4
    n_fillers: int = 8
    attractor_rate: float = 0.25
    max_prefix: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        _min_max("distance", self.min_distance, self.max_distance, 1)
        _bucket_edges(self.bucket_edges, "distance", self.min_distance, self.max_distance)
        for name in ("n_nouns", "n_fillers", "max_prefix"):
            _positive(f"data.{name}", getattr(self, name))
        if not 0.0 <= self.attractor_rate <= 1.0:
            raise ConfigError("data.attractor_rate", self.attractor_rate, "must be in [0, 1]")


@dataclass
class OrderCountData(SyntheticData):
    _target_: str = "attnlab.data.synthetic.OrderCountDataModule"
    question: str = "order"
    min_len: int = 8
    max_len: int = 32
    bucket_edges: list[int] = field(default_factory=lambda: [16, 24])
    n_fillers: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        _one_of("data.question", self.question, ("order", "count"))
        _min_max("len", self.min_len, self.max_len, 2 if self.question == "order" else 3)
        _bucket_edges(self.bucket_edges, "len", self.min_len, self.max_len)
        _positive("data.n_fillers", self.n_fillers)


@dataclass
class Optimizer:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _positive("optim.lr", self.lr)
        _non_negative("optim.weight_decay", self.weight_decay)


@dataclass
class AdamOptimizer(Optimizer):
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass
class SGDOptimizer(Optimizer):
    _target_: str = "torch.optim.SGD"
    momentum: float = 0.9
    nesterov: bool = False


@dataclass
class Scheduler:
    _target_: str = "attnlab.schedules.warmup_cosine"
    _partial_: bool = True
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        _non_negative("scheduler.warmup_steps", self.warmup_steps)


@dataclass
class CosineScheduler(Scheduler):
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError("scheduler.min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")


@dataclass
class WarmupMultiStepScheduler(Scheduler):
    _target_: str = "attnlab.schedules.warmup_multistep"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])
    gamma: float = 0.1
    warmup_start_factor: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        fractions = list(self.milestones)
        if not all(0.0 < f < 1.0 for f in fractions) or fractions != sorted(set(fractions)):
            raise ConfigError(
                "scheduler.milestones", fractions, "increasing fractions of training in (0, 1)"
            )
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError("scheduler.gamma", self.gamma, "must be in (0, 1]")
        if not 0.0 < self.warmup_start_factor <= 1.0:
            raise ConfigError(
                "scheduler.warmup_start_factor", self.warmup_start_factor, "must be in (0, 1]"
            )


@dataclass
class Regularization:
    label_smoothing: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    ensemble_size: int = 1  # > 1: that many members, predictions averaged
    ensemble_mode: str = "seeds"  # seeds: different initial weights; bagging: bootstrap weights

    def __post_init__(self) -> None:
        _probability("regularization.label_smoothing", self.label_smoothing)
        _non_negative("regularization.l1", self.l1)
        _non_negative("regularization.l2", self.l2)
        _positive("regularization.ensemble_size", self.ensemble_size)
        _one_of("regularization.ensemble_mode", self.ensemble_mode, ("seeds", "bagging"))


@dataclass
class Task:
    _target_: str = "attnlab.tasks.seq2seq.Seq2SeqTask"
    _partial_: bool = True


@dataclass
class Seq2SeqTask(Task):
    beam_width: int = 1
    length_penalty: float = 0.0
    length_buckets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.beam_width < 1:
            raise ConfigError("task.beam_width", self.beam_width, ">= 1 (1: greedy decoding)")
        _non_negative("task.length_penalty", self.length_penalty)
        edges = self.length_buckets
        if any(e <= 0 for e in edges) or sorted(set(edges)) != list(edges):
            raise ConfigError("task.length_buckets", edges, "increasing positive lengths")


@dataclass
class ClassifyTask(Task):
    _target_: str = "attnlab.tasks.classify.ClassifyTask"


@dataclass
class ForecastTask(Task):
    _target_: str = "attnlab.tasks.forecast.ForecastTask"
    teacher_forcing: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ConfigError("task.teacher_forcing", self.teacher_forcing, "must be in [0, 1]")


STRATEGIES = (
    "auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_true", "fsdp", "fsdp_cpu_offload", "deepspeed",
)  # fmt: skip
PRECISIONS = (
    "64-true", "64", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true",
)  # fmt: skip


@dataclass
class Trainer:
    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: Any = "32-true"
    max_epochs: int = 10
    min_epochs: int = 1
    max_steps: int = -1
    max_time: Any = None
    gradient_clip_val: Any = None
    accumulate_grad_batches: int = 1
    check_val_every_n_epoch: int = 1
    val_check_interval: Any = None
    log_every_n_steps: int = 50
    deterministic: Any = False
    benchmark: Any = None
    fast_dev_run: Any = False
    overfit_batches: float = 0.0
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    num_sanity_val_steps: int = 2
    profiler: Any = None
    enable_checkpointing: bool = True
    default_root_dir: Any = None
    use_distributed_sampler: bool = True
    gradient_clip_algorithm: Any = None
    sync_batchnorm: Any = "auto"  # auto: SyncBatchNorm when BatchNorm meets several processes
    compile: bool = False  # torch.compile the model (attnlab's key, not a Trainer argument)

    def __post_init__(self) -> None:
        import os

        import torch

        _one_of("trainer.accelerator", self.accelerator, ("cpu", "gpu", "cuda", "mps", "auto"))
        _one_of("trainer.strategy", self.strategy, STRATEGIES)
        _one_of("trainer.precision", str(self.precision), PRECISIONS)
        _one_of("trainer.sync_batchnorm", self.sync_batchnorm, ("auto", True, False))
        _positive("trainer.num_nodes", self.num_nodes)
        _positive("trainer.accumulate_grad_batches", self.accumulate_grad_batches)
        if self.max_epochs < -1 or self.max_epochs == 0:
            raise ConfigError("trainer.max_epochs", self.max_epochs, "> 0, or -1 for no limit")
        gpu = self.accelerator in ("gpu", "cuda")
        if gpu and not torch.cuda.is_available():
            raise ConfigError(
                "trainer.accelerator", self.accelerator, "cpu: no CUDA device on this machine"
            )
        if self.strategy.startswith("fsdp") and not gpu:
            allowed = "ddp or ddp_spawn with accelerator=cpu (FSDP needs GPUs)"
            raise ConfigError("trainer.strategy", self.strategy, allowed)
        if isinstance(self.devices, int) and self.devices > 0:
            available = torch.cuda.device_count() if gpu else os.cpu_count() or 1
            if self.devices > available:
                what = "GPUs" if gpu else "CPU cores, one process each"
                raise ConfigError("trainer.devices", self.devices, f"at most {available} ({what})")


TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")


@dataclass
class MLflowLogger:
    _target_: str = "lightning.pytorch.loggers.MLFlowLogger"
    experiment_name: str = "attnlab"
    tracking_uri: str = "sqlite:///mlflow.db"
    log_model: bool = True
    run_name: Any = None

    def __post_init__(self) -> None:
        parsed = urlparse(self.tracking_uri)
        scheme = parsed.scheme.split("+")[0]
        ok = scheme in TRACKING_SCHEMES and (parsed.netloc or parsed.path)
        if scheme == "sqlite":
            ok = self.tracking_uri.startswith("sqlite:///") and len(self.tracking_uri) > 10
        if not ok:
            raise ConfigError(
                "logger.tracking_uri",
                self.tracking_uri,
                f"a URI with scheme {', '.join(TRACKING_SCHEMES)} (e.g. sqlite:///mlflow.db)",
            )
        if not self.experiment_name.strip():
            raise ConfigError("logger.experiment_name", self.experiment_name, "a non-empty name")


@dataclass
class Objective:
    metric: str = "test/exact_match"
    direction: str = "maximize"

    def __post_init__(self) -> None:
        _one_of("objective.direction", self.direction, ("maximize", "minimize"))


@dataclass
class Run:
    """The root config: run-level keys; every group is typed by its own schema."""

    task_name: str = "attnlab"
    seed: int = 0
    objective: Objective = field(default_factory=Objective)
    tags: dict[str, str] = field(default_factory=dict)
    data: Any = None
    model: Any = None
    task: Any = None
    optim: Any = None
    scheduler: Any = None
    regularization: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    paths: Any = None
    debug: Any = None
    experiment: Any = None
    scale: Any = None
    sweep: Any = None
    trial: Any = None  # set by the Optuna sweeper for its jobs: study_name, storage, number, id


SCHEMAS: dict[str, type] = {
    "run": Run,
    "schema/data/dates": DatesData,
    "schema/data/digits": DigitsData,
    "schema/data/cifar10": CIFAR10Data,
    "schema/data/mnist": MNISTData,
    "schema/model/transformer": Transformer,
    "schema/model/transformer_classifier": TransformerClassifier,
    "schema/model/rnn_seq2seq": RNNModel,
    "schema/model/attention_seq2seq": AttentionSeq2Seq,
    "schema/model/rnn_classifier": RNNClassifier,
    "schema/model/conv_classifier": ConvModel,
    "schema/model/conv_seq2seq": ConvSeq2Seq,
    "schema/data/symbols": SymbolsData,
    "schema/data/agreement": AgreementData,
    "schema/data/order_count": OrderCountData,
    "schema/model/resnet": ResNet,
    "schema/model/mlp": MLP,
    "schema/optim/adamw": AdamOptimizer,
    "schema/optim/sgd": SGDOptimizer,
    "schema/scheduler/warmup_cosine": CosineScheduler,
    "schema/scheduler/inverse_sqrt": Scheduler,
    "schema/scheduler/warmup_multistep": WarmupMultiStepScheduler,
    "schema/regularization/default": Regularization,
    "schema/task/seq2seq": Seq2SeqTask,
    "schema/task/classify": ClassifyTask,
    "schema/data/sines": SinesData,
    "schema/data/prices": PricesData,
    "schema/data/prices_csv": CSVPricesData,
    "schema/data/statsmodels_series": StatsmodelsSeriesData,
    "schema/data/adding": AddingData,
    "schema/data/corpus": CorpusData,
    "schema/model/rnn_forecaster": RNNForecaster,
    "schema/model/seq2seq_forecaster": Seq2SeqForecaster,
    "schema/task/forecast": ForecastTask,
    "schema/trainer/default": Trainer,
    "schema/logger/mlflow": MLflowLogger,
}

GROUPS = ("data", "model", "optim", "scheduler", "regularization", "task", "trainer", "logger")


def lr_for_batch(base_lr: float, batch_size: int, base_batch_size: int) -> float:
    """The linear scaling rule (Goyal et al. 2017): base_lr x batch_size / base_batch_size."""
    return base_lr * batch_size / base_batch_size


def register_schemas() -> None:
    from attnlab.distributed import job_log_name, launch_token

    OmegaConf.register_new_resolver("lr_for_batch", lr_for_batch, replace=True)
    OmegaConf.register_new_resolver("job_log_name", job_log_name, replace=True)
    # cached in the config, so jobs a launcher pickles (joblib, submitit) keep the launch's token
    OmegaConf.register_new_resolver("launch_token", launch_token, replace=True, use_cache=True)
    store = ConfigStore.instance()
    for path, schema in SCHEMAS.items():
        group, _, name = path.rpartition("/")
        store.store(group=group or None, name=name, node=schema)


def validate(cfg: DictConfig) -> None:
    """Run every schema's range and cross-field checks; raise ConfigError on the first failure."""
    for group in GROUPS:
        node = cfg.get(group)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is not dict:
            OmegaConf.to_object(node)  # builds the dataclass, which runs __post_init__
    OmegaConf.to_object(cfg.objective)
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError("seed", cfg.seed, "an integer in [0, 2**32)")
    task_class = get_class(cfg.task._target_)
    ensemble_size = cfg.regularization.get("ensemble_size", 1)
    if ensemble_size > 1 and not getattr(task_class, "supports_ensembles", False):
        allowed = f"1 with {task_class.__name__} (ensembles need a classification task)"
        raise ConfigError("regularization.ensemble_size", ensemble_size, allowed)
    split, _, name = cfg.objective.metric.partition("/")
    allowed = [f"{s}/{m}" for s in ("val", "test") for m in task_class.metric_names]
    if split not in ("val", "test") or name not in task_class.metric_names:
        raise ConfigError("objective.metric", cfg.objective.metric, f"one of {', '.join(allowed)}")
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if monitor is not None and monitor not in allowed:
            raise ConfigError(f"callbacks.{name}.monitor", monitor, f"one of {', '.join(allowed)}")
    _check_bucketing_sampler(cfg)


def _check_bucketing_sampler(cfg: DictConfig) -> None:
    """Lightning cannot put its DistributedSampler into a bucket sampler, which shards itself."""
    data, trainer = cfg.get("data") or {}, cfg.get("trainer") or {}
    if not data.get("bucketing") or not trainer.get("use_distributed_sampler", True):
        return
    one_device = trainer.get("devices") in (1, "1") and trainer.get("num_nodes", 1) == 1
    if not (one_device and trainer.get("strategy") in ("auto", "single_device")):
        allowed = "false with data.bucketing=true on several devices (the sampler shards itself)"
        raise ConfigError("trainer.use_distributed_sampler", True, allowed)
