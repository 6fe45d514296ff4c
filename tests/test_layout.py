"""The package's wings import one way: core <- models, data <- tasks, tracking <- serving <-
training <- commands (and claims, bench, sweeper); training never imports command or UI code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import attnlab
from attnlab.core import registry

PACKAGE = Path(attnlab.__file__).parent
# Wings each wing may import (besides itself); claims, bench and sweeper sit on top.
ALLOWED = {
    "core": {"core"},
    "models": {"core"},
    "data": {"core"},
    "tasks": {"core", "models"},  # models: the generic decoders
    "tracking": {"core"},
    "serving": {"core", "data", "tasks"},
    "training": {"core", "models", "data", "tasks", "tracking", "serving"},
}
# Imported inside a function, when a run resolves its folder's name: the resolvers that need
# the launch's environment and the resume point.
LATE = {
    ("attnlab.core.config", "attnlab.training"),
    ("attnlab.core.config", "attnlab.training.distributed"),
}
COMMAND_CODE = ("attnlab.cli", "attnlab.commands")


def imports(path: Path) -> set[str]:
    """The attnlab modules ``path`` imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attnlab"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("attnlab."))
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def wing(module: str) -> str:
    return module.split(".")[1] if "." in module else module


MODULES = sorted(PACKAGE.rglob("*.py"))
# Commands and the features on top (claims, bench, sweeper) may import any wing.
LAYERED = [path for path in MODULES if wing(module_name(path)) in ALLOWED]


@pytest.mark.parametrize("path", LAYERED, ids=module_name)
def test_a_module_imports_only_the_wings_below_it(path):
    importer = module_name(path)
    allowed = ALLOWED[wing(importer)]
    upward = {
        target
        for target in imports(path)
        if target != "attnlab"
        and wing(target) not in allowed | {wing(importer)}
        and (importer, target) not in LATE
    }
    assert not upward, f"{importer} imports {sorted(upward)}"


def test_training_code_never_imports_command_or_ui_code():
    training = [p for p in MODULES if wing(module_name(p)) in ("training", "tasks", "tracking")]
    offenders = {
        module_name(p): sorted(t for t in imports(p) if t.startswith(COMMAND_CODE))
        for p in training
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_a_config_stored_before_the_modules_moved_names_targets_that_still_import():
    from hydra.utils import get_object

    stored = {
        "scheduler": {"_target_": "attnlab.schedules.warmup_cosine", "warmup_steps": 2},
        "optim": {"_target_": "torch.optim.AdamW", "lr": 0.001},
        "logger": [{"_target_": "attnlab.tracking.RunLogger"}],
        "model": {"_target_": "attnlab.models.transformer.Seq2SeqTransformer"},
    }
    current = registry.current_targets(stored)
    assert current["scheduler"] == {
        "_target_": "attnlab.training.schedules.warmup_cosine",
        "warmup_steps": 2,
    }
    assert current["logger"][0]["_target_"] == "attnlab.tracking.logger.RunLogger"
    assert current["optim"] == stored["optim"]
    for node in (current["scheduler"], current["optim"], current["logger"][0], current["model"]):
        get_object(node["_target_"])
