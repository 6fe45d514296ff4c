"""The ``trainer`` group: the Lightning Trainer keys attnlab exposes, their rules, and the build.

Lightning's Trainer takes some fifty arguments; :class:`TrainerSettings` lists those a config
may set, with attnlab's defaults, plus three keys of attnlab's own (``compile``, ``ddp_timeout`` and
``sync_batchnorm: auto``) that :func:`build_trainer` resolves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import lightning.pytorch as L
from omegaconf import DictConfig, OmegaConf

from attnlab.registry import Component, Settings, add

STRATEGIES = (
    "auto", "single_device", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_true", "fsdp", "fsdp_cpu_offload", "deepspeed",
)  # fmt: skip
PRECISIONS = (
    "64-true", "64", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true",
)  # fmt: skip


@dataclass
class TrainerSettings:
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
    gradient_clip_algorithm: Any = None
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
    sync_batchnorm: Any = "auto"  # auto: SyncBatchNorm when BatchNorm meets several processes
    # Seconds a DDP process waits for its peers (rendezvous, each collective) before failing.
    ddp_timeout: int = 300
    compile: bool = False  # torch.compile the model in place (attnlab's key, not Lightning's)


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
    from attnlab.distributed import uses_batchnorm, world_size

    if cfg.trainer.sync_batchnorm == "auto":
        return world_size(cfg.trainer) > 1 and uses_batchnorm(model)
    return bool(cfg.trainer.sync_batchnorm)


def build_trainer(cfg: DictConfig, model, callbacks: list, logger) -> L.Trainer:
    """``cfg.trainer`` as a Lightning Trainer, attnlab's own keys resolved.

    ``compile`` compiles the model in place (state-dict keys unchanged, so checkpoints load
    into an uncompiled model). Checkpoints are written atomically (attnlab.resume).
    """
    from hydra.utils import instantiate

    from attnlab.distributed import world_size
    from attnlab.launcher import ddp_strategy
    from attnlab.resume import AtomicCheckpointIO

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
        "distributed.sync_batchnorm": sync_batchnorm(cfg, model),
    }
    if per_device:
        params["distributed.batch_size_per_device"] = per_device
        global_batch = per_device * processes * trainer.accumulate_grad_batches
        params["distributed.batch_size_global"] = global_batch
    return params
