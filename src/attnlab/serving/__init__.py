"""Use a trained run: text in, text out, from its folder or as an MLflow model.

A finished run of a seq2seq task on text data saves ``predictor.pt`` in its output folder:
the config of its model and task, the data's sizes and vocabularies, and the best weights
(plain values and tensors: it loads with ``weights_only=True``). A tracked run also logs it as
an MLflow pyfunc model, ``runs:/<run id>/model``, that takes raw text (``["vendredi 27
novembre 2026"]``) and returns text (``["2026-11-27"]``), so ``mlflow.pyfunc.load_model``,
``mlflow models serve`` and the model registry work on it as on any MLflow model.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from attnlab.core.contracts import HasSourceText, PairDims
from attnlab.core.errors import ConfigError
from attnlab.data.text import Vocab, pad_batch

PREDICTOR_FILE = "predictor.pt"
MODEL_NAME = "model"  # the logged model's name: runs:/<run id>/model
MODEL_TAG = "attnlab.model"  # set on a run that logged its model: the model's URI
# The config a predictor is rebuilt from: the model, its task and what builds them.
REBUILT_KEYS = ("seed", "model", "task", "optim", "scheduler", "regularization")
EXAMPLES = 3  # test sources stored as the MLflow model's input example


class TextPredictor:
    """A trained seq2seq task with its data's vocabularies: ``predict(texts) -> texts``."""

    def __init__(self, task: Any, source: Vocab, target: Vocab, max_len: int | None):
        self.task = task.eval()
        self.source = source
        self.target = target
        self.max_len = max_len  # the longest source the model's positions allow, if bounded

    @staticmethod
    def fits(task: Any, datamodule: Any) -> bool:
        """Whether a run's task and data make a text predictor (seq2seq on text)."""
        return callable(getattr(task, "predict_ids", None)) and isinstance(
            datamodule, HasSourceText
        )

    @staticmethod
    def bundle(cfg: DictConfig, task: Any, datamodule: Any) -> dict[str, Any]:
        """What ``load`` rebuilds the predictor from: plain values and tensors only."""
        return {
            "config": OmegaConf.to_container(
                OmegaConf.masked_copy(cfg, REBUILT_KEYS), resolve=True
            ),
            "dims": dataclasses.asdict(datamodule.dims),
            "source": datamodule.src_vocab.state(),
            "target": datamodule.tgt_vocab.state(),
            "state_dict": {k: v.detach().cpu() for k, v in task.state_dict().items()},
        }

    @classmethod
    def load(cls, path: str | Path) -> TextPredictor:
        """The predictor saved at ``path`` (a ``predictor.pt``), on the CPU."""
        from attnlab.core.config import register_schemas
        from attnlab.core.registry import current_targets
        from attnlab.tasks.build import build_model, build_task

        register_schemas()
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        cfg = OmegaConf.create(current_targets(bundle["config"]))
        dims = PairDims(**bundle["dims"])
        task = build_task(cfg, build_model(cfg, dims), dims)
        task.load_state_dict(bundle["state_dict"])
        max_len = cfg.model.get("max_len")
        source, target = Vocab.from_state(bundle["source"]), Vocab.from_state(bundle["target"])
        return cls(task, source, target, max_len)

    @torch.inference_mode()
    def predict(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """Decode each text (greedy or beam, as the run's task was set) into its output."""
        encoded = [self.source.encode(text) for text in texts]
        for number, ids in enumerate(encoded, start=1):
            if not ids or (self.max_len and len(ids) > self.max_len):
                allowed = f"1 to {self.max_len} tokens" if self.max_len else "at least one token"
                text = texts[number - 1]
                shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
                raise ConfigError(f"input {number}", shown, allowed)
        outputs = []
        for start in range(0, len(encoded), batch_size):
            src = pad_batch(encoded[start : start + batch_size], self.source.pad_id)  # (B, S)
            predicted = self.task.predict_ids(src)  # (B, <= max_tgt_len)
            outputs += [self.target.decode(row.tolist()) for row in predicted]
        return outputs


class TextModel(mlflow.pyfunc.PythonModel):
    """The MLflow pyfunc face of a ``TextPredictor``: texts in, texts out. MLflow derives the
    model's signature from the type hints and converts what it is given to a list of str."""

    def load_context(self, context: Any) -> None:
        self.predictor = TextPredictor.load(context.artifacts["predictor"])

    def predict(
        self, context: Any, model_input: list[str], params: dict | None = None
    ) -> list[str]:
        return self.predictor.predict(model_input)


def save_and_log(
    cfg: DictConfig, task: Any, datamodule: Any, output_dir: str | None, tracked: bool
) -> Path | None:
    """Save the run's predictor in ``output_dir`` and, when ``tracked``, log it as the run's
    MLflow model (and register it as ``cfg.register_model`` if set). None when the run's
    task and data make no text predictor."""
    if not TextPredictor.fits(task, datamodule) or not (output_dir or tracked):
        return None
    with tempfile.TemporaryDirectory() as scratch:  # a run outside Hydra has no folder
        path = Path(output_dir or scratch) / PREDICTOR_FILE
        torch.save(TextPredictor.bundle(cfg, task, datamodule), path)
        if tracked:
            log_text_model(path, datamodule, cfg.get("register_model"))
    return path if output_dir else None


def log_text_model(path: Path, datamodule: Any, register_as: str | None) -> None:
    """Log ``path`` as the active run's pyfunc model, with test sources as its input example
    (MLflow checks the model on them before it keeps it)."""
    import attnlab

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per check
    examples = [source for source, _ in datamodule.splits["test"][:EXAMPLES]]
    mlflow.pyfunc.log_model(
        name=MODEL_NAME,
        python_model=Path(__file__).with_name("mlflow_model.py"),
        artifacts={"predictor": str(path)},
        input_example=examples,
        # named, so that MLflow does not load the model in a subprocess to find them
        pip_requirements=[f"attnlab=={attnlab.__version__}", f"torch=={torch.__version__}"],
        registered_model_name=register_as,
    )
    mlflow.set_tag(MODEL_TAG, f"runs:/{mlflow.active_run().info.run_id}/{MODEL_NAME}")
