"""Components by name, each defined once: its constructor signature is its config.

A component (a model, a data module, a task, an optimizer, ...) is registered beside its class
with ``@register(group, name)``. From its signature come the structured config that Hydra checks
while composing (types, defaults, unknown keys), the allowed values of its ``Literal``
parameters, and the config option ``group=name`` (a YAML preset of the same name, where there
is one, holds only the values that differ). Range and cross-field rules sit in a ``check``
function next to the class. Parameters that the data supplies (the fields of the component's
``data`` Dims types) and those the run passes (``runtime``: the model, the optimizer, ...) are
not config keys.

Why not hydra-zen's ``builds``: it derives the same dataclass, but the rest (the Dims contract,
``Literal`` choices with one-line errors, checks that see the data's sizes, a registry the tests
parametrise over) would still be written here; deriving the dataclass is a few lines of it.

Why a generated index (``components.json``, written by ``python tools/write_component_index.py``):
a schema comes from a signature, and reading the signature means importing the component's module
(torch, Lightning, MLflow: seconds). Hydra needs every schema before it composes, so
``attnlab train --help`` and ``--cfg job`` would pay that import for nothing. The index holds each
component's fields and the module that registers it; schemas are built from it, and a run imports
the modules of the components its config names. ``tests/test_registry.py`` fails when the index
differs from the signatures, and so does a run that imports a component whose schema changed.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import os
import pkgutil
import sys
import types
import typing
from collections.abc import Callable, Sequence
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal

from omegaconf import MISSING, DictConfig, OmegaConf

from attnlab.core.errors import ConfigError

PLUGINS_ENV = "ATTNLAB_COMPONENTS"
# Packages whose modules register components; importing them fills the registry.
COMPONENT_PACKAGES = ("attnlab.data", "attnlab.models", "attnlab.tasks")
COMPONENT_MODULES = (
    "attnlab.training.optim",
    "attnlab.training.schedules",
    "attnlab.training.lightning_trainer",
    "attnlab.tracking.logger",
)
INDEX = Path(__file__).with_name("components.json")
WRITE_INDEX = "python tools/write_component_index.py"


class Settings:
    """One config node as a check sees it: values as attributes, failures naming the full key.

    ``dims`` is the data's Dims once the data is built (None before), for rules that need the
    data's sizes.
    """

    def __init__(self, group: str, node: DictConfig, dims: Any = None):
        self._group, self._node, self.dims = group, node, dims

    def __getattr__(self, name: str) -> Any:
        return self._node[name]

    __getitem__ = __getattr__

    def get(self, name: str, default: Any = None) -> Any:
        return self._node.get(name, default)

    def __contains__(self, name: str) -> bool:
        return name in self._node

    def fail(self, name: str, allowed: str, value: Any = MISSING) -> typing.NoReturn:
        """Raise the one-line error for key ``name`` (its value, or ``value``: one item of it)."""
        value = self._node[name] if value is MISSING else value
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        raise ConfigError(f"{self._group}.{name}", value, allowed)

    def positive(self, *names: str) -> None:
        for name in names:
            if not self._node[name] > 0:
                self.fail(name, "must be > 0")

    def non_negative(self, *names: str) -> None:
        for name in names:
            if not self._node[name] >= 0:
                self.fail(name, "must be >= 0")

    def fraction(self, name: str, low_open: bool = False, high_open: bool = True) -> None:
        """A value in [0, 1), or (0, 1) / [0, 1] / (0, 1] as the flags say."""
        value = self._node[name]
        above = value > 0 if low_open else value >= 0
        below = value < 1 if high_open else value <= 1
        if not (above and below):
            self.fail(name, f"must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}")

    def finite(self) -> None:
        """Every float of the node is a finite number (inf/NaN would train nonsense)."""
        for name, value in self._node.items():
            if isinstance(value, float) and not math.isfinite(value):
                self.fail(name, "a finite number")


@dataclasses.dataclass(frozen=True)
class Component:
    """A registered class or function and what its config is made of."""

    group: str
    name: str
    target: Callable
    check: Callable[[Settings], None] | None = None
    data: tuple[type, ...] = ()  # Dims types it can be built from; () if it needs none
    runtime: tuple[str, ...] = ()  # parameters the run passes when it builds the component
    keys: tuple[str, ...] | None = None  # of a foreign target: which parameters are config keys
    partial: bool = False  # the config builds a factory (functools.partial), called later
    instantiate: bool = True  # False: a plain settings node without ``_target_``
    settings: type | None = None  # a dataclass whose fields are the keys, for a foreign target
    module: str = ""  # the module whose import registers it (set by register and add)

    @cached_property
    def target_path(self) -> str:
        """The shortest import path of the target (torch.optim.AdamW, not torch.optim.adamw...)."""
        parts, name = self.target.__module__.split("."), self.target.__qualname__
        for end in range(1, len(parts) + 1):
            module = importlib.import_module(".".join(parts[:end]))
            if getattr(module, name, None) is self.target:
                return f"{module.__name__}.{name}"
        return f"{self.target.__module__}.{name}"

    @cached_property
    def dims_params(self) -> tuple[str, ...]:
        """Parameters filled from the data's Dims."""
        supplied = {f.name for dims in self.data for f in dataclasses.fields(dims)}
        return tuple(name for name in self._parameters() if name in supplied)

    @cached_property
    def choices(self) -> dict[str, tuple]:
        """{parameter: allowed values} of the ``Literal`` parameters."""
        return {
            name: typing.get_args(hint)
            for name, hint in self._hints().items()
            if typing.get_origin(hint) is Literal and name in self.config_keys
        }

    @cached_property
    def config_keys(self) -> tuple[str, ...]:
        skip = {*self.runtime, *self.dims_params}
        parameters = self._parameters()
        keys = self.keys if self.keys is not None else tuple(parameters)
        return tuple(name for name in keys if name not in skip and name in parameters)

    @cached_property
    def fields(self) -> list[list]:
        """The schema's fields as the index holds them: [name, type name, default] each, typed
        and defaulted by the signature (``???``: no default; a tuple becomes a list)."""
        fields: list[list] = []
        if self.instantiate:
            fields.append(["_target_", "str", self.target_path])
        if self.partial:
            fields.append(["_partial_", "bool", True])
        hints, parameters = self._hints(), self._parameters()
        for name in self.config_keys:
            default = parameters[name].default
            if default is inspect.Parameter.empty:
                default = MISSING
            elif isinstance(default, tuple):
                default = list(default)
            fields.append([name, type_name(_config_type(hints.get(name, Any))), default])
        return fields

    @cached_property
    def schema(self) -> type:
        """The structured config: one field per config key, typed and defaulted by the signature."""
        return schema_class(self.schema_name, self.fields)

    @property
    def schema_name(self) -> str:
        return schema_name(self.group, self.name)

    def takes(self, name: str) -> bool:
        """Whether the target has a parameter ``name`` (a config key or a runtime one)."""
        return name in self._parameters()

    def defaults(self) -> dict[str, Any]:
        """{config key: default}; keys without a default are left out."""
        parameters = self._parameters()
        return {
            name: parameters[name].default
            for name in self.config_keys
            if parameters[name].default is not inspect.Parameter.empty
        }

    def validate(self, node: DictConfig, dims: Any = None) -> None:
        """The choices of ``Literal`` keys, finite numbers, then the component's own check."""
        settings = Settings(self.group, node, dims)
        for name, allowed in self.choices.items():
            if node[name] not in allowed:
                settings.fail(name, f"one of {', '.join(map(str, allowed))}")
        settings.finite()
        if self.check is not None:
            self.check(settings)

    def _parameters(self) -> dict[str, inspect.Parameter]:
        """Named parameters; a constructor's ``**kwargs`` stand for its base class's."""
        parameters: dict[str, inspect.Parameter] = {}
        for function in self._functions():
            for name, p in inspect.signature(function).parameters.items():
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
                    parameters.setdefault(name, p)
        parameters.pop("self", None)
        return parameters

    def _hints(self) -> dict[str, Any]:
        hints: dict[str, Any] = {}
        for function in reversed(self._functions()):
            hints.update(typing.get_type_hints(function))
        return hints

    def _functions(self) -> list[Callable]:
        """The target, or its ``__init__`` and those of the bases its ``**kwargs`` reach."""
        if self.settings is not None:
            return [self.settings.__init__]
        if not inspect.isclass(self.target):
            return [self.target]
        functions = []
        for cls in self.target.__mro__:
            init = cls.__dict__.get("__init__")
            if init is None:
                continue
            functions.append(init)
            kinds = [p.kind for p in inspect.signature(init).parameters.values()]
            if inspect.Parameter.VAR_KEYWORD not in kinds:
                break
        return functions


def _config_type(hint: Any) -> Any:
    """A Python annotation -> the closest type OmegaConf checks (Literal -> its values' type)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in (int, float, bool, str):
        return hint
    if origin is Literal:
        return type(args[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        kinds = {_config_type(m) for m in members} - {Any}  # float | Tensor -> float
        kind = kinds.pop() if len(kinds) == 1 else Any
        return typing.Optional[kind] if type(None) in args and kind is not Any else kind  # noqa: UP045
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        element = _config_type(next((a for a in args if a is not Ellipsis), Any))
        return list[element] if element in (int, float, str, bool) else list
    return Any


CONFIG_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "Any": Any}


def type_name(kind: Any) -> str:
    """A type of ``_config_type`` as the index writes it: ``int``, ``list[float]``,
    ``Optional[str]``."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]: the only union _config_type returns
        return f"Optional[{type_name(typing.get_args(kind)[0])}]"
    if origin is list:
        return f"list[{type_name(typing.get_args(kind)[0])}]"
    return next(name for name, known in CONFIG_TYPES.items() if known is kind)


def type_from_name(name: str) -> Any:
    """The type ``type_name`` wrote as ``name``."""
    if name.startswith("Optional["):
        return typing.Optional[type_from_name(name.removeprefix("Optional[")[:-1])]  # noqa: UP045
    if name.startswith("list["):
        return list[type_from_name(name.removeprefix("list[")[:-1])]
    return CONFIG_TYPES[name]


def schema_name(group: str, name: str) -> str:
    """The schema class name of ``group=name``: model, transformer -> ModelTransformerConfig."""
    return "".join(part.title() for part in f"{group}_{name}_config".split("_"))


# Schema name -> (its fields as JSON, the class): one class per schema in a process, whether the
# index or a component's signature built it first, so that a node's type identifies its component.
_SCHEMAS: dict[str, tuple[str, type]] = {}


def schema_class(name: str, fields: list[list]) -> type:
    """The dataclass ``name`` with ``fields`` ([name, type name, default] each; a list or dict
    default is copied for each config). Asked again with other fields (the index and a signature
    disagree), a RuntimeError says to write the index again."""
    spec = json.dumps(fields)
    if name in _SCHEMAS:
        known_spec, schema = _SCHEMAS[name]
        if spec != known_spec:
            raise RuntimeError(
                f"{name}: the fields of {INDEX.name} differ from the component's signature "
                f"(the index is out of date); write it again: {WRITE_INDEX}"
            )
        return schema
    entries = []
    for key, kind, default in fields:
        if isinstance(default, list | dict):  # a fresh container per config
            field = dataclasses.field(default_factory=default.copy)
        else:
            field = dataclasses.field(default=default)
        entries.append((key, type_from_name(kind), field))
    # Named in this module (see __getattr__ below), so that pickle refers to the class by
    # name. Pickled by value, a launcher's returns would overwrite the class's fields in
    # this process with copies of dataclasses.MISSING, which OmegaConf no longer recognises.
    schema = dataclasses.make_dataclass(name, entries)
    schema.__module__ = __name__
    _SCHEMAS[name] = (spec, schema)
    return schema


@cache
def index() -> dict[str, dict]:
    """``{"group/name": {"module": ..., "fields": [...]}}`` of attnlab's own components, as
    ``write_index`` wrote it: their schemas without importing their modules."""
    return json.loads(INDEX.read_text())


def signature_index() -> dict[str, dict]:
    """The index as attnlab's component modules define it now (imports them all)."""
    load_own()
    own = [c for c in REGISTRY.values() if c.module.partition(".")[0] == "attnlab"]
    own.sort(key=lambda c: (c.group, c.name))
    return {f"{c.group}/{c.name}": {"module": c.module, "fields": c.fields} for c in own}


def write_index() -> Path:
    """Write ``components.json`` from the signatures, one field a line; return its path."""
    entries = []
    for key, entry in signature_index().items():
        fields = ",\n".join(f"  {json.dumps(field)}" for field in entry["fields"])
        module = json.dumps(entry["module"])
        entries.append(f'{json.dumps(key)}: {{"module": {module}, "fields": [\n{fields}\n]}}')
    INDEX.write_text("{\n" + ",\n".join(entries) + "\n}\n")
    index.cache_clear()
    return INDEX


def schemas() -> dict[tuple[str, str], type]:
    """{(group, name): schema} of every component: attnlab's from the index (no component
    module is imported), then those the modules of $ATTNLAB_COMPONENTS register."""
    found = {}
    for key, entry in index().items():
        group, name = key.split("/")
        found[group, name] = schema_class(schema_name(group, name), entry["fields"])
    for module_name in extra_modules():
        importlib.import_module(module_name)
    for component in list(REGISTRY.values()):
        if (component.group, component.name) not in found:
            found[component.group, component.name] = component.schema
    return found


REGISTRY: dict[tuple[str, str], Component] = {}


def __getattr__(name: str) -> type:
    """A component's schema by its class name (``ModelTransformerConfig``), for pickle."""
    if name.startswith("_") or not name.endswith("Config"):  # probes such as __wrapped__
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for key, entry in index().items():
        if schema_name(*key.split("/")) == name:
            return schema_class(name, entry["fields"])
    load()
    for component in list(REGISTRY.values()):
        if component.schema_name == name:
            return component.schema
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register(group: str, name: str, **options: Any) -> Callable:
    """Class or function decorator: register it as ``group=name`` (see :class:`Component`)."""

    def decorate(target: Callable) -> Callable:
        add(Component(group, name, target, module=target.__module__, **options))
        return target

    return decorate


def add(component: Component) -> Component:
    """Register a component whose class is not ours (torch's optimizers, Lightning's Trainer);
    the calling module is the one the index names as registering it."""
    if not component.module:  # found as collections.namedtuple finds its module
        component = dataclasses.replace(component, module=sys._getframe(1).f_globals["__name__"])
    key = (component.group, component.name)
    known = REGISTRY.get(key)
    if known is not None and known.target_path != component.target_path:
        raise ValueError(f"{component.group}={component.name} is registered twice")
    REGISTRY[key] = component
    return component


def load() -> None:
    """Import every module that registers components: attnlab's, then those named in
    $ATTNLAB_COMPONENTS (comma-separated modules of the user's own, importable everywhere the
    run goes: launchers' worker processes import them too)."""
    load_own()
    for module_name in extra_modules():
        importlib.import_module(module_name)


def load_own() -> None:
    """Import every module of attnlab that registers components."""
    for package_name in COMPONENT_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__, f"{package_name}."):
            importlib.import_module(module.name)
    for module_name in COMPONENT_MODULES:
        importlib.import_module(module_name)


def extra_modules() -> list[str]:
    """The user's modules named in $ATTNLAB_COMPONENTS."""
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def components(group: str) -> list[Component]:
    load()
    return sorted((c for c in REGISTRY.values() if c.group == group), key=lambda c: c.name)


def get(group: str, name: str) -> Component:
    load()
    try:
        return REGISTRY[group, name]
    except KeyError:
        options = ", ".join(c.name for c in components(group))
        raise ConfigError(group, name, f"one of {options}") from None


def for_node(group: str, node: DictConfig) -> Component | None:
    """The component a composed node configures: by its schema type, else by ``_target_``."""
    kind = OmegaConf.get_type(node)
    target = node.get("_target_") if isinstance(node, DictConfig) else None
    import_registering(group, kind, target)
    for component in list(REGISTRY.values()):
        if component.group == group and (
            component.schema is kind or (target and component.target_path == target)
        ):
            return component
    return None


def import_registering(group: str, kind: Any, target: str | None) -> None:
    """Import the module that registers the ``group`` component of a node of schema type
    ``kind`` or with ``_target_`` ``target``: the one the index names, else every module."""
    schema = kind.__name__ if getattr(kind, "__module__", None) == __name__ else None
    for key, entry in index().items():
        entry_group, name = key.split("/")
        targeted = ["_target_", "str", target] in entry["fields"]
        if entry_group == group and (schema == schema_name(group, name) or targeted):
            importlib.import_module(entry["module"])
            return
    load()


# Modules whose components moved when attnlab's top level was grouped by concern: a config
# stored before (a predictor.pt's) names its ``_target_`` there.
MOVED_MODULES = {
    "attnlab.optim": "attnlab.training.optim",
    "attnlab.schedules": "attnlab.training.schedules",
    "attnlab.regularization": "attnlab.tasks.regularization",
    "attnlab.trainer": "attnlab.training.lightning_trainer",
    "attnlab.training.trainer": "attnlab.training.lightning_trainer",
    "attnlab.tracking": "attnlab.tracking.logger",
}


def current_targets(tree: Any) -> Any:
    """A stored config (plain dicts and lists) with each ``_target_`` in a moved module renamed."""
    if isinstance(tree, list):
        return [current_targets(item) for item in tree]
    if not isinstance(tree, dict):
        return tree
    renamed = {key: current_targets(value) for key, value in tree.items()}
    module, _, name = str(renamed.get("_target_", "")).rpartition(".")
    if module in MOVED_MODULES:
        renamed["_target_"] = f"{MOVED_MODULES[module]}.{name}"
    return renamed


def build(group: str, node: DictConfig, dims: Any = None, **runtime: Any) -> Any:
    """Instantiate ``node`` with the sizes it needs from ``dims`` and the run's objects.

    A component that cannot take this data (a ResNet on dates) is one line naming the option.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    component = for_node(group, node)
    if component is None:
        return instantiate(node, **runtime)
    if component.data and not isinstance(dims, component.data):
        kinds = " or ".join(d.__name__.removesuffix("Dims").lower() for d in component.data)
        given = type(dims).__name__.removesuffix("Dims").lower()
        raise ConfigError(group, component.name, f"a {group} for {given} data; it takes {kinds}")
    published = (f.name for f in dataclasses.fields(dims)) if component.data else ()
    sizes = {name: getattr(dims, name) for name in published if name in component.dims_params}
    try:
        return instantiate(node, **sizes, **runtime, _convert_="all")
    except InstantiationException as error:  # a rule that needs the built objects
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise
