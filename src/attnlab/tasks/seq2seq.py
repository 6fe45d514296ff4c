"""Sequence-to-sequence training: teacher forcing, padding-masked loss, greedy or beam decoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassExactMatch
from torchmetrics.text import BLEUScore

from attnlab.core.contracts import PairDims
from attnlab.core.registry import Settings, register
from attnlab.models.decoding import beam_search, greedy_decode
from attnlab.tasks.base import (
    RUNTIME,
    BaseTask,
    BucketMetrics,
    OptimizerFactory,
    SchedulerFactory,
    real_tokens,
)


def check_seq2seq(c: Settings) -> None:
    if c.beam_width < 1:
        c.fail("beam_width", ">= 1 (1: greedy decoding)")
    c.non_negative("length_penalty")
    edges = list(c.length_buckets)
    if any(e <= 0 for e in edges) or sorted(set(edges)) != edges:
        c.fail("length_buckets", "increasing positive lengths")


@register("task", "seq2seq", check=check_seq2seq, data=(PairDims,), runtime=RUNTIME)
class Seq2SeqTask(BaseTask):
    """Trains any model that has ``forward(src, tgt_in)``, ``encode`` and ``decode``.

    The loss is cross-entropy over real target tokens only: ``ignore_index=pad_id`` gives
    sum(loss * w) / sum(w) with w = 0 on padding, the weighted loss of notes §3.3.
    Validation and test decode (greedily, or by beam search when ``beam_width`` > 1) and score
    the decoded ids against the targets; ``length_buckets`` (e.g. [20, 40]) also scores every
    metric for the source lengths lt20, 20-39 and ge40.
    """

    metric_names = ("loss", "token_acc", "exact_match", "bleu")

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        tgt_vocab_size: int,
        max_tgt_len: int,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        l1: float = 0.0,
        l2: float = 0.0,
        beam_width: int = 1,
        length_penalty: float = 0.0,
        length_buckets: list[int] = (),
    ):
        super().__init__(model, optimizer, scheduler)
        self.save_hyperparameters(ignore=["model", "optimizer", "scheduler"], logger=False)

        def on_ids() -> dict[str, Metric]:
            return {
                "token_acc": MulticlassAccuracy(
                    tgt_vocab_size, average="micro", ignore_index=pad_id
                ),
                "exact_match": MulticlassExactMatch(tgt_vocab_size, ignore_index=pad_id),
            }

        self.val_metrics = MetricCollection(on_ids(), prefix="val/")
        self.test_metrics = MetricCollection(on_ids(), prefix="test/")
        # corpus BLEU-4 over output tokens (Papineni et al. 2002), each token written as its id
        self.bleu = nn.ModuleDict({split: BLEUScore(n_gram=4) for split in ("val", "test")})
        # The same metrics per source-length bucket: edges [10, 20] -> lengths lt10, 10-19,
        # ge20, logged as <split>/<metric>_by_len/<bucket>.
        self.bucket_edges = torch.tensor(sorted(length_buckets), dtype=torch.long)
        names = _bucket_names(self.bucket_edges.tolist())
        self.buckets = BucketMetrics.per_split(
            "len", names, lambda: {**on_ids(), "bleu": BLEUScore(n_gram=4)}
        )

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, T, V), target: (B, T) -> mean cross-entropy over non-pad tokens."""
        return F.cross_entropy(
            logits.flatten(0, 1),
            target.flatten(),
            ignore_index=self.hparams.pad_id,
            label_smoothing=self.hparams.label_smoothing,
        )

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing, as in training: (B, S), (B, T) -> logits (B, T, V)."""
        return self.model(src, tgt_in)

    def example_input(self, dims: PairDims) -> tuple[Tensor, Tensor]:
        tgt_in = real_tokens(dims.max_tgt_len, dims.pad_id)
        tgt_in[:, 0] = dims.bos_id
        return real_tokens(dims.max_src_len, dims.pad_id), tgt_in  # (1, S), (1, T)

    def predict_ids(self, src: Tensor) -> Tensor:
        """src: (B, S) -> decoded ids (B, <=max_tgt_len), pad after EOS."""
        hp = self.hparams
        args = (self.model, src, hp.bos_id, hp.eos_id, hp.pad_id, hp.max_tgt_len)
        if hp.beam_width > 1:
            return beam_search(*args, width=hp.beam_width, length_penalty=hp.length_penalty)
        return greedy_decode(*args)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        logits = self.model(batch.src, batch.tgt_in)  # (B, T, V)
        loss = self.regularized(self.loss(logits, batch.tgt_out))
        size = batch.src.size(0)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=size)
        # share of source slots that are padding, per epoch: what bucketing (notes §3.3) cuts
        padding = (batch.src == self.hparams.pad_id).float().mean()
        self.log("train/src_padding", padding, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def _evaluate(self, batch, metrics: MetricCollection, prefix: str) -> None:
        size = batch.src.size(0)
        loss = self.loss(self.model(batch.src, batch.tgt_in), batch.tgt_out)
        self.log(f"{prefix}/loss", loss, batch_size=size, sync_dist=True)
        predicted = self._align(self.predict_ids(batch.src), batch.tgt_out)  # (B, T)
        metrics.update(predicted, batch.tgt_out)
        self.log_dict(metrics, batch_size=size)
        bleu = self.bleu[prefix]
        bleu.update(*self._bleu_inputs(predicted, batch.tgt_out))
        self.log(f"{prefix}/bleu", bleu, on_epoch=True, batch_size=size)
        if len(self.buckets[prefix]):
            lengths = (batch.src != self.hparams.pad_id).sum(1)  # (B,)
            bucket = torch.bucketize(lengths, self.bucket_edges.to(lengths.device), right=True)
            for metrics, rows in self.buckets[prefix].with_rows(bucket):
                predicted_rows, target_rows = predicted[rows], batch.tgt_out[rows]
                metrics["token_acc"].update(predicted_rows, target_rows)
                metrics["exact_match"].update(predicted_rows, target_rows)
                metrics["bleu"].update(*self._bleu_inputs(predicted_rows, target_rows))

    def _bleu_inputs(self, predicted: Tensor, target: Tensor) -> tuple[list, list]:
        """Rows (B, T) of ids -> BLEUScore's (predictions, references) as token-id strings."""
        return self._words(predicted), [[words] for words in self._words(target)]

    def _words(self, ids: Tensor) -> list[str]:
        """(B, T) ids -> one string per row, token ids separated by spaces, up to EOS."""
        rows = []
        for row in ids.tolist():
            end = row.index(self.hparams.eos_id) if self.hparams.eos_id in row else len(row)
            rows.append(" ".join(str(t) for t in row[:end] if t != self.hparams.pad_id))
        return rows

    def _align(self, predicted: Tensor, target: Tensor) -> Tensor:
        """Cut or pad predictions (B, T') to the target width T; pad never matches a real token."""
        width = target.size(1)
        if predicted.size(1) >= width:
            return predicted[:, :width]
        return F.pad(predicted, (0, width - predicted.size(1)), value=self.hparams.pad_id)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.buckets["val"].compute(), sync_dist=True)  # equal on every process

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.buckets["test"].compute(), sync_dist=True)


def _bucket_names(edges: list[int]) -> list[str]:
    """[10, 20] -> ["lt10", "10-19", "ge20"] (MLflow keys allow no < or >); no edges -> []."""
    if not edges:
        return []
    middle = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)]
    return [f"lt{edges[0]}", *middle, f"ge{edges[-1]}"]
