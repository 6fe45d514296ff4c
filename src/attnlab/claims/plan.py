"""``attnlab claim plan``: what a claim's runs at a scale cost, found before any GPU is used.

Each variant is composed with the overrides ``attnlab claim run`` passes (Hydra's compose API:
the config ``attnlab train --cfg job`` prints) and validated, so a bad override fails here. On a
machine without CUDA the GPU trainer is validated as a CPU one: the run checks its devices.

The FLOPs of a run are measured, not modelled: torch's FlopCounterMode counts the matrix
products and convolutions of one training step (the task's loss on one real batch of the
preset's sizes, forward and backward) on this machine's CPU, times the batches the run trains
on (``trainer.max_steps``, or ``max_epochs`` times the batches of an epoch, whichever ends it
first). 6 x parameters x tokens (Kaplan et al. 2020) would miss a convolution's reuse of its
weights over positions; the counter does not. Left out: validation and test passes,
optimizer updates and elementwise work; a step's FLOPs vary with the padded length of its
batch; early stopping may end a run sooner. GPU hours divide the FLOPs by an assumed
sustained throughput (``--peak-tflops``): small models reach a small share of it, so the hours
are a floor. Data that lives only on the GPU machine (``data.data_dir`` missing here) leaves
the FLOPs unknown; a claim on a benchmark gets its commands, not FLOPs.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.claims import run as claim_run
from attnlab.claims.spec import Claim

PEAK_TFLOPS = 100.0  # sustained bf16 on one GPU: an assumption (an H100's dense peak is ~989)


@dataclass
class VariantPlan:
    """One variant at a scale: its composed config, the batches a run trains on and the FLOPs
    of one; ``note`` says why a figure is unknown or what bounds it."""

    variant: str
    overrides: list[str]
    cfg: Any = None  # the composed DictConfig; None for a claim on a benchmark
    choices: dict[str, str] = dataclasses.field(default_factory=dict)  # config group -> option
    batches: int | None = None
    step_flops: float | None = None
    note: str = ""

    @property
    def run_flops(self) -> float | None:
        if self.batches is None or self.step_flops is None:
            return None
        return self.batches * self.step_flops


def plan_claim(
    claim: Claim, scale: str, seeds: list[int], extra: list[str], measure_rows: int | None = None
) -> list[VariantPlan]:
    """Every variant of ``claim`` at ``scale``, composed, validated and measured (one step on
    ``measure_rows`` rows of the batch scaled to the whole batch, when given)."""
    claim_run.check_scale(claim, scale)
    if claim.command:
        note = "a timing benchmark: FLOPs not estimated (its repeats, not FLOPs, set its time)"
        return [
            VariantPlan(v, claim_run.command_args(claim, v, scale, extra), note=note)
            for v in claim.variants
        ]
    plans = []
    data_cache: dict[str, Any] = {}
    for variant in claim.variants:
        overrides = claim_run.job_overrides(claim, variant, str(seeds[0]), scale, extra)
        cfg, choices = compose(overrides)
        plan = VariantPlan(variant, overrides, cfg, choices)
        measure(plan, data_cache, measure_rows)
        plans.append(plan)
    return plans


def compose(overrides: list[str]) -> tuple[Any, dict[str, str]]:
    """The train config of ``overrides`` as a job receives it, and its group choices; validated
    (as a CPU trainer where this machine has no CUDA)."""
    import torch
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from attnlab.core.config import register_schemas, validate
    from attnlab.core.paths import config_dir

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = tempfile.mkdtemp(prefix="attnlab-plan-")
    HydraConfig.instance().set_config(cfg)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    checked = cfg.copy()
    if not torch.cuda.is_available():
        with open_dict(checked):
            checked.trainer.accelerator = "cpu"
    validate(checked)
    return cfg, choices


def measure(plan: VariantPlan, data_cache: dict[str, Any], measure_rows: int | None) -> None:
    """Fill in ``plan``'s batches per run and FLOPs per step; data modules are built once per
    data config and kept in ``data_cache``."""
    from omegaconf import OmegaConf

    cfg = plan.cfg
    data_dir = cfg.data.get("data_dir")
    if data_dir and not Path(data_dir).exists():
        plan.note = f"no data in data.data_dir={data_dir} here: FLOPs unknown"
        if cfg.trainer.get("max_steps", -1) != -1:
            plan.note += f" (at most {cfg.trainer.max_steps} steps)"
        return
    key = OmegaConf.to_yaml(cfg.data)
    with warnings.catch_warnings():  # torchdata's deprecation notes
        warnings.simplefilter("ignore")
        if key not in data_cache:
            data_cache[key] = build_data(cfg)
        datamodule = data_cache[key]
        plan.batches = bound_batches(cfg.trainer, epoch_batches(cfg.trainer, datamodule))
        plan.step_flops = step_flops(cfg, datamodule, measure_rows)
    if (cfg.get("callbacks") or {}).get("early_stopping"):
        plan.note = "early stopping may end it sooner"


def build_data(cfg: Any) -> Any:
    """The data module of ``cfg``, set up for fitting, its loaders in this process."""
    import lightning.pytorch as L
    from hydra.utils import instantiate

    from attnlab.core.config import validate

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data, num_workers=0)  # the batches are the same
    datamodule.setup("fit")
    checked = cfg.copy()
    checked.trainer.accelerator = "cpu"
    validate(checked, datamodule.dims)
    return datamodule


def epoch_batches(trainer: Any, datamodule: Any) -> int:
    """Training batches of one epoch, after ``trainer.limit_train_batches``."""
    batches = len(datamodule.train_dataloader())
    limit = trainer.get("limit_train_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(batches, limit)
    return batches if limit is None else int(batches * limit)


def bound_batches(trainer: Any, per_epoch: int) -> int | None:
    """The batches a run trains on: Lightning stops at ``max_steps`` optimizer steps
    (``accumulate_grad_batches`` batches each) or ``max_epochs`` epochs, whichever comes first
    (None: neither is set)."""
    bounds = []
    if trainer.get("max_steps", -1) != -1:
        bounds.append(trainer.max_steps * trainer.get("accumulate_grad_batches", 1))
    if trainer.get("max_epochs") not in (None, -1):
        bounds.append(trainer.max_epochs * per_epoch)
    return min(bounds) if bounds else None


def step_flops(cfg: Any, datamodule: Any, measure_rows: int | None) -> float:
    """FLOPs of one training step on the first batch, counted by FlopCounterMode on the CPU."""
    import lightning.pytorch as L

    from attnlab.tasks.build import build_model, build_task

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg, datamodule.dims)
    task = build_task(cfg, model, datamodule.dims)
    batch = next(iter(datamodule.train_dataloader()))
    rows = batch_rows(batch)
    if measure_rows and measure_rows < rows:
        batch = first_rows(batch, measure_rows)
    flops = count_flops(lambda: task.training_step(batch, 0).backward())
    return flops * rows / batch_rows(batch)


def count_flops(step: Callable[[], Any]) -> int:
    """The FLOPs of ``step``'s matrix products and convolutions, forward and backward, as torch's
    FlopCounterMode counts them, the CPU's fused attention and LSTM kernels included."""
    import torch
    from torch.utils import flop_counter

    aten = torch.ops.aten
    cpu_attention = {  # torch's table counts the CUDA attention kernels only
        aten._scaled_dot_product_flash_attention_for_cpu: attention_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward_flops,
    }
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=cpu_attention)
    # oneDNN's LSTM is one opaque kernel; without it the products of each cell are counted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flags' note on TF32; self.log outside a Trainer
        with torch.backends.mkldnn.flags(enabled=False), counter:
            step()
    return counter.get_total_flops()


def attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils import flop_counter

    return flop_counter.sdpa_flop_count(query, key, value)


def attention_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    from torch.utils import flop_counter

    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def batch_rows(batch: Any) -> int:
    """The examples in a batch: a tuple of tensors or a dataclass of them, rows first."""
    fields = dataclasses.astuple(batch) if dataclasses.is_dataclass(batch) else batch
    return len(fields[0])


def first_rows(batch: Any, rows: int) -> Any:
    """The first ``rows`` examples of a batch (padded widths unchanged, so a step's FLOPs
    scale with its rows)."""
    if dataclasses.is_dataclass(batch):
        values = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
        return dataclasses.replace(batch, **{k: v[:rows] for k, v in values.items()})
    return type(batch)(part[:rows] for part in batch)


def quantity(value: float | None, unit: float, digits: str = ".3g") -> str:
    return "unknown" if value is None else format(value / unit, digits)


def hours(flops: float | None, peak_tflops: float) -> float | None:
    return None if flops is None else flops / (peak_tflops * 1e12) / 3600


def report(
    claim: Claim, plans: list[VariantPlan], scale: str, seeds: list[int], peak_tflops: float
) -> tuple[str, float | None]:
    """The plan as text (table, assumptions, commands) and its total GPU hours (None when
    any run's FLOPs are unknown)."""
    seed_text = " ".join(map(str, seeds))
    lines = [f"claim {claim.name} at scale {scale}: {len(plans)} variants x {len(seeds)} seeds"]
    header = ("variant", "batches", "GFLOP/batch", "PFLOP/run", "GPU h/run", "GPU h, all seeds")
    rows = [header]
    totals = []
    for plan in plans:
        run_hours = hours(plan.run_flops, peak_tflops)
        all_seeds = None if run_hours is None else run_hours * len(seeds)
        totals.append(all_seeds)
        rows.append((
            plan.variant,
            "unknown" if plan.batches is None else str(plan.batches),
            quantity(plan.step_flops, 1e9),
            quantity(plan.run_flops, 1e15),
            quantity(run_hours, 1, ".3g"),
            quantity(all_seeds, 1, ".3g"),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row, plan in zip(rows, [None, *plans], strict=True):
        text = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        lines.append(f"  {text}  {plan.note if plan else ''}".rstrip())
    total = None if None in totals else math.fsum(totals)
    lines.append(f"  total: {quantity(total, 1, '.3g')} GPU hours at {peak_tflops:g} TFLOPS")
    lines.append(f"run: attnlab claim run {claim.name} --scale {scale} --seeds {seed_text}")
    for plan in plans:
        if plan.cfg is None:
            command = shlex.join(["attnlab", *plan.overrides])
            lines.append(f"  {plan.variant}: {command}  (once per seed, tagged)")
        else:
            overrides = [*plan.overrides]
            overrides[overrides.index(f"seed={seeds[0]}")] = f"seed={','.join(map(str, seeds))}"
            lines.append(f"  {plan.variant}: {shlex.join(['attnlab', 'train', '-m', *overrides])}")
    return "\n".join(lines), total
