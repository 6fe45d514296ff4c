"""Shared fixtures: compose the real config tree once per test, shrunk to seconds."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from attnlab.core.config import register_schemas
from attnlab.core.paths import config_dir
from attnlab.core.registry import PLUGINS_ENV

# model=test_mean_pool, registered by a module of the tests as a user's own module would be: named
# in $ATTNLAB_COMPONENTS and importable (tests/ on PYTHONPATH) here and in every child process.
TESTS = str(Path(__file__).parent)
os.environ[PLUGINS_ENV] = "helpers.registered_model"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))

# A date task and Transformer small enough to train a few steps in seconds.
TINY = [
    "data.n_train=256",
    "data.n_val=32",
    "data.n_test=32",
    "data.batch_size=32",
    "model.width=32",
    "model.heads=2",
    "model.ff_width=64",
    "model.depth=1",
    "scheduler.warmup_steps=2",
    "trainer.max_epochs=2",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each test runs in its own directory with its own MLflow store and a fresh Hydra."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


@pytest.fixture
def tiny() -> list[str]:
    return list(TINY)


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def make_cfg(tmp_path: Path):
    """compose(overrides) -> the config a Hydra job would receive, output dir in tmp_path."""

    def _compose(*overrides: str) -> DictConfig:
        register_schemas()
        GlobalHydra.instance().clear()
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "output")
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    return _compose


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def fresh_postgres_database():
    """A new, empty database on the local server (dropped afterwards), or a skip with the reason."""
    try:
        import psycopg

        admin = psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=5)
    except Exception as error:  # no driver or no server: nothing to test against
        reason = f"no PostgreSQL at {POSTGRES_SERVER}: {str(error).splitlines()[0]}"
        if os.environ.get("CI"):  # CI starts PostgreSQL first: its absence is a failure there
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"attnlab_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    yield f"{POSTGRES_SERVER}/{name}"
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()
