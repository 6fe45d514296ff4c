"""Image files in their official formats: CIFAR-10 (python pickles) and MNIST / Fashion-MNIST
(IDX), read into tensors; attnlab.data.downloads fetches them."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnlab.core.errors import ConfigError
from attnlab.data.downloads import command

Arrays = tuple[Tensor, Tensor]  # images (N, C, H, W) float in [0, 1], labels (N,) long

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
CIFAR10_ALLOWED = (
    "a complete CIFAR-10 python batch file (a pickled dict with b'data' (N, 3072) uint8 "
    "and N b'labels' in 0..9)"
)
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES, IDX_LABELS = 2051, 2049  # magic numbers: unsigned bytes, 3 and 1 dimensions


class _NumpyUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: builtins and numpy arrays only, never arbitrary code."""

    ALLOWED = {
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch")
        return super().find_class(module, name)


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (N, 3, 32, 32) uint8, labels (N,) int64."""
    try:
        with path.open("rb") as stream:
            entry = _NumpyUnpickler(stream, encoding="bytes").load()
        data = np.asarray(entry[b"data"], dtype=np.uint8)
        labels = np.asarray(entry[b"labels"], dtype=np.int64)
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError("data.data_dir", str(path), CIFAR10_ALLOWED) from exc
    shape_ok = data.ndim == 2 and data.shape[1] == 3 * 32 * 32 and labels.shape == data.shape[:1]
    if not shape_ok or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ConfigError("data.data_dir", str(path), CIFAR10_ALLOWED)
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(data_dir: str | Path) -> dict[str, Arrays]:
    """CIFAR-10 from ``data_dir`` (holding cifar-10-batches-py/, or being it) -> train and test."""
    folder = Path(data_dir)
    if (folder / CIFAR10_FOLDER).is_dir():
        folder = folder / CIFAR10_FOLDER
    missing = [n for names in CIFAR10_BATCHES.values() for n in names if not (folder / n).is_file()]
    if missing:
        raise ConfigError(
            "data.data_dir",
            str(data_dir),
            f"a folder with {CIFAR10_FOLDER}/ holding {', '.join(missing)}; "
            f"fetch it with {command('cifar10', data_dir)}",
        )
    splits = {}
    for split, names in CIFAR10_BATCHES.items():
        parts = [read_cifar10_batch(folder / name) for name in names]
        images = np.concatenate([images for images, _ in parts])
        labels = np.concatenate([labels for _, labels in parts])
        splits[split] = (torch.from_numpy(images).float() / 255, torch.from_numpy(labels))
    return splits


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) with the given magic number -> array."""
    ndim = magic - 0x800
    allowed = f"a complete IDX file with magic number {magic} (unsigned bytes, {ndim} dimensions)"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise ConfigError("data.data_dir", str(path), allowed) from exc
    header = 4 + 4 * ndim
    if len(raw) < header or int.from_bytes(raw[:4], "big") != magic:
        raise ConfigError("data.data_dir", str(path), allowed)
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise ConfigError("data.data_dir", str(path), allowed)
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _idx_path(data_dir: Path, name: str, dataset: str) -> Path:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        "data.data_dir",
        str(data_dir),
        f"a folder holding {name}[.gz]; fetch it with {command(dataset, data_dir)}",
    )


def read_mnist(data_dir: str | Path, dataset: str = "mnist") -> dict[str, Arrays]:
    """MNIST or Fashion-MNIST IDX files in ``data_dir`` -> train and test (N, 1, 28, 28)."""
    folder = Path(data_dir)
    splits = {}
    for split, (image_name, label_name) in IDX_FILES.items():
        image_path = _idx_path(folder, image_name, dataset)
        label_path = _idx_path(folder, label_name, dataset)
        images = read_idx(image_path, IDX_IMAGES)
        labels = read_idx(label_path, IDX_LABELS)
        if len(images) != len(labels):
            raise ConfigError(
                "data.data_dir", str(label_path), f"{len(images)} labels, one per image"
            )
        splits[split] = (
            torch.from_numpy(images.copy()).float().unsqueeze(1) / 255,
            torch.from_numpy(labels.astype(np.int64)),
        )
    return splits
