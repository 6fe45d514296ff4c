"""Every file of conf/ composes, validates and instantiates (or names why it cannot here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import OmegaConf, open_dict

from attnlab.core import registry
from attnlab.core.config import GROUPS, validate
from attnlab.core.contracts import ImageDims, PairDims, SeriesDims, TaggingDims, TokenDims
from attnlab.core.errors import ConfigError
from attnlab.core.paths import config_dir, sweeps_dir
from attnlab.sweeper.search_space import search_space
from attnlab.sweeper.study import make_pruner, make_sampler
from attnlab.tasks.build import build_task
from attnlab.training.lightning_trainer import build_trainer

# Presets in conf/ and the registered components that have none (options of ConfigStore).
GROUP_OPTIONS = sorted(
    {(path.parent.name, path.stem) for path in Path(config_dir()).glob("*/*.yaml")}
    | {(c.group, c.name) for group in GROUPS for c in registry.components(group)}
    - {("hydra", path.stem) for path in Path(config_dir(), "hydra").glob("*.yaml")}
)
SWEEPS = sorted(path.stem for path in sweeps_dir().glob("*.yaml"))
# What each kind of data publishes, small.
FAKE_DIMS = {
    PairDims: PairDims(30, 15, pad_id=0, bos_id=1, eos_id=2, max_src_len=12, max_tgt_len=11),
    TokenDims: TokenDims(vocab_size=30, num_classes=2, pad_id=0, max_src_len=12),
    TaggingDims: TaggingDims(vocab_size=30, num_tags=5, pad_id=0, max_src_len=12),
    ImageDims: ImageDims(in_channels=1, image_size=8, num_classes=2),
    SeriesDims: SeriesDims(in_features=3, input_len=8, horizon=2),
}
# Keys without a default (files the user names): any value composes and instantiates.
REQUIRED = {
    ("data", "corpus"): ["data.path=pairs.tsv"],
    ("data", "prices_csv"): ["data.csv_path=prices.csv"],
    ("data", "conllu"): ["data.path=treebank"],
    ("experiment", "corpus"): ["data.path=pairs.tsv"],
}


def experiment_for(group: str, option: str) -> list[str]:
    """The first experiment that selects ``group=option`` (its other keys fit the option)."""
    for path in sorted(Path(config_dir(), "experiment").glob("*.yaml")):
        defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
        if {f"override /{group}": option} in defaults:
            return [f"experiment={path.stem}"]
    # The default experiment sets Transformer keys; other models are composed without it.
    return ["~experiment"] if group == "model" else []


def test_every_group_is_covered():
    groups = {group for group, _ in GROUP_OPTIONS}
    assert {"data", "model", "optim", "scheduler", "regularization", "trainer"} <= groups
    assert {"logger", "callbacks", "experiment", "debug", "paths", "task"} <= groups


@pytest.mark.parametrize("group, option", GROUP_OPTIONS, ids=[f"{g}/{o}" for g, o in GROUP_OPTIONS])
def test_config_composes_and_instantiates(group: str, option: str, make_cfg):
    required = REQUIRED.get((group, option), [])
    cfg = make_cfg(f"{group}={option}", *experiment_for(group, option), *required)
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.accelerator"):
            validate(cfg)
        return
    validate(cfg)
    dims = FAKE_DIMS[registry.for_node("model", cfg.model).data[0]]
    model = registry.build("model", cfg.model, dims)
    optimizer = instantiate(cfg.optim)(params=model.parameters())
    if cfg.get("scheduler"):
        instantiate(cfg.scheduler)(optimizer, total_steps=100).step()
    instantiate(cfg.data)
    if isinstance(dims, registry.for_node("task", cfg.task).data):
        build_task(cfg, model, dims)
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node]
    if cfg.logger.get("_target_"):
        instantiate(cfg.logger)
    trainer = build_trainer(cfg, model, callbacks, logger=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs or cfg.trainer.fast_dev_run


FAMILIES = [component.name for component in registry.components("model")]
# An experiment of each kind of data; any model family for that data replaces its model.
EXPERIMENT_OF = {PairDims: "date_transformer", TokenDims: "agreement", TaggingDims: "tagging",
                 ImageDims: "digits_mlp", SeriesDims: "sines_rnn"}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_the_model_summary_counts_the_flops_of_every_family(family: str, make_cfg):
    """Lightning's summary runs each task's ``example_input_array``, stated from the Dims."""
    kind = registry.get("model", family).data[0]
    cfg = make_cfg(f"experiment={EXPERIMENT_OF[kind]}", f"model={family}")
    validate(cfg)
    model = registry.build("model", cfg.model, FAKE_DIMS[kind])
    assert ModelSummary(build_task(cfg, model, FAKE_DIMS[kind])).total_flops > 0


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_file_composes_with_its_search_space(name: str):
    """Optuna sweeps build their sampler, pruner and space; grids name values to run."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", [f"sweep={name}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    sweeper = cfg.hydra.sweeper
    assert sweeper.params
    if sweeper._target_.endswith("OptunaSweeper"):
        fixed, space = search_space(OmegaConf.to_container(sweeper.params), [])
        assert space and not fixed
        make_sampler(OmegaConf.to_container(sweeper.sampler), space)
        make_pruner(OmegaConf.to_container(sweeper.pruner))
    else:  # the basic sweeper's grid: every value is a comma-separated choice
        assert all("," in str(values) for values in sweeper.params.values())
    validate(_without_hydra(cfg))


def _without_hydra(cfg):
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def test_a_sweep_appended_with_plus_is_refused_with_what_to_type(capsys):
    """``sweep`` has a default (null), so Hydra refuses ``+sweep=NAME`` with a message that does
    not say what to type; attnlab names the override that works."""
    from attnlab.training.train import main

    with pytest.raises(SystemExit) as stop:
        main(["-m", "+sweep=transformer"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "attnlab: config error: +sweep=transformer: sweep is a config group with a default "
        "now; write sweep=transformer"
    ]


def test_every_argument_of_lightnings_trainer_that_a_config_can_hold_is_a_trainer_key(make_cfg):
    """Derived from the Trainer's signature: the keys the README promises, none mirrored by
    hand; a run's Trainer gets what the keys say."""
    import inspect

    import lightning.pytorch as L

    from attnlab.training.lightning_trainer import BUILT_BY_ATTNLAB, build_trainer

    arguments = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    cfg = make_cfg(
        "trainer.detect_anomaly=true", "trainer.enable_model_summary=false",
        "trainer.enable_progress_bar=false", "trainer.reload_dataloaders_every_n_epochs=2",
    )  # fmt: skip
    assert arguments - set(BUILT_BY_ATTNLAB) <= set(cfg.trainer)
    trainer = build_trainer(cfg, torch.nn.Linear(1, 1), callbacks=[], logger=False)
    assert trainer._detect_anomaly and not trainer.progress_bar_callback
    assert trainer.reload_dataloaders_every_n_epochs == 2


@pytest.mark.parametrize(
    "overrides, watched",
    [
        ([], ("val/exact_match", "max")),
        (["experiment=tagging"], ("val/token_acc", "max")),
        (["experiment=degradation"], ("val/error", "min")),
        (["experiment=prices"], ("val/loss", "min")),  # named by the experiment: not the objective
        (["experiment=digits_mlp", "callbacks.early_stopping.monitor=val/loss"], None),
    ],
)
def test_checkpoints_and_early_stopping_watch_the_objective_unless_told(
    make_cfg, overrides, watched
):
    """One statement per metric: the objective's validation counterpart and direction."""
    cfg = make_cfg(*overrides)
    checkpoint, stopping = cfg.callbacks.model_checkpoint, cfg.callbacks.early_stopping
    if watched is None:
        assert (checkpoint.monitor, stopping.monitor) == ("val/acc", "val/loss")
        return
    assert (checkpoint.monitor, checkpoint.mode) == watched
    if stopping is not None:  # degradation trains every depth for the same steps
        assert (stopping.monitor, stopping.mode) == watched
