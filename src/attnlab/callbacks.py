"""Lightning callbacks of attnlab's own, for what Lightning's callbacks do not cover."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import matplotlib.pyplot as plt
import torch
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from attnlab.plots import attention_grid

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


class AttentionMaps(L.Callback):
    """After testing, plot encoder-decoder attention of the last decoder layer, one map per head.

    Needs a model with ``cross_attention(src, tgt_in)`` and a data module with ``splits`` and
    character vocabularies (PairsDataModule); otherwise says why and does nothing.
    """

    def __init__(self, n_examples: int = 4, output_dir: str | None = None):
        self.n_examples = n_examples
        self.output_dir = output_dir

    @rank_zero_only
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model, data = pl_module.model, trainer.datamodule
        if not hasattr(model, "cross_attention") or not hasattr(data, "splits"):
            rank_zero_info("AttentionMaps: the model has no encoder-decoder attention; no plot")
            return
        plottable = [
            s for s, _ in data.splits["test"] if max(map(ord, s)) < PLOTTABLE_MAX_CODEPOINT
        ]
        # Sources with words (month or day names) first: their maps show more than digit copying.
        plottable.sort(key=lambda s: not any(ch.isalpha() for ch in s))
        examples = plottable[: self.n_examples]
        src = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(data.src_vocab.encode(s)) for s in examples],
            batch_first=True,
            padding_value=data.src_vocab.pad_id,
        ).to(pl_module.device)  # (N, S)
        was_training = model.training
        model.eval()
        predicted = pl_module.predict_ids(src)  # (N, T)
        bos = torch.full_like(predicted[:, :1], data.tgt_vocab.bos_id)
        weights = model.cross_attention(src, torch.cat([bos, predicted], 1)[:, :-1])[-1]
        model.train(was_training)
        width = predicted.size(1)
        outputs = [[*data.tgt_vocab.decode(row), "<eos>"][:width] for row in predicted.tolist()]
        sources = [list(s) for s in examples]
        fig = attention_grid(
            weights.float().cpu().numpy(),
            sources,
            outputs,
            "encoder-decoder attention, last decoder layer (rows: output, columns: source)",
        )
        log_figure(trainer, fig, "plots/attention_last_layer.png", self.output_dir)
