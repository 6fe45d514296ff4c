"""The run-level config (seed, objective, tags), the registry's schemas in Hydra's ConfigStore,
and ``validate``: every rule of every chosen component, checked in one place.

Each component's keys, defaults and rules are defined beside its class (attnlab.core.registry);
YAML presets in conf/ name their schema in their defaults list (``/schema/<group>/<name>@_here_``)
and hold only the values that differ. ``register_schemas`` also registers the resolvers
``lr_for_batch`` (the linear scaling rule: ``${lr_for_batch:0.1,${data.batch_size},128}`` gives
0.1 at a batch of 128 and 0.025 at 32), ``monitor_for`` and ``mode_for`` (the callbacks watch the
objective's validation counterpart), ``job_log_name`` and ``launch_token``.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, get_object
from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab.core import registry
from attnlab.core.errors import ConfigError
from attnlab.core.paths import config_dir, sweeps_dir


@dataclass
class Objective:
    metric: str = "test/exact_match"
    direction: str = "maximize"

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise ConfigError("objective.direction", self.direction, "maximize or minimize")


@dataclass
class Paths:
    log_dir: str = "logs"  # relative to the working directory
    output_dir: str | None = "${hydra:runtime.output_dir}"  # None outside a Hydra run


@dataclass
class Run:
    """The root config: run-level keys; every group is typed by its own schema."""

    task_name: str = "attnlab"
    seed: int = 0
    objective: Objective = field(default_factory=Objective)
    tags: dict[str, str] = field(default_factory=dict)
    resume: str | None = None  # auto: continue the newest unfinished run of this command
    log_model: bool = True  # save predictor.pt and log the MLflow model (seq2seq on text)
    register_model: str | None = None  # also register the logged model under this name
    eval_checkpoint: str | None = None  # attnlab eval: test this checkpoint, train nothing
    eval_of_run: str | None = None  # attnlab eval: the run that trained it (tag attnlab.evaluates)
    data: Any = None
    model: Any = None
    task: Any = None
    optim: Any = None
    scheduler: Any = None
    regularization: Any = None
    trainer: Any = None
    logger: Any = None
    callbacks: Any = None
    paths: Paths = field(default_factory=Paths)
    debug: Any = None
    experiment: Any = None
    scale: Any = None
    sweep: Any = None
    trial: Any = None  # set by the Optuna sweeper for its jobs: the trial's number


GROUPS = ("data", "model", "task", "optim", "scheduler", "regularization", "trainer", "logger")
# Groups of whole-config presets ("# @package _global_"): options, never keys of their own.
PRESET_GROUPS = ("debug", "experiment", "scale", "sweep")
INSTANTIATE_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def lr_for_batch(base_lr: float, batch_size: int, base_batch_size: int) -> float:
    """The linear scaling rule (Goyal et al. 2017): base_lr x batch_size / base_batch_size."""
    return base_lr * batch_size / base_batch_size


def monitor_for(metric: str) -> str:
    """The validation metric that stands for the objective while training: ``test/acc`` ->
    ``val/acc`` (what checkpoints and early stopping watch unless a config names another)."""
    return f"val/{metric.split('/', 1)[-1]}"


def mode_for(direction: str) -> str:
    """``maximize`` -> ``max``, ``minimize`` -> ``min``: Lightning's word for the direction."""
    return {"maximize": "max", "minimize": "min"}[direction]


def resume_folder(resume: str | None, tracking_uri: str | None, new_folder: str) -> str:
    """The resolver behind ``hydra.run.dir`` (:func:`attnlab.training.resume.resume_folder`), whose
    module (Lightning) is imported once a run resolves its folder, not by --help or --cfg."""
    from attnlab.training import resume as resuming

    return resuming.resume_folder(resume, tracking_uri, new_folder)


def register_schemas() -> None:
    """Resolvers, the run schema, and every registered component's schema.

    A component is stored as ``schema/<group>/<name>`` (what YAML presets extend) and, when
    conf/ has no preset of that name, as the option ``<group>/<name>`` itself. attnlab's own
    schemas come from the registry's index, so no component module (torch) is imported here.
    The sweeps of the top-level sweeps/ folder become the options of the ``sweep`` group.
    """
    from attnlab.core.third_party import share_config_store
    from attnlab.training.distributed import job_log_name, launch_token

    share_config_store()
    OmegaConf.register_new_resolver("lr_for_batch", lr_for_batch, replace=True)
    OmegaConf.register_new_resolver("monitor_for", monitor_for, replace=True)
    OmegaConf.register_new_resolver("mode_for", mode_for, replace=True)
    OmegaConf.register_new_resolver("job_log_name", job_log_name, replace=True)
    OmegaConf.register_new_resolver("resume_folder", resume_folder, replace=True)
    # cached in the config, so jobs a launcher pickles (joblib, submitit) keep the launch's token
    OmegaConf.register_new_resolver("launch_token", launch_token, replace=True, use_cache=True)
    store = ConfigStore.instance()
    store.store(name="run", node=Run)
    for path in sorted(sweeps_dir().glob("*.yaml")):  # sweep=NAME
        store.store(group="sweep", name=path.stem, node=OmegaConf.load(path), package="_global_")
    for (group, name), schema in registry.schemas().items():
        store.store(group=f"schema/{group}", name=name, node=schema)
        if not (config_dir() / group / f"{name}.yaml").is_file():
            store.store(group=group, name=name, node=schema)


def validate(cfg: DictConfig, dims: Any = None) -> None:
    """Check every chosen component's rules and the run's cross-group rules; raise ConfigError
    on the first failure. Called before anything is built, and again with the data's ``dims``
    once the data is set up (rules such as a model's max_len need its sizes)."""
    check_read_keys(cfg)
    for group in GROUPS:
        node = cfg.get(group)
        component = registry.for_node(group, node) if isinstance(node, DictConfig) else None
        if component is not None:
            component.validate(node, dims)
    OmegaConf.to_object(cfg.objective)
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError("seed", cfg.seed, "an integer in [0, 2**32)")
    task_class = get_class(cfg.task._target_)
    _check_regularization(cfg, task_class)
    split, _, name = cfg.objective.metric.partition("/")
    allowed = [f"{s}/{m}" for s in ("val", "test") for m in task_class.metric_names]
    if split not in ("val", "test") or name not in task_class.metric_names:
        raise ConfigError("objective.metric", cfg.objective.metric, f"one of {', '.join(allowed)}")
    for name, callback in (cfg.get("callbacks") or {}).items():
        monitor = callback.get("monitor") if isinstance(callback, DictConfig) else None
        if monitor is not None and monitor not in allowed:
            raise ConfigError(f"callbacks.{name}.monitor", monitor, f"one of {', '.join(allowed)}")
    _check_bucketing_sampler(cfg)
    _check_checkpointing(cfg)
    _check_resume(cfg)


def check_read_keys(cfg: DictConfig) -> None:
    """Refuse a key that nothing reads, which would otherwise be ignored without a word.

    Hydra's ``+key=value`` adds a key to any node, typed ones included. Every typed node (the
    run, the objective, the paths, each component: typed by its registry schema) keeps its
    schema's keys; preset groups hold none; each callback needs a ``_target_`` that takes its
    keys (the sweeper's ``trial`` and the free-form ``tags`` are left alone).
    """
    _check_typed_keys(cfg, "")
    for group in PRESET_GROUPS:
        if cfg.get(group) is not None:
            allowed = f"an option ({group}=NAME); a preset group has no keys of its own"
            raise ConfigError(group, _plain(cfg[group]), allowed)
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is not None:
            _check_callback_keys(f"callbacks.{name}", node)


def _check_typed_keys(node: DictConfig, path: str) -> None:
    kind = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(kind):
        keys = [f.name for f in dataclasses.fields(kind)]
        for key in node:
            if key not in keys and key not in INSTANTIATE_KEYS:
                where = f"{path.rstrip('.')} ({kind.__name__})" if path else "the top level"
                listed = ", ".join(k for k in keys if not k.startswith("_"))
                raise ConfigError(f"{path}{key}", _plain(node[key]), f"a key of {where}: {listed}")
    for key in node:
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none():
            _check_typed_keys(child, f"{path}{key}.")


def _check_callback_keys(path: str, node: Any) -> None:
    """A callback node names an importable ``_target_`` whose parameters take its keys."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        allowed = "null or a node with _target_ (a Lightning Callback) and its arguments"
        raise ConfigError(path, _plain(node), allowed)
    try:
        target = get_object(node._target_)
    except Exception as error:
        allowed = f"an importable callable ({' '.join(str(error).split()[:12])})"
        raise ConfigError(f"{path}._target_", node._target_, allowed) from None
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in node:
        if key not in names and key not in INSTANTIATE_KEYS:
            allowed = f"a parameter of {node._target_}: {', '.join(names) or 'none'}"
            raise ConfigError(f"{path}.{key}", _plain(node[key]), allowed)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def _check_regularization(cfg: DictConfig, task_class: type) -> None:
    """Drop the regularization keys the run does not use (e.g. label smoothing of a forecast),
    so its params record only what it used; one named on the command line is an error."""
    regularization = cfg.get("regularization")
    if not isinstance(regularization, DictConfig):
        return
    task = registry.for_node("task", cfg.task)
    used = {key for key in regularization if task is not None and task.takes(key)}
    size = regularization.get("ensemble_size", 1)
    if task_class.supports_ensembles:
        used |= {"ensemble_size", "ensemble_mode"} if size > 1 else {"ensemble_size"}
    elif size > 1:
        allowed = f"1 with {task_class.__name__} (ensembles need a classification task)"
        raise ConfigError("regularization.ensemble_size", size, allowed)
    named = _command_line_keys()
    for key in sorted(set(regularization) - used):
        if f"regularization.{key}" in named and key != "ensemble_mode":  # sweeps sample it
            allowed = f"no value: {task_class.__name__} does not use it"
            raise ConfigError(f"regularization.{key}", regularization[key], allowed)
    kept = {key: value for key, value in regularization.items() if key in used}
    with open_dict(cfg):
        cfg.regularization = OmegaConf.create(kept)


def _command_line_keys() -> set[str]:
    """The keys the run's own overrides set (``a.b=1``, ``+a.b=1``, ``++a.b=1``)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    overrides = HydraConfig.get().overrides.task
    return {override.split("=", 1)[0].lstrip("+~") for override in overrides}


def _check_bucketing_sampler(cfg: DictConfig) -> None:
    """Lightning cannot put its DistributedSampler into a bucket sampler, which shards itself."""
    data, trainer = cfg.get("data") or {}, cfg.get("trainer") or {}
    if not data.get("bucketing") or not trainer.get("use_distributed_sampler", True):
        return
    one_device = trainer.get("devices") in (1, "1") and trainer.get("num_nodes", 1) == 1
    if not (one_device and trainer.get("strategy") in ("auto", "single_device")):
        allowed = "false with data.bucketing=true on several devices (the sampler shards itself)"
        raise ConfigError("trainer.use_distributed_sampler", True, allowed)


def _check_checkpointing(cfg: DictConfig) -> None:
    """Lightning refuses a checkpoint callback in a Trainer whose checkpointing is off."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    if (cfg.get("trainer") or {}).get("enable_checkpointing", True):
        return
    for name, node in (cfg.get("callbacks") or {}).items():
        target = get_object(node._target_) if node else None
        if isinstance(target, type) and issubclass(target, ModelCheckpoint):
            allowed = f"true while callbacks.{name} saves checkpoints (or callbacks.{name}=null)"
            raise ConfigError("trainer.enable_checkpointing", False, allowed)


def _check_resume(cfg: DictConfig) -> None:
    """``resume`` is null or auto; the last checkpoint is saved every N >= 1 steps."""
    if cfg.get("resume") not in (None, "auto"):
        allowed = "auto (continue the newest unfinished run of this command) or null"
        raise ConfigError("resume", cfg.resume, allowed)
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.get("resume") and multirun:
        allowed = "null with -m: a sweep resumes through its Optuna study (rerun the command)"
        raise ConfigError("resume", cfg.resume, allowed)
    last = (cfg.get("callbacks") or {}).get("last_checkpoint")
    if last and not (
        isinstance(last.get("every_n_train_steps"), int) and last.every_n_train_steps >= 1
    ):
        key = "callbacks.last_checkpoint.every_n_train_steps"
        raise ConfigError(key, last.get("every_n_train_steps"), "an integer >= 1")
