"""Image classification data: scikit-learn's digits (offline) and readers of the official
CIFAR-10 (python pickles) and MNIST / Fashion-MNIST (IDX) files.

Every module yields batches ``(images (B, C, H, W) float, labels (B,) long)`` and, after
``setup``, publishes ``dims``: in_channels, image_size and num_classes. Images are scaled to
[0, 1], optionally resized, standardized per channel with training-split statistics and then
optionally zero padded (zero is the training mean). Augmentation runs on training batches only.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from attnlab.data.loaders import SplitLoaders
from attnlab.errors import ConfigError

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

# name -> (mirrors tried in order, {file: md5}); the first mirror is the official site.
DOWNLOADS = {
    "cifar10": (
        ("https://www.cs.toronto.edu/~kriz/",),
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
    ),
    "mnist": (
        ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion_mnist": (
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(name: str, data_dir: str | Path) -> Path:
    """Fetch and check (md5) the official files of ``name`` into ``data_dir``; needs internet.

    The data module configured with the same ``data_dir`` then finds them: IDX files lie in
    ``data_dir``, CIFAR-10 is extracted to ``data_dir/cifar-10-batches-py``.
    """
    if name not in DOWNLOADS:
        raise ValueError(f"unknown data set {name!r}; one of {', '.join(DOWNLOADS)}")
    mirrors, files = DOWNLOADS[name]
    target = Path(data_dir)
    target.mkdir(parents=True, exist_ok=True)
    for filename, md5 in files.items():
        dest = target / filename
        if not (dest.is_file() and _md5(dest) == md5):
            _fetch(mirrors, filename, dest, md5)
        if filename.endswith(".tar.gz"):
            with tarfile.open(dest) as archive:
                archive.extractall(target, filter="data")
    return target


def _fetch(mirrors: tuple[str, ...], filename: str, dest: Path, md5: str) -> None:
    partial = dest.with_name(dest.name + ".part")
    errors = []
    for mirror in mirrors:
        try:
            urllib.request.urlretrieve(mirror + filename, partial)
        except OSError as exc:
            errors.append(f"{mirror + filename}: {exc}")
            continue
        if _md5(partial) == md5:
            partial.replace(dest)
            return
        errors.append(f"{mirror + filename}: md5 mismatch")
    partial.unlink(missing_ok=True)
    raise OSError(f"could not download {filename}: {'; '.join(errors)}")


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
            f"fetch it with attnlab.data.images.download('cifar10', {str(data_dir)!r})",
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
        f"a folder holding {name}[.gz]; fetch it with "
        f"attnlab.data.images.download({dataset!r}, {str(data_dir)!r})",
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


def random_crop(images: Tensor, padding: int) -> Tensor:
    """Zero-pad (B, C, H, W) by ``padding`` and cut a random H x W window per image."""
    b, _, h, w = images.shape
    padded = F.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
    top = torch.randint(0, 2 * padding + 1, (b, 1), device=images.device)
    left = torch.randint(0, 2 * padding + 1, (b, 1), device=images.device)
    rows = top + torch.arange(h, device=images.device)  # (B, H)
    cols = left + torch.arange(w, device=images.device)  # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)  # (B, C, H, W)


class Augment(nn.Module):
    """Random crop after zero padding, horizontal flips and Gaussian noise on (B, C, H, W)."""

    def __init__(self, crop_padding: int = 0, hflip: bool = False, noise_std: float = 0.0):
        super().__init__()
        self.crop_padding, self.hflip, self.noise_std = crop_padding, hflip, noise_std

    def forward(self, images: Tensor) -> Tensor:
        if self.crop_padding:
            images = random_crop(images, self.crop_padding)
        if self.hflip:
            flip = torch.rand(images.size(0), device=images.device) < 0.5  # (B,)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.noise_std:
            images = images + self.noise_std * torch.randn_like(images)
        return images  # (B, C, H, W)


class ImageDataModule(SplitLoaders, L.LightningDataModule, ABC):
    """Train / val / test image tensors; subclasses implement ``load``.

    The validation split is a seeded, stratified ``val_fraction`` of the training split;
    ``train_fraction`` keeps a seeded, stratified part of what remains ("more data" studies).
    """

    def __init__(
        self,
        val_fraction: float = 0.1,
        train_fraction: float = 1.0,
        image_size: int | None = None,
        pad: int = 0,
        random_crop_padding: int = 0,
        hflip: bool = False,
        gaussian_noise: float = 0.0,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ):
        super().__init__()
        self.val_fraction, self.train_fraction = val_fraction, train_fraction
        self.image_size, self.pad = image_size, pad
        self.augment = Augment(random_crop_padding, hflip, gaussian_noise)
        self.seed = seed
        self.batch_size, self.num_workers = batch_size, num_workers
        self.datasets: dict[str, TensorDataset] = {}

    @abstractmethod
    def load(self) -> dict[str, Arrays]:
        """The "train" and "test" splits, images (N, C, H, W) in [0, 1] and labels (N,)."""

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        loaded = self.load()
        train_images, train_labels = loaded["train"]
        train_idx, val_idx = self._split(train_labels, self.val_fraction, "val_fraction")
        if self.train_fraction < 1.0:
            held_out = 1.0 - self.train_fraction
            keep, _ = self._split(train_labels[train_idx], held_out, "train_fraction")
            train_idx = train_idx[keep]
        splits = {
            "train": (train_images[train_idx], train_labels[train_idx]),
            "val": (train_images[val_idx], train_labels[val_idx]),
            "test": loaded["test"],
        }
        splits = {name: (self._resize(x), y) for name, (x, y) in splits.items()}
        train_x = splits["train"][0]
        mean = train_x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        self.num_classes = max(int(y.max()) for _, y in splits.values()) + 1
        self.datasets = {
            name: TensorDataset(F.pad((x - mean) / std, (self.pad,) * 4), y)
            for name, (x, y) in splits.items()
        }

    def _split(self, labels: Tensor, held_out: float, name: str) -> tuple[Tensor, Tensor]:
        """Seeded, stratified split of range(len(labels)) -> (kept, held out fraction).

        ``name`` is the attribute whose value set ``held_out``, named if the split cannot be made.
        """
        indices = np.arange(len(labels))
        try:
            kept, held = train_test_split(
                indices, test_size=held_out, stratify=labels.numpy(), random_state=self.seed
            )
        except ValueError as exc:
            allowed = f"a fraction that leaves every class in both parts ({exc})"
            raise ConfigError(f"data.{name}", getattr(self, name), allowed) from None
        return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))

    def _resize(self, images: Tensor) -> Tensor:
        if self.image_size is None or images.shape[-1] == self.image_size:
            return images
        size = (self.image_size, self.image_size)
        return F.interpolate(images, size=size, mode="bilinear", antialias=True)

    @property
    def dims(self) -> dict[str, int]:
        images = self.datasets["train"].tensors[0]
        return {
            "in_channels": images.size(1),
            "image_size": images.size(-1),
            "num_classes": self.num_classes,
        }

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training:
            images, labels = batch
            return self.augment(images), labels
        return batch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            # A last batch of one image breaks batch norm; drop the remainder when training.
            drop_last=shuffle and len(dataset) >= self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1797 handwritten digits, 8 x 8 x 1 (offline); a stratified test split."""

    def __init__(self, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self) -> dict[str, Arrays]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).float().unsqueeze(1) / 16  # (N, 1, 8, 8)
        labels = torch.from_numpy(digits.target).long()
        train_idx, test_idx = self._split(labels, self.test_fraction, "test_fraction")
        return {
            "train": (images[train_idx], labels[train_idx]),
            "test": (images[test_idx], labels[test_idx]),
        }


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (32 x 32 x 3, 10 classes) read from the official python batches."""

    def __init__(self, data_dir: str = "data/cifar10", **kwargs):
        super().__init__(**kwargs)
        self.data_dir = data_dir

    def load(self) -> dict[str, Arrays]:
        return read_cifar10(self.data_dir)


class MNISTDataModule(ImageDataModule):
    """MNIST or Fashion-MNIST (28 x 28 x 1, 10 classes) read from the official IDX files."""

    def __init__(self, data_dir: str = "data/mnist", dataset: str = "mnist", **kwargs):
        super().__init__(**kwargs)
        self.data_dir, self.dataset = data_dir, dataset

    def load(self) -> dict[str, Arrays]:
        return read_mnist(self.data_dir, self.dataset)
