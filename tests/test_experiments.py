"""Every experiment of conf/experiment x every model family that fits it trains a few steps.

A family (a registered model) fits an experiment when the experiment sets no model key the
family lacks (in its own file, the experiments it extends or its grid in sweeps/) and the
family takes the kind of data the experiment's data publishes. Cases come from the files and
the registry, not from a hand list: a new experiment or model is covered without editing this
test.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from attnlab.core import registry
from attnlab.core.config import register_schemas
from attnlab.core.paths import config_dir, sweeps_dir
from attnlab.training.train import run

CONF = Path(config_dir())
EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))
FAMILIES = sorted(c.name for c in registry.components("model"))
# Tiny sizes for whichever of these keys a data or model config has.
DATA_SIZES = dict(
    n_train=64, n_val=16, n_test=16, batch_size=16, length=20, n_steps=400, input_len=16,
    horizon=4, train_fraction=0.1,
)  # fmt: skip
MODEL_SIZES = dict(width=16, heads=2, ff_width=32, emb_dim=8, width_multiplier=0.5)
FEW_STEPS = [
    "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0",
    "trainer.check_val_every_n_epoch=1", "trainer.log_every_n_steps=1", "logger=none",
    "callbacks.progress_bar=null", "callbacks.model_summary=null",
    # plots are tested on their own; drawing them would take most of each run's time here
    "callbacks.attention_maps=null", "callbacks.forecast_plot=null", "callbacks.bucket_plot=null",
]  # fmt: skip
# The parallel corpus of experiments whose data needs the user's file (data.path).
CORPUS_PAIRS = [(f"I see {n} cats .", f"Je vois {n} chats .") for n in range(40)]


def _yaml(folder: Path, name: str) -> dict:
    path = folder / f"{name}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _compose(*overrides: str) -> DictConfig:
    """The job config without Hydra's runtime node (enough to build data and models)."""
    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def experiment_model_keys(name: str) -> set[str]:
    """Model keys an experiment sets: its ``model:`` node, its grid's ``model.*`` parameters
    (sweeps/<name>.yaml) and those of the experiments it extends (plain names in its defaults)."""
    node = _yaml(CONF / "experiment", name)
    keys = set(node.get("model") or {})
    grid = ((_yaml(sweeps_dir(), name).get("hydra") or {}).get("sweeper") or {}).get("params")
    keys |= {key.removeprefix("model.") for key in grid or {} if key.startswith("model.")}
    for parent in node.get("defaults") or []:
        if isinstance(parent, str) and parent != "_self_":
            keys |= experiment_model_keys(parent)
    return keys


class TinyExperiment(NamedTuple):
    overrides: tuple[str, ...]  # experiment=<name>, the user's files, tiny data sizes
    default: str  # the family the experiment selects
    families: tuple[str, ...]  # every family that fits


@functools.cache
def tiny_experiment(name: str, corpus: Path) -> TinyExperiment:
    """One experiment with tiny data, and the families whose keys it leaves alone and that take
    the kind of data it publishes."""
    cfg = _compose(f"experiment={name}")
    user_files = {"path": str(corpus)}  # data=corpus: the user's parallel corpus
    changes = {k: user_files[k] for k in cfg.data if OmegaConf.is_missing(cfg.data, k)}
    changes |= {k: v for k, v in DATA_SIZES.items() if k in cfg.data}
    for key, value in changes.items():
        cfg.data[key] = value
    data = instantiate(cfg.data)
    data.setup("fit")
    default = registry.for_node("model", cfg.model).name
    fits = tuple(
        family.name
        for family in registry.components("model")
        if experiment_model_keys(name) <= set(family.config_keys)
        and isinstance(data.dims, family.data)
    )
    overrides = [f"experiment={name}", *(f"data.{k}={v}" for k, v in changes.items())]
    return TinyExperiment(tuple(overrides), default, fits)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from a second thread, and two OpenMP threads beside another busy
    process spin-wait (see the docstring of ``attnlab.training.threads``): this module took 275 s
    that way instead of 33 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "pairs.tsv"
    path.write_text("".join(f"{s}\t{t}\n" for s, t in CORPUS_PAIRS), encoding="utf-8")
    return path


def test_every_family_fits_some_experiment_and_each_experiment_its_own(corpus: Path):
    covered = set()
    for name in EXPERIMENTS:
        experiment = tiny_experiment(name, corpus)
        assert experiment.default in experiment.families, name
        covered |= set(experiment.families)
    assert covered == set(FAMILIES)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_with_every_fitting_family(
    name: str, corpus: Path, make_cfg, tmp_path: Path
):
    experiment = tiny_experiment(name, corpus)
    for family in experiment.families:
        keys = registry.get("model", family).config_keys
        sizes = [f"model.{k}={v}" for k, v in MODEL_SIZES.items() if k in keys]
        cfg = make_cfg(
            *experiment.overrides,
            f"model={family}",
            *sizes,
            *FEW_STEPS,
            f"paths.output_dir={tmp_path / family}",
        )
        value = run(cfg)
        assert math.isfinite(value), (name, family, value)
