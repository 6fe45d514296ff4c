"""One definition per component: the registry derives every schema from its class, conf/ holds
only values that differ, and a model registered anywhere reaches the parametrised tests."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_configs
import test_experiments
import test_models
import yaml
from omegaconf import MISSING, OmegaConf

from attnlab.core import registry
from attnlab.core.config import GROUPS
from attnlab.core.contracts import TokenDims
from attnlab.core.errors import ConfigError
from attnlab.core.paths import config_dir
from attnlab.tasks.build import build_model

COMPONENTS = [c for group in GROUPS for c in registry.components(group)]


def _presets() -> list[tuple[Path, registry.Component]]:
    """Every YAML preset of conf/ with the component whose schema it extends."""
    found = []
    for path in sorted(Path(config_dir()).glob("*/*.yaml")):
        for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults") or []:
            if isinstance(entry, str) and entry.startswith("/schema/"):
                _, _, group, name = entry.split("@")[0].split("/")
                found.append((path, registry.get(group, name)))
    return found


@pytest.mark.parametrize("path, component", _presets(), ids=lambda p: getattr(p, "stem", ""))
def test_no_preset_repeats_a_default_or_names_an_unknown_key(path, component):
    values = yaml.safe_load(path.read_text())
    defaults = component.defaults()
    for key, value in values.items():
        if key == "defaults":
            continue
        assert key in component.config_keys, f"{path}: {key} is not a key of {component.name}"
        default = defaults.get(key, MISSING)
        default = list(default) if isinstance(default, tuple) else default
        assert value != default, f"{path}: {key}: {value!r} repeats the default"


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: f"{c.group}/{c.name}")
def test_schema_is_the_signature(component):
    """Field names and defaults of the structured config are the constructor's."""
    fields = {f.name: f for f in dataclasses.fields(component.schema)}
    assert set(fields) - {"_target_", "_partial_"} == set(component.config_keys)
    for name, default in component.defaults().items():
        field = fields[name]
        factory = field.default_factory
        value = factory() if factory is not dataclasses.MISSING else field.default
        value = value if not isinstance(default, tuple) else tuple(value)
        assert value == default, name
    data_params = set(component.dims_params)
    assert not data_params & set(component.config_keys)  # the data's sizes are no config keys


def test_the_index_holds_what_the_signatures_say():
    """components.json (schemas without importing torch) is the signatures' schemas."""
    written, current = registry.index(), registry.signature_index()
    differ = sorted(
        key
        for key in written.keys() | current.keys()
        if json.dumps(written.get(key)) != json.dumps(current.get(key))
    )
    assert not differ, f"{registry.INDEX.name} is out of date for {differ}: {registry.WRITE_INDEX}"
    kinds = {kind for entry in written.values() for _, kind, _ in entry["fields"]}
    assert {registry.type_name(registry.type_from_name(kind)) for kind in kinds} == kinds


def test_a_signature_that_differs_from_the_index_stops_the_run():
    component = registry.get("model", "transformer")
    changed = [*component.fields, ["colour", "str", "red"]]
    with pytest.raises(RuntimeError, match="index is out of date.*write_component_index"):
        registry.schema_class(component.schema_name, changed)


def test_a_run_imports_the_modules_of_the_components_it_names_only(monkeypatch):
    """The default config validated as a run does: its model's module, not the ResNet's."""
    monkeypatch.delenv("ATTNLAB_COMPONENTS")
    program = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from hydra.core.hydra_config import HydraConfig\n"
        "from omegaconf import open_dict\n"
        "from attnlab.core.config import register_schemas, validate\n"
        "from attnlab.core.paths import config_dir\n"
        "register_schemas()\n"
        "with initialize_config_dir(str(config_dir()), version_base='1.3'):\n"
        "    cfg = compose('train', return_hydra_config=True)\n"
        "HydraConfig.instance().set_config(cfg)\n"
        "with open_dict(cfg):\n"
        "    del cfg['hydra']\n"
        "validate(cfg)\n"
        "print(' '.join(m for m in sys.modules if m.startswith('attnlab.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    modules = done.stdout.split()
    assert {"attnlab.models.transformer", "attnlab.data.dates", "attnlab.tasks.seq2seq"} <= set(
        modules
    )
    assert "attnlab.models.resnet" not in modules and "attnlab.data.images" not in modules


WITH_CHOICES = [(c, name) for c in COMPONENTS for name in c.choices]


@pytest.mark.parametrize(
    "component, name", WITH_CHOICES, ids=[f"{c.group}/{c.name}.{n}" for c, n in WITH_CHOICES]
)
def test_literal_parameters_refuse_other_values(component, name):
    """Each Literal parameter's choices become a one-line error naming the key."""
    node = OmegaConf.structured(component.schema)
    for key in node:
        if OmegaConf.is_missing(node, key):
            node[key] = "a-file.csv"  # a file the user names; not checked here
    node[name] = "not-an-option"
    with pytest.raises(ConfigError, match=rf"{component.group}\.{name}='not-an-option'.*one of"):
        component.validate(node)


def test_a_model_registered_in_a_test_module_reaches_the_parametrised_tests():
    """tests/helpers/registered_model.py alone adds model=test_mean_pool."""
    assert "test_mean_pool" in test_experiments.FAMILIES
    assert ("model", "test_mean_pool") in test_configs.GROUP_OPTIONS
    assert "test_mean_pool" in [c.name for c in test_models.REGISTERED_MODELS]
    source = inspect.getsourcefile(registry.get("model", "test_mean_pool").target)
    assert Path(source).parent.name == "helpers"


def test_a_model_that_cannot_take_the_data_is_one_line(make_cfg):
    cfg = make_cfg("model=resnet", "~experiment")
    dims = TokenDims(vocab_size=5, num_classes=2, pad_id=0, max_src_len=4)
    with pytest.raises(ConfigError, match=r"model='resnet' .*model for token data; it takes image"):
        build_model(cfg, dims)
