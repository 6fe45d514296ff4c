"""Structured-config schemas (types, ranges, cross-field rules) registered in Hydra's ConfigStore.

YAML files in conf/ name their schema in their defaults list (``/schema/<group>/<name>@_here_``),
so OmegaConf checks types and unknown keys while composing. Ranges and rules that span fields
live in ``__post_init__``, which runs when ``validate`` turns each node into its dataclass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

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

    def __post_init__(self) -> None:
        for name in ("d_model", "heads", "enc_layers", "dec_layers", "d_ff", "max_len"):
            _positive(f"model.{name}", getattr(self, name))
        if self.d_model % self.heads:
            raise ConfigError(
                "model.heads", self.heads, f"a divisor of model.d_model={self.d_model}"
            )
        if self.d_model % 2:
            raise ConfigError("model.d_model", self.d_model, "an even number (sin/cos pairs)")
        _probability("model.dropout", self.dropout)
        _one_of("model.positional", self.positional, ("sinusoidal", "learned", "none"))


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
class Regularization:
    label_smoothing: float = 0.0
    l1: float = 0.0
    l2: float = 0.0

    def __post_init__(self) -> None:
        _probability("regularization.label_smoothing", self.label_smoothing)
        _non_negative("regularization.l1", self.l1)
        _non_negative("regularization.l2", self.l2)


@dataclass
class Task:
    _target_: str = "attnlab.tasks.seq2seq.Seq2SeqTask"
    _partial_: bool = True


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

    def __post_init__(self) -> None:
        _one_of("trainer.accelerator", self.accelerator, ("cpu", "gpu", "cuda", "mps", "auto"))
        _positive("trainer.num_nodes", self.num_nodes)
        _positive("trainer.accumulate_grad_batches", self.accumulate_grad_batches)
        if self.max_epochs < -1 or self.max_epochs == 0:
            raise ConfigError("trainer.max_epochs", self.max_epochs, "> 0, or -1 for no limit")
        if self.accelerator in ("gpu", "cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(
                    "trainer.accelerator", self.accelerator, "cpu: no CUDA device on this machine"
                )


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


SCHEMAS: dict[str, type] = {
    "run": Run,
    "schema/data/dates": DatesData,
    "schema/model/transformer": Transformer,
    "schema/optim/adamw": AdamOptimizer,
    "schema/optim/sgd": SGDOptimizer,
    "schema/scheduler/warmup_cosine": CosineScheduler,
    "schema/scheduler/inverse_sqrt": Scheduler,
    "schema/regularization/default": Regularization,
    "schema/task/seq2seq": Task,
    "schema/trainer/default": Trainer,
    "schema/logger/mlflow": MLflowLogger,
}

GROUPS = ("data", "model", "optim", "scheduler", "regularization", "task", "trainer", "logger")


def register_schemas() -> None:
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
    split, _, name = cfg.objective.metric.partition("/")
    allowed = [f"{s}/{m}" for s in ("val", "test") for m in task_class.metric_names]
    if split not in ("val", "test") or name not in task_class.metric_names:
        raise ConfigError("objective.metric", cfg.objective.metric, f"one of {', '.join(allowed)}")
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if monitor is not None and monitor not in allowed:
            raise ConfigError(f"callbacks.{name}.monitor", monitor, f"one of {', '.join(allowed)}")
