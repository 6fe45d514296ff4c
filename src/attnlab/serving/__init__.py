"""Use a trained run: raw inputs in, raw outputs out, from its folder or as an MLflow model.

A finished run saves ``predictor.pt`` in its output folder: which kind of predictor it is, the
config of its model and task, the data's sizes and what turns raw inputs into the model's
(vocabularies, pixel statistics, series scales), and the best weights; plain values and tensors,
so it loads with ``weights_only=True``. A tracked run also logs it as an MLflow pyfunc model,
``runs:/<run id>/model``, strings in and strings out, so ``mlflow.pyfunc.load_model``,
``mlflow models serve`` and the model registry work on it as on any MLflow model.

One predictor per kind of input, chosen by the data's Dims (``PREDICTORS``):

- ``text``: seq2seq on text, a text -> its output text (``"vendredi 27 novembre 2026"`` ->
  ``"2026-11-27"``);
- ``label``: token-sequence classification, words separated by spaces -> the class name
  (or index);
- ``tags``: tagging, words separated by spaces -> one tag per word, separated by spaces;
- ``image``: image classification, an image file (PNG, JPEG, .npy) or a row of
  comma-separated raw pixel values -> the class name (or index);
- ``forecast``: a history, CSV text (one row per step, an optional header naming the
  columns) or one line of comma-separated values -> the forecast, comma-separated.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import mlflow
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from attnlab.core.contracts import (
    AttendsSource,
    HasPixelScale,
    HasSeriesScale,
    HasSourceText,
    HasTagText,
    HasTokenText,
    ImageDims,
    PairDims,
    SeriesDims,
    TaggingDims,
    TokenDims,
)
from attnlab.core.errors import ConfigError
from attnlab.data.text import JOINERS, Vocab, pad_batch

PREDICTOR_FILE = "predictor.pt"
MODEL_NAME = "model"  # the logged model's name: runs:/<run id>/model
MODEL_TAG = "attnlab.model"  # set on a run that logged its model: the model's URI
# The config a predictor is rebuilt from: the model, its task and what builds them.
REBUILT_KEYS = ("seed", "model", "task", "optim", "scheduler", "regularization")
EXAMPLES = 3  # test inputs stored as the MLflow model's input example
KNOWN_SHOWN = 40  # words of a vocabulary an error lists
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
ATTENTION_ALLOWED = (
    "a run of a seq2seq model with encoder-decoder attention (transformer, attention_seq2seq, "
    "conv_seq2seq)"
)


def shown(text: str) -> str:
    """An input as an error message shows it: at most 40 characters."""
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"


def parse_numbers(text: str) -> list[float] | None:
    """``"1, 2.5,3"`` -> [1.0, 2.5, 3.0]; None if a field is not a number."""
    try:
        return [float(field) for field in text.split(",")]
    except ValueError:
        return None


def decoded_attention(task: Any, src: Tensor, tgt_vocab) -> tuple[np.ndarray, list[list[str]]]:
    """Decode ``src`` (N, S) as the seq2seq task does and read its model's encoder-decoder
    attention over that output: weights (L, N, H, T, S) and each output's tokens (up to
    <eos>, at most T)."""
    model = task.model
    was_training = model.training
    model.eval()
    predicted = task.predict_ids(src)  # (N, T)
    bos = torch.full_like(predicted[:, :1], tgt_vocab.bos_id)
    layers = model.cross_attention(src, torch.cat([bos, predicted], 1)[:, :-1])  # (L, N, H, T, S)
    model.train(was_training)
    width = predicted.size(1)
    outputs = [
        [*tgt_vocab.tokenize(tgt_vocab.decode(row)), "<eos>"][:width] for row in predicted.tolist()
    ]
    return layers.float().cpu().numpy(), outputs


def resolved(cfg: DictConfig, key: str) -> Any:
    """``cfg[key]`` as plain values, resolved in the whole config (``optim.lr`` may name
    ``data.batch_size``, which the predictor does not keep)."""
    value = cfg[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class Predictor(ABC):
    """A trained task with what turns raw inputs into its inputs: ``predict(inputs) -> outputs``,
    strings both. Subclasses name their ``kind`` and the ``dims`` type of the data they fit."""

    kind: ClassVar[str]
    dims: ClassVar[type]
    # what ``attnlab predict --file`` takes for this kind
    file_allowed: ClassVar[str] = "a UTF-8 text file, one input per line"

    def __init__(self, task: Any, data: dict[str, Any], max_len: int | None = None):
        self.task = task.eval()
        self.data = data
        self.max_len = max_len  # the longest input the model's positions allow, if bounded

    @staticmethod
    @abstractmethod
    def fits(task: Any, datamodule: Any) -> bool:
        """Whether a run's task and data (of this class's Dims) make this predictor."""

    @staticmethod
    @abstractmethod
    def data_state(datamodule: Any) -> dict[str, Any]:
        """Plain values and tensors of the data that turn raw inputs into model inputs."""

    @staticmethod
    @abstractmethod
    def examples(datamodule: Any) -> list[str]:
        """A few raw test inputs: the MLflow model's input example."""

    @abstractmethod
    def predict(self, inputs: Sequence[str]) -> list[str]:
        """One output per input, in order; an input the model cannot take raises ConfigError."""

    @staticmethod
    def split_file(text: str) -> list[str]:
        """The inputs of a ``--file``: its non-empty lines."""
        return [line for line in text.splitlines() if line.strip()]

    @classmethod
    def bundle(cls, cfg: DictConfig, task: Any, datamodule: Any) -> dict[str, Any]:
        """What ``load`` rebuilds the predictor from: plain values and tensors only."""
        return {
            "kind": cls.kind,
            "config": {key: resolved(cfg, key) for key in REBUILT_KEYS if key in cfg},
            "dims": dataclasses.asdict(datamodule.dims),
            "data": cls.data_state(datamodule),
            "state_dict": {k: v.detach().cpu() for k, v in task.state_dict().items()},
        }

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """The predictor saved at ``path`` (a ``predictor.pt``), on the CPU, of its own kind."""
        from attnlab.core.config import register_schemas
        from attnlab.core.registry import current_targets
        from attnlab.tasks.build import build_model, build_task

        register_schemas()
        bundle = torch.load(path, map_location="cpu", weights_only=True)
        if "kind" not in bundle:  # saved before there were other kinds: a text predictor
            data = {"source": bundle["source"], "target": bundle["target"]}
            bundle = {**bundle, "kind": TextPredictor.kind, "data": data}
        kind = KINDS[bundle["kind"]]
        cfg = OmegaConf.create(current_targets(bundle["config"]))
        dims = kind.dims(**bundle["dims"])
        task = build_task(cfg, build_model(cfg, dims), dims)
        task.load_state_dict(bundle["state_dict"])
        return kind(task, bundle["data"], cfg.model.get("max_len"))


class TextPredictor(Predictor):
    """Seq2seq on text: texts in, decoded texts out (greedy or beam, as the run's task was set)."""

    kind, dims = "text", PairDims

    def __init__(self, task: Any, data: dict[str, Any], max_len: int | None = None):
        super().__init__(task, data, max_len)
        self.source = Vocab.from_state(data["source"])
        self.target = Vocab.from_state(data["target"])

    @staticmethod
    def fits(task: Any, datamodule: Any) -> bool:
        return callable(getattr(task, "predict_ids", None)) and isinstance(
            datamodule, HasSourceText
        )

    @staticmethod
    def data_state(datamodule: Any) -> dict[str, Any]:
        return {"source": datamodule.src_vocab.state(), "target": datamodule.tgt_vocab.state()}

    @staticmethod
    def examples(datamodule: Any) -> list[str]:
        return [source for source, _ in datamodule.splits["test"][:EXAMPLES]]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Source ids of each text; an empty one or one past the model's positions is refused."""
        encoded = [self.source.encode(text) for text in texts]
        for number, ids in enumerate(encoded, start=1):
            if not ids or (self.max_len and len(ids) > self.max_len):
                allowed = f"1 to {self.max_len} tokens" if self.max_len else "at least one token"
                raise ConfigError(f"input {number}", shown(texts[number - 1]), allowed)
        return encoded

    @torch.inference_mode()
    def predict(self, inputs: Sequence[str], batch_size: int = 256) -> list[str]:
        encoded = self.encode(inputs)
        outputs = []
        for start in range(0, len(encoded), batch_size):
            src = pad_batch(encoded[start : start + batch_size], self.source.pad_id)  # (B, S)
            predicted = self.task.predict_ids(src)  # (B, <= max_tgt_len)
            outputs += [self.target.decode(row.tolist()) for row in predicted]
        return outputs

    def save_attention(self, texts: Sequence[str], folder: str | Path) -> list[Path]:
        """One heat map per text, ``attention_<n>.png`` in ``folder``: its encoder-decoder
        attention over its decoded output, one row per decoder layer, one column per head."""
        from attnlab.core.plots import attention_grid, plt

        model = self.task.model
        if not isinstance(model, AttendsSource):
            allowed = f"{ATTENTION_ALLOWED}; this run's {type(model).__name__} has none"
            raise ConfigError("--attention", str(folder), allowed)
        encoded = self.encode(texts)
        Path(folder).mkdir(parents=True, exist_ok=True)
        paths = []
        for number, (text, ids) in enumerate(zip(texts, encoded, strict=True), start=1):
            layers, (output,) = decoded_attention(self.task, torch.tensor([ids]), self.target)
            weights = layers[:, 0]  # (L, H, T, S): one row of maps per decoder layer
            tokens = self.source.tokenize(text)
            decoded = JOINERS[self.target.tokenizer].join(t for t in output if t != "<eos>")
            title = (
                f"input {number}: {shown(text)} -> {shown(decoded)}\nmaps: one row per decoder "
                f"layer (1-{len(weights)}), one column per head; rows: output, columns: source"
            )
            fig = attention_grid(weights, [tokens] * len(weights), [output] * len(weights), title)
            paths.append(Path(folder) / f"attention_{number}.png")
            fig.savefig(paths[-1], dpi=120)
            plt.close(fig)
        return paths


class WordsPredictor(Predictor, ABC):
    """Inputs of words separated by spaces, read with the data's vocabulary (``itos``); the
    model's scores of a padded batch are read by :meth:`answers` into one line per input, with
    the data's names of its classes or tags (``names``, a key of the bundle's data)."""

    names_key: str  # "class_names" or "tag_names"

    def __init__(self, task: Any, data: dict[str, Any], max_len: int | None = None):
        super().__init__(task, data, max_len)
        self.stoi = {word: index for index, word in enumerate(data["itos"])}
        self.unknown = self.stoi.get("<unk>")  # words out of the vocabulary, if it has one

    @classmethod
    def data_state(cls, datamodule: Any) -> dict[str, Any]:
        return {
            "itos": list(datamodule.itos),
            "pad_id": datamodule.pad_id,
            cls.names_key: list(getattr(datamodule, cls.names_key)),
        }

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of each text's words; an unknown word (without <unk>) or a length the model's
        positions do not reach is refused, naming the input's number."""
        encoded = []
        for number, text in enumerate(texts, start=1):
            words = text.split()
            unknown = [w for w in words if w not in self.stoi and self.unknown is None]
            if unknown or not words or (self.max_len and len(words) > self.max_len):
                known = [w for w in self.data["itos"] if not w.startswith("<")]
                listed = ", ".join(known[:KNOWN_SHOWN]) + (", ..." * (len(known) > KNOWN_SHOWN))
                count = f"1 to {self.max_len}" if self.max_len else "one or more"
                allowed = f"{count} words separated by spaces, among the {len(known)}: {listed}"
                if unknown:
                    allowed = f"{allowed} ({unknown[0]!r} is not one)"
                raise ConfigError(f"input {number}", shown(text), allowed)
            encoded.append([self.stoi.get(w, self.unknown) for w in words])
        return encoded

    @staticmethod
    def words(itos: list[str], ids: list[int]) -> str:
        return " ".join(itos[i] for i in ids)

    @abstractmethod
    def answers(self, rows: list[list[int]], scores: Tensor, names: list[str]) -> list[str]:
        """The lines of a batch: its rows of ids and the model's scores of them padded."""

    @torch.inference_mode()
    def predict(self, inputs: Sequence[str], batch_size: int = 256) -> list[str]:
        encoded, names = self.encode(inputs), self.data[self.names_key]
        outputs = []
        for start in range(0, len(encoded), batch_size):
            rows = encoded[start : start + batch_size]
            outputs += self.answers(rows, self.task(pad_batch(rows, self.data["pad_id"])), names)
        return outputs


class LabelPredictor(WordsPredictor):
    """Token-sequence classification: words in, the class's name (or index) out."""

    kind, dims, names_key = "label", TokenDims, "class_names"

    @staticmethod
    def fits(task: Any, datamodule: Any) -> bool:
        return isinstance(datamodule, HasTokenText)

    @staticmethod
    def examples(datamodule: Any) -> list[str]:
        examples = datamodule.examples["test"][:EXAMPLES]
        return [WordsPredictor.words(datamodule.itos, ids) for ids, _, _ in examples]

    def answers(self, rows: list[list[int]], scores: Tensor, names: list[str]) -> list[str]:
        classes = scores.argmax(-1).tolist()  # scores (B, classes) -> (B,)
        return [names[c] if names else str(c) for c in classes]


class TagPredictor(WordsPredictor):
    """Tagging: words in, one tag per word out, separated by spaces."""

    kind, dims, names_key = "tags", TaggingDims, "tag_names"

    @staticmethod
    def fits(task: Any, datamodule: Any) -> bool:
        return isinstance(datamodule, HasTagText)

    @staticmethod
    def examples(datamodule: Any) -> list[str]:
        sentences = datamodule.sentences["test"][:EXAMPLES]
        return [WordsPredictor.words(datamodule.itos, ids) for ids, _, _ in sentences]

    def answers(self, rows: list[list[int]], scores: Tensor, names: list[str]) -> list[str]:
        tags = scores.argmax(-1)  # scores (B, S, tags) -> (B, S)
        return [
            " ".join(names[t] for t in tags[i, : len(ids)].tolist()) for i, ids in enumerate(rows)
        ]


class ImagePredictor(Predictor):
    """Image classification: an image file (PNG, JPEG: 8-bit; .npy: raw values) or a row of
    comma-separated raw pixel values (channel, row, column order) in, the class out. Images are
    scaled, resized, standardized and padded as the run's data module did."""

    kind, dims = "image", ImageDims
    file_allowed = (
        "a UTF-8 text file with one input per line: a row of comma-separated pixel values or an "
        "image's path (give image files themselves as arguments)"
    )

    @staticmethod
    def fits(task: Any, datamodule: Any) -> bool:
        return isinstance(datamodule, HasPixelScale)

    @staticmethod
    def data_state(datamodule: Any) -> dict[str, Any]:
        keys = ("pixel_max", "native_size", "image_size", "pad", "mean", "std")
        state = {key: getattr(datamodule, key) for key in keys}
        return {**state, "channels": int(datamodule.mean.size(1)),
                "class_names": list(datamodule.class_names)}  # fmt: skip

    @staticmethod
    def examples(datamodule: Any) -> list[str]:
        images = datamodule.load()["test"][0][:EXAMPLES] * datamodule.pixel_max  # (N, C, H, W)
        return [",".join(f"{v:g}" for v in image.flatten().tolist()) for image in images]

    def read(self, number: int, text: str) -> torch.Tensor:
        """One input -> its image (C, H, W) in [0, 1] at the data's native size."""
        c, size = self.data["channels"], self.data["native_size"]
        wanted = f"{c} x {size} x {size}"
        allowed = (
            f"a PNG, JPEG or .npy image of {size} x {size} pixels ({c} channel"
            f"{'s' if c > 1 else ''}) or a row of {c * size * size} comma-separated pixel "
            f"values (0 to {self.data['pixel_max']:g})"
        )
        path = Path(text)
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            try:
                image = self.read_file(path, c, self.data["pixel_max"])
            except (OSError, ValueError) as error:  # PIL's UnidentifiedImageError is an OSError
                raise ConfigError(f"input {number}", text, f"{allowed} ({error})") from None
        else:
            values = parse_numbers(text)
            if values is None or len(values) != c * size * size:
                found = "" if values is None else f"; it has {len(values)} values"
                raise ConfigError(f"input {number}", shown(text), f"{allowed}{found}")
            image = torch.tensor(values).reshape(c, size, size) / self.data["pixel_max"]
        if tuple(image.shape) != (c, size, size):
            found = " x ".join(map(str, image.shape))
            raise ConfigError(f"input {number}", text, f"{allowed}; it is {found}, not {wanted}")
        return image

    @staticmethod
    def read_file(path: Path, channels: int, pixel_max: float) -> torch.Tensor:
        """An 8-bit PNG or JPEG (as grey or RGB to match ``channels``), or a .npy array of raw
        values (H, W) or (C, H, W) -> (C, H, W) in [0, 1]."""
        import numpy as np
        from PIL import Image

        if path.suffix.lower() == ".npy":
            image = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
            image = image / pixel_max
        else:
            with Image.open(path) as picture:
                array = np.asarray(picture.convert("L" if channels == 1 else "RGB"), np.float32)
            image = torch.from_numpy(array / 255)  # (H, W) or (H, W, 3)
            image = image.movedim(-1, 0) if image.ndim == 3 else image
        return image[None] if image.ndim == 2 else image

    @torch.inference_mode()
    def predict(self, inputs: Sequence[str], batch_size: int = 256) -> list[str]:
        from attnlab.data.images import resize, standardize

        images = torch.stack([self.read(n, text) for n, text in enumerate(inputs, start=1)])
        d, names = self.data, self.data["class_names"]
        prepared = standardize(resize(images, d["image_size"]), d["mean"], d["std"], d["pad"])
        classes = torch.cat([self.task(batch).argmax(-1) for batch in prepared.split(batch_size)])
        return [names[c] if names else str(c) for c in classes.tolist()]


class ForecastPredictor(Predictor):
    """Forecasting: a history in the series' units in, the next ``horizon`` values of the target
    out (comma-separated). The history is CSV text, one row per step with a value per input
    column (a header row may name them: its columns are picked by name), or, for a series of
    one column, one line of comma-separated values; its last ``input_len`` steps are used."""

    kind, dims = "forecast", SeriesDims
    file_allowed = (
        "a UTF-8 CSV file of the history, one row per step (or one line of comma-separated values)"
    )

    @staticmethod
    def fits(task: Any, datamodule: Any) -> bool:
        return isinstance(datamodule, HasSeriesScale)

    @staticmethod
    def data_state(datamodule: Any) -> dict[str, Any]:
        return {
            "mean": [float(v) for v in datamodule.mean],
            "std": [float(v) for v in datamodule.std],
            "input_len": datamodule.input_len,
            "target_index": datamodule.target_index,
            "columns": list(getattr(datamodule, "columns", [])),
        }

    @staticmethod
    def examples(datamodule: Any) -> list[str]:
        mean, std = torch.tensor(datamodule.mean), torch.tensor(datamodule.std)
        dataset = datamodule.datasets["test"]
        header = [",".join(datamodule.columns)] if getattr(datamodule, "columns", None) else []
        examples = []
        for index in range(min(EXAMPLES, len(dataset))):
            rows = (dataset[index][0] * std + mean).tolist()  # (L, F) in the series' units
            lines = [",".join(f"{v:.6g}" for v in row) for row in rows]
            examples.append("\n".join([*header, *lines]))
        return examples

    @staticmethod
    def split_file(text: str) -> list[str]:
        """A ``--file`` holds one history."""
        return [text]

    def read(self, number: int, text: str) -> torch.Tensor:
        """One history -> its last ``input_len`` steps, standardised: (input_len, F)."""
        d = self.data
        features, length, columns = len(d["mean"]), d["input_len"], d["columns"]
        named = f" ({', '.join(columns)})" if columns else ""
        allowed = (
            f"a history of at least {length} steps of {features} value"
            f"{'s' if features > 1 else ''}{named} each: CSV rows, one per step"
            f"{'' if features > 1 else ', or one line of comma-separated values'}"
        )
        rows = [line for line in text.splitlines() if line.strip()]
        if rows and columns and parse_numbers(rows[0]) is None:  # a header: pick the columns
            header = [name.strip() for name in rows[0].split(",")]
            missing = [name for name in columns if name not in header]
            if missing:
                found = f"; its header has no {', '.join(missing)}"
                raise ConfigError(f"input {number}", shown(text), f"{allowed}{found}")
            picks = [header.index(name) for name in columns]
            rows = [",".join(row.split(",")[i] for i in picks) for row in rows[1:]]
        if len(rows) == 1 and features == 1:
            rows = rows[0].split(",")
        values = [parse_numbers(row) for row in rows]
        if any(v is None or len(v) != features for v in values) or len(values) < length:
            found = f"; it has {len(values)} step{'s' * (len(values) != 1)}"
            found = found if len(values) < length else ""
            raise ConfigError(f"input {number}", shown(text), f"{allowed}{found}")
        history = torch.tensor(values[-length:])  # (L, F)
        return (history - torch.tensor(d["mean"])) / torch.tensor(d["std"])

    @torch.inference_mode()
    def predict(self, inputs: Sequence[str], batch_size: int = 256) -> list[str]:
        histories = torch.stack([self.read(n, text) for n, text in enumerate(inputs, start=1)])
        predicted = torch.cat([self.task(batch) for batch in histories.split(batch_size)])
        index = self.data["target_index"]
        values = predicted[..., 0] * self.data["std"][index] + self.data["mean"][index]  # (N, H)
        return [",".join(f"{v:.6g}" for v in row) for row in values.tolist()]


# Which predictor a run makes, by the Dims its data publishes (its class then checks the task
# and the data's abilities); a run whose data is not here, or does not fit, makes none.
PREDICTORS: dict[type, type[Predictor]] = {
    cls.dims: cls
    for cls in (TextPredictor, LabelPredictor, TagPredictor, ImagePredictor, ForecastPredictor)
}
KINDS: dict[str, type[Predictor]] = {cls.kind: cls for cls in PREDICTORS.values()}


def predictor_class(task: Any, datamodule: Any) -> type[Predictor] | None:
    """The predictor a run's task and data make, or None."""
    cls = PREDICTORS.get(type(datamodule.dims))
    return cls if cls is not None and cls.fits(task, datamodule) else None


class PredictorModel(mlflow.pyfunc.PythonModel):
    """The MLflow pyfunc face of a ``Predictor``: strings in, strings out. MLflow derives the
    model's signature from the type hints and converts what it is given to a list of str."""

    def load_context(self, context: Any) -> None:
        self.predictor = Predictor.load(context.artifacts["predictor"])

    def predict(
        self, context: Any, model_input: list[str], params: dict | None = None
    ) -> list[str]:
        return self.predictor.predict(model_input)


# The name the code of models logged before the other kinds imports (their copy of
# mlflow_model.py); those models hold a text predictor, which PredictorModel loads.
TextModel = PredictorModel


def save_and_log(
    cfg: DictConfig, task: Any, datamodule: Any, output_dir: str | None, tracked: bool
) -> Path | None:
    """Save the run's predictor in ``output_dir`` and, when ``tracked``, log it as the run's
    MLflow model (and register it as ``cfg.register_model`` if set). None when the run's
    task and data make no predictor."""
    cls = predictor_class(task, datamodule)
    if cls is None or not (output_dir or tracked):
        return None
    with tempfile.TemporaryDirectory() as scratch:  # a run outside Hydra has no folder
        path = Path(output_dir or scratch) / PREDICTOR_FILE
        torch.save(cls.bundle(cfg, task, datamodule), path)
        if tracked:
            log_model(path, cls.examples(datamodule), cfg.get("register_model"))
    return path if output_dir else None


# MLflow's check that a saved model's requirements match the running environment; it maps every
# installed package to its modules first (importlib.metadata.packages_distributions), ~1 s.
REQUIREMENTS_CHECK = "warn_dependency_requirement_mismatches"


@contextlib.contextmanager
def pinned_from_this_environment() -> Iterator[None]:
    """Skip MLflow's requirements check while logging a model whose requirements were read from
    this very interpreter (attnlab's and torch's versions; MLflow pins its own likewise), where
    it cannot find a mismatch. MLflow has no option for it; the patched name is checked by
    ``tests/test_serving.py``, so an MLflow that renames it fails there, not silently here."""
    from unittest import mock

    from mlflow.utils import environment

    with mock.patch.object(environment, REQUIREMENTS_CHECK, lambda requirements: None):
        yield


def log_model(path: Path, examples: list[str], register_as: str | None) -> None:
    """Log ``path`` as the active run's pyfunc model, with ``examples`` as its input example
    (MLflow checks the model on them before it keeps it)."""
    import attnlab

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per check
    with pinned_from_this_environment():
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
