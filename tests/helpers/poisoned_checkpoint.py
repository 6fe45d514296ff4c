"""A callback that swaps the best checkpoint for one carrying a pickled payload, as a tampered
file would: loading it without ``weights_only`` runs ``open(marker, "w")``. Added in tests with
``+callbacks.poison._target_=helpers.poisoned_checkpoint.PoisonBest``."""

from __future__ import annotations

import lightning.pytorch as L
import torch


class Payload:
    """Unpickled, it opens (creates) ``marker``: code run by merely loading a file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class PoisonBest(L.Callback):
    def __init__(self, marker: str):
        self.marker = marker

    def on_fit_end(self, trainer: L.Trainer, pl_module) -> None:
        path = trainer.checkpoint_callback.best_model_path
        checkpoint = torch.load(path, weights_only=True)
        checkpoint["payload"] = Payload(self.marker)
        torch.save(checkpoint, path)
