"""Lightning callbacks of attnlab's own, for what Lightning's callbacks do not cover."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as L
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch.utils.data import default_collate
from torchmetrics.classification import MulticlassHammingDistance

from attnlab.core.contracts import (
    AttendsPairs,
    AttendsSource,
    HasDeletableBlocks,
    HasLayerEnds,
    HasSeriesScale,
    HasSourceText,
    HasTokenText,
)
from attnlab.core.errors import Diverged
from attnlab.core.metric_keys import bucket_metrics, bucket_order
from attnlab.core.plots import attention_grid, bucket_bars, forecast_windows
from attnlab.data.text import pad_batch
from attnlab.models.norms import channels_per_group
from attnlab.serving import decoded_attention

# DejaVu Sans, matplotlib's bundled font, has Latin, Greek and Cyrillic but no CJK glyphs.
PLOTTABLE_MAX_CODEPOINT = 0x2000


def log_figure(trainer: L.Trainer, fig, artifact_file: str, output_dir: str | None) -> None:
    """Save a figure under the run's output directory and log it to every MLflow logger."""
    if output_dir:
        path = Path(output_dir, artifact_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, fig, artifact_file)
    plt.close(fig)


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, showing the training loss and the ``monitor`` metric (the
    one checkpoints and early stopping watch) instead of the logger's version (``v_num``),
    which says nothing about an MLflow run."""

    def __init__(self, monitor: str | None = None, **options):
        super().__init__(**options)
        self.monitor = monitor

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        shown = {k: v for k, v in super().get_metrics(trainer, pl_module).items() if k != "v_num"}
        for key in ("train/loss_step", self.monitor):
            value = trainer.callback_metrics.get(key) if key else None
            if value is not None:
                shown[key.removesuffix("_step")] = f"{float(value):.4g}"
        return shown

    def _get_train_description(self, current_epoch: int) -> str:
        """Lightning's own reads "Epoch N/-2" when ``max_epochs=-1`` (no epoch limit, as runs
        bounded by ``max_steps`` set): then "Epoch N", padded as Lightning pads it."""
        if (self.trainer.max_epochs or 0) >= 0:
            return super()._get_train_description(current_epoch)
        return f"{f'Epoch {current_epoch}':{len(self.validation_description)}}"


class StopOnDivergence(L.Callback):
    """Stop the run with :class:`~attnlab.core.errors.Diverged` at the first NaN or infinite
    training loss, so a diverged run ends FAILED (a sweep's trial FAIL) instead of training on.

    Why not Lightning's own: ``Trainer(detect_anomaly=True)`` runs autograd's anomaly mode,
    which checks every backward op and makes steps several times slower; EarlyStopping's
    ``check_finite`` looks at a validation metric once per epoch and ends the run FINISHED.
    This checks the one loss per step that the training step already returns (one device
    sync per step; under DDP all ranks agree first, so they stop at the same step).
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return  # the step was skipped (returned None)
        diverged = not bool(torch.isfinite(loss.detach()).all())
        if trainer.world_size > 1:
            diverged = trainer.strategy.reduce_boolean_decision(diverged, all=False)
        if diverged:
            raise Diverged(trainer.global_step, float(loss.detach().float().mean()))


class AttentionMaps(L.Callback):
    """After testing, plot attention maps of a few test examples:

    - a seq2seq model with ``cross_attention(src, tgt_in)`` on data with ``splits`` and
      vocabularies (PairsDataModule): encoder-decoder attention of each decoder layer, one map
      per head, ``plots/attention_layer{N}.png``;
    - a model with ``pair_attention(tokens)`` on token data with ``itos`` and ``examples``:
      the pair weights alpha(x_t, x_t') of each example (notes §7.3),
      ``plots/pair_attention.png``.

    Otherwise it says why and does nothing.
    """

    def __init__(self, n_examples: int = 4, output_dir: str | None = None):
        self.n_examples = n_examples
        self.output_dir = output_dir

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model, data = pl_module.model, trainer.datamodule
        if isinstance(model, AttendsSource) and isinstance(data, HasSourceText):
            self._cross_attention(trainer, pl_module, data)
        elif isinstance(model, AttendsPairs) and isinstance(data, HasTokenText):
            self._pair_attention(trainer, pl_module, data)
        else:
            rank_zero_info("AttentionMaps: the model has no attention to plot; no plot")

    def _cross_attention(
        self, trainer: L.Trainer, pl_module: L.LightningModule, data: HasSourceText
    ) -> None:
        plottable = [
            s for s, _ in data.splits["test"] if max(map(ord, s)) < PLOTTABLE_MAX_CODEPOINT
        ]
        # Sources with words (month or day names) first: their maps show more than digit copying.
        plottable.sort(key=lambda s: not any(ch.isalpha() for ch in s))
        examples = plottable[: self.n_examples]
        if not examples:
            rank_zero_info("AttentionMaps: no test source is in a script the font can draw")
            return
        src = pad_batch([data.src_vocab.encode(s) for s in examples], data.src_vocab.pad_id)
        layers, outputs = decoded_attention(pl_module, src.to(pl_module.device), data.tgt_vocab)
        sources = [data.src_vocab.tokenize(s) for s in examples]
        for number, weights in enumerate(layers, start=1):
            title = f"encoder-decoder attention, decoder layer {number} of {len(layers)}"
            fig = attention_grid(
                weights, sources, outputs, f"{title} (rows: output, columns: source)"
            )
            log_figure(trainer, fig, f"plots/attention_layer{number}.png", self.output_dir)

    def _pair_attention(
        self, trainer: L.Trainer, pl_module: L.LightningModule, data: HasTokenText
    ) -> None:
        """alpha of the first test examples, each on its own colour scale (weights near 1/T)."""
        examples = data.examples["test"][: self.n_examples]
        if not examples:
            rank_zero_info("AttentionMaps: the test split is empty; no plot")
            return
        tokens = pad_batch([ids for ids, _, _ in examples], data.pad_id).to(pl_module.device)
        model = pl_module.model
        was_training = model.training
        model.eval()
        weights = model.pair_attention(tokens)  # (N, T, T)
        model.train(was_training)
        words = [[data.itos[i] for i in ids] for ids, _, _ in examples]
        labels = ", ".join(str(label) for _, label, _ in examples)
        title = f"pair attention alpha(x_t, x_t')\nrows: t, columns: t'; labels {labels}"
        fig = attention_grid(weights[:, None].float().cpu().numpy(), words, words, title, vmax=None)
        log_figure(trainer, fig, "plots/pair_attention.png", self.output_dir)


class GradientNorms(L.Callback):
    """Per epoch, the mean gradient L2 norm of the model's first and last layer (notes §5.1).

    Needs a model with ``first_layer`` and ``last_layer``; otherwise says why and does nothing.
    At fit start it also logs the norm name, the batch size and the channels per norm group of
    the first norm layer, the quantities of the norm x batch size study.
    """

    def __init__(self) -> None:
        self.active = False
        self.sums: dict[str, torch.Tensor] = {}  # layer -> sum of the epoch's step norms
        self.steps = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        self.active = isinstance(model, HasLayerEnds)
        if not self.active:
            rank_zero_info("GradientNorms: the model has no first_layer/last_layer; no norms")
            return
        norms = [m for m in model.modules() if channels_per_group(m)]
        params = {
            "norm": getattr(model, "norm_name", type(norms[0]).__name__ if norms else "none"),
            "batch_size": getattr(trainer.datamodule, "batch_size", None),
            "norm_group_size": channels_per_group(norms[0]) if norms else 0,
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(params)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        """Add this step's norms up on the device: no host sync and no ``log`` call per step
        (each costs ~0.5 ms in Lightning's logger connector); the mean is logged per epoch."""
        if not self.active:
            return
        model = pl_module.model
        for name, layer in (("first", model.first_layer), ("last", model.last_layer)):
            grads = [p.grad.detach() for p in layer.parameters() if p.grad is not None]
            if grads:
                total = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
                self.sums[name] = self.sums.get(name, 0) + total
        self.steps += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for name, total in self.sums.items():
            pl_module.log(f"train/grad_norm_{name}", total / self.steps, batch_size=1)
        self.sums, self.steps = {}, 0


class BlockLesion(L.Callback):
    """While testing, the test error of the model with each deletable block removed, one at a
    time (Veit et al. 2016, §4.1; notes §5.5.3): ``test/lesion/error_b{i}`` per block,
    ``test/lesion/error_rise_mean`` and ``_max`` over blocks, each rise measured from the intact
    model's error on the same batches.

    Needs a classifier (batches ``(x, y, ...)``, logits ``(B, classes)``) whose model has
    ``deletable_blocks()`` and ``without_block(i)``; otherwise says why and does nothing.
    """

    def __init__(self) -> None:
        self.errors: dict[str, MulticlassHammingDistance] = {}  # "intact" or "b{i}" -> metric

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.errors = {}
        if not isinstance(pl_module.model, HasDeletableBlocks):
            rank_zero_info("BlockLesion: the model has no deletable blocks; no lesion")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        model = pl_module.model
        if not isinstance(model, HasDeletableBlocks):
            return
        x, y = batch[0], batch[1]
        scores = {"intact": model(x)}  # (B, classes)
        for index in model.deletable_blocks():
            with model.without_block(index):
                scores[f"b{index:02d}"] = model(x)  # (B, classes)
        for name, logits in scores.items():
            if name not in self.errors:  # the same error as the task's test/error
                metric = MulticlassHammingDistance(logits.size(-1), average="micro")
                self.errors[name] = metric.to(logits.device)
            self.errors[name].update(logits.argmax(-1), y)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.errors:
            return
        values = {name: metric.compute() for name, metric in self.errors.items()}
        intact = values.pop("intact")
        rises = torch.stack([error - intact for error in values.values()])
        logged = {f"test/lesion/error_{name}": error for name, error in values.items()}
        logged["test/lesion/error_rise_mean"] = rises.mean()
        logged["test/lesion/error_rise_max"] = rises.max()
        pl_module.log_dict(logged, batch_size=1)


class ForecastPlot(L.Callback):
    """After testing, plot a few test windows: history, truth and prediction in the series' units.

    Needs series data that can unscale its values (contracts.HasSeriesScale); otherwise says so
    and does nothing.
    """

    def __init__(self, n_examples: int = 4, output_dir: str | None = None):
        self.n_examples = n_examples
        self.output_dir = output_dir

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        if not isinstance(data, HasSeriesScale):
            rank_zero_info("ForecastPlot: the data module is not a series module; no plot")
            return
        dataset = data.datasets["test"]
        count = min(self.n_examples, len(dataset))
        picks = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
        inputs, targets = default_collate([dataset[i] for i in picks])  # (N, L, F), (N, H, 1)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            predicted = pl_module(inputs.to(pl_module.device)).cpu()  # (N, H, 1)
        pl_module.train(was_training)
        fig = forecast_windows(
            data.unscale(inputs[..., data.target_index]).numpy(),  # (N, L)
            data.unscale(targets[..., 0]).numpy(),  # (N, H)
            data.unscale(predicted[..., 0]).float().numpy(),  # (N, H)
            f"{type(data).__name__}: test windows, history -> next {data.horizon} steps",
        )
        log_figure(trainer, fig, "plots/forecast.png", self.output_dir)


class BucketPlot(L.Callback):
    """After testing, a bar chart of each metric logged per bucket: plots/<metric>_by_<kind>.png.

    Reads ``test/<metric>_by_<kind>/<bucket>`` from the trainer's metrics, whatever the task
    (exact match per source length, accuracy per agreement distance); buckets in their natural
    order. Without such metrics it says so and does nothing.
    """

    def __init__(self, output_dir: str | None = None):
        self.output_dir = output_dir

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        families = bucket_metrics(trainer.callback_metrics)
        if not families:
            rank_zero_info("BucketPlot: no test/<metric>_by_<kind>/<bucket> metrics; no plot")
            return
        for (metric, kind), values in families.items():
            buckets = sorted(values, key=bucket_order)
            fig = bucket_bars(
                buckets, [values[b] for b in buckets], f"test/{metric} by {kind}", f"{kind} bucket"
            )
            log_figure(trainer, fig, f"plots/{metric}_by_{kind}.png", self.output_dir)
