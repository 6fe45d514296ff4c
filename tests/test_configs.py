"""Every file of conf/ composes, validates and instantiates (or names why it cannot here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from attnlab.config import validate
from attnlab.errors import ConfigError
from attnlab.paths import config_dir

GROUP_OPTIONS = sorted(
    (path.parent.name, path.stem)
    for path in Path(config_dir()).glob("*/*.yaml")
    if path.parent.name != "hydra"
)
FAKE_DIMS = dict(src_vocab_size=30, tgt_vocab_size=15, pad_id=0)
NEEDS_CUDA = {("trainer", "gpu"), ("trainer", "ddp")}


def test_every_group_is_covered():
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"data", "model", "optim", "scheduler", "regularization", "trainer"} <= groups
    assert {"logger", "callbacks", "experiment", "debug", "paths", "task"} <= groups


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}/{o}" for g, o in GROUP_OPTIONS])
def test_config_composes_and_instantiates(group: str, option: str, make_cfg):
    cfg = make_cfg(f"{group}={option}")
    if (group, option) in NEEDS_CUDA and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.accelerator"):
            validate(cfg)
        return
    validate(cfg)
    model = instantiate(cfg.model, **FAKE_DIMS)
    optimizer = instantiate(cfg.optim)(params=model.parameters())
    if cfg.get("scheduler"):
        instantiate(cfg.scheduler)(optimizer, total_steps=100).step()
    instantiate(cfg.data)
    instantiate(cfg.task)(
        model=model, optimizer=instantiate(cfg.optim), bos_id=1, eos_id=2,
        tgt_vocab_size=15, max_tgt_len=11, pad_id=0,
    )  # fmt: skip
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node]
    if cfg.logger.get("_target_"):
        instantiate(cfg.logger)
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs or cfg.trainer.fast_dev_run
