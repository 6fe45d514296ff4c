"""Image classification data: scikit-learn's digits (offline), CIFAR-10 and MNIST files.

Every module yields batches ``(images (B, C, H, W) float, labels (B,) long)`` and, after
``setup``, publishes ImageDims. Images are scaled to [0, 1], optionally resized, standardized
per channel with training-split statistics and then optionally zero padded (zero is the
training mean). Augmentation runs on training batches only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

import lightning.pytorch as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Sampler, TensorDataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.core.contracts import ImageDims
from attnlab.core.errors import ConfigError
from attnlab.core.registry import Settings, register
from attnlab.data.baselines import classification_baselines, one_hot
from attnlab.data.image_files import Arrays, read_cifar10, read_mnist
from attnlab.data.loaders import SplitLoaders, check_loading, stateful_loader


def check_images(c: Settings) -> None:
    check_loading(c)
    c.fraction("val_fraction", low_open=True)
    c.fraction("train_fraction", low_open=True, high_open=False)
    if c.image_size is not None and c.image_size < 1:
        c.fail("image_size", "a positive integer or null (the native size)")
    c.non_negative("pad", "random_crop_padding", "gaussian_noise")
    c.fraction("label_noise")
    if c.drop_noisy and not c.label_noise:
        c.fail("drop_noisy", "false unless data.label_noise > 0 (no label is noisy)")
    if "test_fraction" in c:
        c.fraction("test_fraction", low_open=True)
    c.positive("classes_per_batch")
    if c.batch_size % c.classes_per_batch:
        c.fail("classes_per_batch", f"a divisor of data.batch_size={c.batch_size}")


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


class ClassBatchSampler(Sampler[list[int]]):
    """Non-i.i.d. training batches: every batch is ``classes_per_batch`` runs of
    ``batch_size / classes_per_batch`` images of one class each (Ioffe 2017: 16 labels x 2
    images), the runs in a random order (two runs of a batch may share their class); one run per
    batch is a batch of one class. A new draw each epoch from one seeded generator.

    Batch norm then normalises with one class's statistics in training and with the running
    average over all classes at test time: Ioffe 2017 (Batch Renormalization, §4.3) trains on
    such non-i.i.d. minibatches to show that this mismatch hurts batch norm. Lightning's
    ``set_epoch`` reaches only a batch sampler's inner sampler, so the epochs are counted here
    by drawing on from the same generator. One process only (no distributed sampler).

    Stateful for torchdata's StatefulDataLoader, so a resumed run draws what the uninterrupted
    one would: mid-epoch, the generator as the epoch began and the batches already given (the
    epoch's order is drawn again, those batches skipped); after an epoch, the generator as it is.
    """

    def __init__(self, labels: Tensor, batch_size: int, seed: int, classes_per_batch: int = 1):
        self.by_class = [torch.nonzero(labels == c).flatten() for c in labels.unique()]
        self.run = batch_size // classes_per_batch  # images of one class together
        self.runs_per_batch = classes_per_batch
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_start = self.generator.get_state()  # before this epoch's draws
        self._given = 0  # batches of this epoch handed out
        self._skip = 0  # batches to skip in the next epoch drawn: a restored position

    def __iter__(self):
        self._epoch_start = self.generator.get_state()
        size, runs = self.run, []
        for indices in self.by_class:
            shuffled = indices[torch.randperm(len(indices), generator=self.generator)]
            runs += [
                shuffled[i : i + size].tolist() for i in range(0, len(shuffled) - size + 1, size)
            ]
        order = torch.randperm(len(runs), generator=self.generator).tolist()
        per = self.runs_per_batch
        batches = [
            sum((runs[i] for i in order[k : k + per]), []) for k in range(0, len(self) * per, per)
        ]
        self._given, self._skip = self._skip, 0
        for batch in batches[self._given :]:
            self._given += 1
            yield batch

    def __len__(self) -> int:
        runs = sum(len(indices) // self.run for indices in self.by_class)
        return runs // self.runs_per_batch

    def state_dict(self) -> dict:
        if 0 < self._given < len(self):  # mid-epoch: draw this epoch again, skip what was given
            return {"generator": self._epoch_start, "given": self._given}
        return {"generator": self.generator.get_state(), "given": 0}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._skip = state["given"]


def resize(images: Tensor, size: int | None) -> Tensor:
    """(N, C, H, W) -> (N, C, size, size), bilinear with antialiasing; None: unchanged."""
    if size is None or images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)


def standardize(images: Tensor, mean: Tensor, std: Tensor, pad: int) -> Tensor:
    """(N, C, H, W) -> standardized per channel ((1, C, 1, 1) statistics), zero padded."""
    return F.pad((images - mean) / std, (pad,) * 4)


class ImageDataModule(SplitLoaders, L.LightningDataModule, ABC):
    """Train / val / test image tensors; subclasses implement ``load``.

    The validation split is a seeded, stratified ``val_fraction`` of the training split;
    ``train_fraction`` keeps a seeded, stratified part of what remains ("more data" studies).
    ``batches: by_class`` trains on batches of ``classes_per_batch`` classes (one by default),
    each class a run of equal length (:class:`ClassBatchSampler`).
    ``label_noise``: that fraction of the training split (chosen by the seed) gets another
    class, drawn uniformly (symmetric noise, Zhang et al. 2017 §2); validation and test keep
    their labels. ``drop_noisy`` removes those examples instead: an oracle cleaner that knows
    which labels were changed, the bound on what any cleaning can give (notes §10.3).
    After ``setup`` it keeps what turns a raw image into a model input: ``native_size``,
    ``pixel_max`` (the raw value that ``load`` maps to 1), ``mean`` and ``std``.
    """

    pixel_max = 255.0
    class_names: tuple[str, ...] = ()

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
        batches: Literal["shuffled", "by_class"] = "shuffled",
        classes_per_batch: int = 1,
        label_noise: float = 0.0,
        drop_noisy: bool = False,
    ):
        super().__init__()
        self.label_noise, self.drop_noisy = label_noise, drop_noisy
        self.batches, self.classes_per_batch = batches, classes_per_batch
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
        self.native_size = train_images.shape[-1]
        splits = {name: (resize(x, self.image_size), y) for name, (x, y) in splits.items()}
        train_x = splits["train"][0]
        self.mean = train_x.mean(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
        self.std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        self.num_classes = max(int(y.max()) for _, y in splits.values()) + 1
        if self.label_noise:
            splits["train"] = self._corrupt(*splits["train"])
        self.datasets = {
            name: TensorDataset(standardize(x, self.mean, self.std, self.pad), y)
            for name, (x, y) in splits.items()
        }

    def _corrupt(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """``label_noise`` of the labels moved to another class, or (``drop_noisy``) their
        examples removed."""
        generator = torch.Generator().manual_seed(self.seed)
        count = round(self.label_noise * len(labels))
        noisy = torch.randperm(len(labels), generator=generator)[:count]
        if self.drop_noisy:
            keep = torch.ones(len(labels), dtype=torch.bool)
            keep[noisy] = False
            return images[keep], labels[keep]
        shift = torch.randint(1, self.num_classes, (len(noisy),), generator=generator)
        labels = labels.clone()
        labels[noisy] = (labels[noisy] + shift) % self.num_classes
        return images, labels

    def _split(self, labels: Tensor, held_out: float, name: str) -> tuple[Tensor, Tensor]:
        """Seeded, stratified split of range(len(labels)) -> (kept, held out fraction).

        ``name`` is the attribute whose value set ``held_out``, named if the split cannot be made.
        """
        from sklearn.model_selection import train_test_split  # ~0.4 s to import: when used

        indices = np.arange(len(labels))
        try:
            kept, held = train_test_split(
                indices, test_size=held_out, stratify=labels.numpy(), random_state=self.seed
            )
        except ValueError as exc:
            allowed = f"a fraction that leaves every class in both parts ({exc})"
            raise ConfigError(f"data.{name}", getattr(self, name), allowed) from None
        return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))

    @property
    def dims(self) -> ImageDims:
        images = self.datasets["train"].tensors[0]  # (N, C, H, W)
        return ImageDims(
            in_channels=images.size(1), image_size=images.size(-1), num_classes=self.num_classes
        )

    def baselines(self) -> dict[str, float]:
        """Test accuracy and error of ``chance`` (a uniform guess, 1 / classes) and of
        ``majority_class`` (the most frequent training class, always)."""
        labels = self.datasets["test"].tensors[1].numpy()
        majority = int(self.datasets["train"].tensors[1].bincount().argmax())
        predictions = {
            "chance": np.full((len(labels), self.num_classes), 1 / self.num_classes),
            "majority_class": one_hot(np.full(len(labels), majority), self.num_classes),
        }
        return classification_baselines(predictions, labels)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Augment training batches (images, labels); images alone (the model summary's example
        input, attnlab.tasks) pass unchanged and draw no random numbers."""
        if self.trainer is not None and self.trainer.training and isinstance(batch, list | tuple):
            images, labels = batch
            return self.augment(images), labels
        return batch

    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        dataset = self.datasets[split]
        if split == "train" and self.batches == "by_class":
            labels = dataset.tensors[1]
            return stateful_loader(
                dataset,
                batch_sampler=ClassBatchSampler(
                    labels, self.batch_size, self.seed, self.classes_per_batch
                ),
                num_workers=self.num_workers,
            )
        return stateful_loader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            # A last batch of one image breaks batch norm; drop the remainder when training.
            drop_last=shuffle and len(dataset) >= self.batch_size,
            num_workers=self.num_workers,
        )


@register("data", "digits", check=check_images)
class DigitsDataModule(ImageDataModule):
    """scikit-learn's 1797 handwritten digits, 8 x 8 x 1 (offline); a stratified test split."""

    pixel_max = 16.0  # the digits' pixels are counts 0..16

    def __init__(self, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self) -> dict[str, Arrays]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.from_numpy(digits.images).float().unsqueeze(1) / self.pixel_max
        labels = torch.from_numpy(digits.target).long()
        train_idx, test_idx = self._split(labels, self.test_fraction, "test_fraction")
        return {
            "train": (images[train_idx], labels[train_idx]),
            "test": (images[test_idx], labels[test_idx]),
        }


@register("data", "cifar10", check=check_images)
class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10 (32 x 32 x 3, 10 classes) read from the official python batches."""

    class_names = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip

    def __init__(self, data_dir: str = "data/cifar10", **kwargs):
        super().__init__(**kwargs)
        self.data_dir = data_dir

    def load(self) -> dict[str, Arrays]:
        return read_cifar10(self.data_dir)


FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
)  # fmt: skip


@register("data", "mnist", check=check_images)
class MNISTDataModule(ImageDataModule):
    """MNIST or Fashion-MNIST (28 x 28 x 1, 10 classes) read from the official IDX files."""

    def __init__(
        self,
        data_dir: str = "data/mnist",
        dataset: Literal["mnist", "fashion_mnist"] = "mnist",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.data_dir, self.dataset = data_dir, dataset
        self.class_names = FASHION_MNIST_CLASSES if dataset == "fashion_mnist" else ()

    def load(self) -> dict[str, Arrays]:
        return read_mnist(self.data_dir, self.dataset)
