"""The ``trainer`` group: the Lightning Trainer keys attnlab exposes, their rules, and the build.

Every argument of Lightning's Trainer that a config can hold is a key (:func:`trainer_settings`
reads them from its signature), with attnlab's defaults where they differ, plus three keys of
attnlab's own (``compile``, ``ddp_timeout`` and ``sync_batchnorm: auto``) that
:func:`build_trainer` resolves.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from typing import Any

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from attnlab.core.registry import Component, Settings, _config_type, add

STRATEGIES = (
    "auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_true", "fsdp", "fsdp_cpu_offload", "deepspeed",
)  # fmt: skip
PRECISIONS = (
    "64-true", "64", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true",
)  # fmt: skip


# Where attnlab runs with another value than Lightning's default (None or "auto" there).
ATTNLAB_DEFAULTS = {
    "accelerator": "cpu", "devices": 1, "precision": "32-true", "max_epochs": 10,
    "min_epochs": 1, "log_every_n_steps": 50, "deterministic": False,
    "num_sanity_val_steps": 2, "enable_checkpointing": True,
}  # fmt: skip
BUILT_BY_ATTNLAB = ("callbacks", "logger", "plugins")  # objects each run passes to the Trainer
OWN_KEYS = [
    # auto: SyncBatchNorm when BatchNorm meets several processes (Lightning's key takes a bool)
    ("sync_batchnorm", Any, dataclasses.field(default="auto")),
    # seconds a DDP process waits for its peers (rendezvous, each collective) before failing
    ("ddp_timeout", int, dataclasses.field(default=300)),
    # torch.compile the model in place (attnlab's key, not Lightning's)
    ("compile", bool, dataclasses.field(default=False)),
]


def trainer_settings() -> type:
    """The ``trainer`` keys: every argument of Lightning's Trainer that a config can hold, typed
    and defaulted by its signature (``ATTNLAB_DEFAULTS`` where attnlab differs), plus
    attnlab's own keys. Derived, so that a Lightning release's new argument is a key at once."""
    hints = typing.get_type_hints(L.Trainer.__init__)
    own = {name for name, *_ in OWN_KEYS}
    fields = [
        (name, _config_type(hints.get(name, Any)), dataclasses.field(default=default))
        for name, parameter in inspect.signature(L.Trainer.__init__).parameters.items()
        if name not in ("self", *BUILT_BY_ATTNLAB, *own)
        for default in [ATTNLAB_DEFAULTS.get(name, parameter.default)]
    ]
    return dataclasses.make_dataclass("TrainerSettings", [*fields, *OWN_KEYS])


TrainerSettings = trainer_settings()


def check_trainer(c: Settings) -> None:
    """Known values, and devices this machine has."""
    import torch

    allowed = {
        "accelerator": ("cpu", "gpu", "cuda", "mps", "auto"),
        "strategy": STRATEGIES,
        "precision": PRECISIONS,
        "sync_batchnorm": ("auto", True, False),
    }
    for name, values in allowed.items():
        value = str(c[name]) if name == "precision" else c[name]
        if value not in values:
            c.fail(name, f"one of {', '.join(map(str, values))}")
    if c.gradient_clip_algorithm not in (None, "value", "norm"):
        c.fail("gradient_clip_algorithm", "one of value, norm, null")
    c.positive("num_nodes", "accumulate_grad_batches", "ddp_timeout")
    if c.max_epochs < -1 or c.max_epochs == 0:
        c.fail("max_epochs", "> 0, or -1 for no limit")
    if c.max_epochs != -1 and c.min_epochs > c.max_epochs:
        c.fail("min_epochs", f"at most trainer.max_epochs={c.max_epochs}")
    gpu = c.accelerator in ("gpu", "cuda")
    if gpu and not torch.cuda.is_available():
        c.fail("accelerator", "cpu: no CUDA device on this machine")
    if str(c.precision).startswith("16") and not gpu:  # Lightning would switch to bf16 quietly
        c.fail("precision", "32-true, 64-true, bf16-mixed or bf16-true on CPU (fp16 needs a GPU)")
    if isinstance(c.devices, int) and c.devices <= 0 and not (gpu and c.devices == -1):
        c.fail("devices", "a number of processes > 0, auto, or -1 for every GPU")
    if c.strategy == "single_device" and c.devices not in (1, "1", "auto"):
        c.fail("devices", "1 with trainer.strategy=single_device")
    if c.strategy.startswith("fsdp") and not gpu:
        c.fail("strategy", "ddp or ddp_spawn with accelerator=cpu (FSDP needs GPUs)")
    if isinstance(c.devices, int) and c.devices > 0:
        available = torch.cuda.device_count() if gpu else os.cpu_count() or 1
        if c.devices > available:
            what = "GPUs" if gpu else "CPU cores, one process each"
            c.fail("devices", f"at most {available} ({what})")


add(Component("trainer", "default", L.Trainer, check=check_trainer, settings=TrainerSettings))


def sync_batchnorm(cfg: DictConfig, model) -> bool:
    """``trainer.sync_batchnorm``, with ``auto``: on when BatchNorm meets several processes."""
    from attnlab.training.distributed import uses_batchnorm, world_size

    if cfg.trainer.sync_batchnorm == "auto":
        return world_size(cfg.trainer) > 1 and uses_batchnorm(model)
    return bool(cfg.trainer.sync_batchnorm)


def build_trainer(cfg: DictConfig, model, callbacks: list, logger) -> L.Trainer:
    """``cfg.trainer`` as a Lightning Trainer, attnlab's own keys resolved.

    ``compile`` compiles the model in place (state-dict keys unchanged, so checkpoints load
    into an uncompiled model). Checkpoints are written atomically (attnlab.training.resume).
    """
    from hydra.utils import instantiate

    from attnlab.training.distributed import world_size
    from attnlab.training.launcher import ddp_strategy
    from attnlab.training.resume import AtomicCheckpointIO

    node = OmegaConf.to_container(cfg.trainer, resolve=True)
    if node.pop("compile"):
        model.compile()
    node["sync_batchnorm"] = sync_batchnorm(cfg, model)
    node["strategy"] = ddp_strategy(
        node["strategy"], world_size(cfg.trainer), node.pop("ddp_timeout")
    )
    plugins = [AtomicCheckpointIO()]  # a kill during a save leaves the previous checkpoint
    return instantiate(node, callbacks=callbacks, logger=logger, plugins=plugins)


def distributed_params(cfg: DictConfig, trainer: L.Trainer, model) -> dict[str, Any]:
    """Processes and batch sizes as run: ``data.batch_size`` is per device (per process)."""
    per_device = cfg.data.get("batch_size")
    processes = trainer.world_size
    params = {
        "distributed.world_size": processes,
        "distributed.strategy": type(trainer.strategy).__name__,
        "distributed.accelerator": type(trainer.accelerator).__name__,
        "distributed.sync_batchnorm": sync_batchnorm(cfg, model),
    }
    if per_device:
        params["distributed.batch_size_per_device"] = per_device
        global_batch = per_device * processes * trainer.accumulate_grad_batches
        params["distributed.batch_size_global"] = global_batch
    return params
