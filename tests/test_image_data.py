"""Image data: digits splits and augmentation, and readers of the official CIFAR/IDX formats."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pickle
import re
import subprocess
import sys
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnlab.cli import main
from attnlab.core.contracts import ImageDims
from attnlab.core.errors import ConfigError
from attnlab.data.downloads import DOWNLOADS, default_dir, download
from attnlab.data.image_files import (
    CIFAR10_BATCHES,
    CIFAR10_FOLDER,
    IDX_FILES,
    read_cifar10,
    read_idx,
    read_mnist,
)
from attnlab.data.images import (
    CIFAR10DataModule,
    ClassBatchSampler,
    DigitsDataModule,
    MNISTDataModule,
    random_crop,
)

N_DIGITS = 1797


def write_cifar(root: Path, per_batch: int = 20) -> Path:
    """The official layout: root/cifar-10-batches-py/data_batch_1..5 and test_batch."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [n for names in CIFAR10_BATCHES.values() for n in names]:
        entry = {
            b"batch_label": name.encode(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [i % 10 for i in range(per_batch)],
            b"filenames": [f"{i}.png".encode() for i in range(per_batch)],
        }
        with (folder / name).open("wb") as f:
            pickle.dump(entry, f, protocol=2)
    return folder


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def write_mnist(root: Path, n: int = 40, size: int = 6, gz: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for image_name, label_name in IDX_FILES.values():
        write_idx(root / image_name, rng.integers(0, 256, (n, size, size)), 2051, gz)
        write_idx(root / label_name, np.arange(n) % 4, 2049, gz)
    return root


def test_cifar_reader_reads_the_official_layout(tmp_path: Path):
    folder = write_cifar(tmp_path)
    splits = read_cifar10(tmp_path)
    images, labels = splits["train"]
    assert images.shape == (100, 3, 32, 32) and labels.shape == (100,)
    assert splits["test"][0].shape == (20, 3, 32, 32)
    with (folder / "data_batch_1").open("rb") as f:
        row = pickle.load(f, encoding="bytes")[b"data"][0]
    # Rows hold the red plane, then green, then blue, each row-major (32 x 32).
    assert images[0, 0, 0, 1] == pytest.approx(row[1] / 255)
    assert images[0, 1, 0, 0] == pytest.approx(row[1024] / 255)
    assert images[0, 2, 31, 31] == pytest.approx(row[3071] / 255)
    assert labels.dtype == torch.int64 and labels[:3].tolist() == [0, 1, 2]
    assert read_cifar10(folder)["train"][0].shape == images.shape  # the folder itself works too


def test_truncated_cifar_batch_is_a_config_error(tmp_path: Path):
    folder = write_cifar(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ConfigError) as info:
        read_cifar10(tmp_path)
    assert info.value.key == "data.data_dir"
    assert info.value.value == str(path)
    assert "a complete CIFAR-10 python batch file" in info.value.allowed


def test_cifar_batch_that_runs_code_is_refused(tmp_path: Path):
    folder = write_cifar(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps(os.system))
    with pytest.raises(ConfigError, match="test_batch"):
        read_cifar10(tmp_path)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path):
    """A folder served over HTTP on 127.0.0.1, in a thread: (the folder, its URL)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def md5s(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def test_download_command_fetches_verifies_and_keeps_verified_files(mirror, monkeypatch, capsys):
    folder, url = mirror
    write_mnist(folder, gz=True)
    monkeypatch.setitem(DOWNLOADS, "mnist", (("http://127.0.0.1:9/nowhere/",), md5s(folder)))
    assert exit_code(["data", "download", "mnist", "--mirror", url]) == 0
    assert sorted(p.name for p in default_dir("mnist").iterdir()) == sorted(md5s(folder))
    module = MNISTDataModule(batch_size=4)  # its default data_dir
    module.setup()
    assert len(module.datasets["test"]) == 40
    capsys.readouterr()
    stamps = {p.name: p.stat().st_mtime_ns for p in default_dir("mnist").iterdir()}
    assert exit_code(["data", "download", "mnist"]) == 0  # the official mirror is unreachable
    assert capsys.readouterr().out == "mnist: the 4 files are already in data/mnist, md5 verified\n"
    assert {p.name: p.stat().st_mtime_ns for p in default_dir("mnist").iterdir()} == stamps


def test_download_refuses_a_checksum_mismatch_in_one_line(mirror, tmp_path: Path):
    """The real checksums against made-up files: the first file is refused, nothing is kept."""
    folder, url = mirror
    write_mnist(folder, n=12, gz=True)
    first, expected = next(iter(DOWNLOADS["mnist"][1].items()))
    got = hashlib.md5((folder / first).read_bytes()).hexdigest()
    command = [sys.executable, "-m", "attnlab.cli", "data", "download", "mnist"]
    done = subprocess.run(
        [*command, "--data-dir", "fetched", "--mirror", url], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"attnlab: could not download {first}: {url}{first}: md5 {got}, expected {expected}\n"
    )
    assert list((tmp_path / "fetched").iterdir()) == []


def test_download_of_an_unknown_data_set_is_one_line(capsys):
    assert exit_code(["data", "download", "imagenet"]) == 2
    expected = "NAME='imagenet' is not allowed: one of cifar10, mnist, fashion_mnist\n"
    assert capsys.readouterr().err == f"attnlab: config error: {expected}"
    assert not Path("data").exists()


def test_download_extracts_the_archive(tmp_path: Path, mirror, monkeypatch):
    folder, url = mirror
    write_cifar(tmp_path / "batches")
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "batches" / CIFAR10_FOLDER, arcname=CIFAR10_FOLDER)
    mirrors = (f"file://{tmp_path}/nowhere/", url)  # the first mirror fails, the second serves
    monkeypatch.setitem(DOWNLOADS, "cifar10", (mirrors, md5s(folder)))
    target = download("cifar10", tmp_path / "data")
    assert read_cifar10(target)["test"][0].shape == (20, 3, 32, 32)
    assert sorted(p.name for p in target.iterdir()) == [CIFAR10_FOLDER, archive.name]


@pytest.mark.parametrize("name", DOWNLOADS)
def test_downloads_land_where_the_data_config_reads(name, make_cfg):
    assert make_cfg(f"data={name}").data.data_dir == str(default_dir(name))


def test_missing_cifar_folder_names_the_download_command(tmp_path: Path):
    hint = f"attnlab data download cifar10 --data-dir {tmp_path}"
    with pytest.raises(ConfigError, match=re.escape(hint) + "$"):
        read_cifar10(tmp_path)
    with pytest.raises(ConfigError, match="attnlab data download cifar10$"):
        read_cifar10("data/cifar10")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzipped"])
def test_idx_reader(tmp_path: Path, gz: bool):
    write_mnist(tmp_path, n=10, size=5, gz=gz)
    splits = read_mnist(tmp_path)
    images, labels = splits["train"]
    assert images.shape == (10, 1, 5, 5) and labels.tolist() == [i % 4 for i in range(10)]
    assert float(images.max()) <= 1.0
    raw = read_idx(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")), 2051)
    assert raw.shape == (10, 5, 5)
    torch.testing.assert_close(images[:, 0], torch.from_numpy(raw.copy()).float() / 255)


@pytest.mark.parametrize("damage", ["truncated", "wrong magic"])
def test_damaged_idx_file_is_a_config_error(tmp_path: Path, damage: str):
    write_mnist(tmp_path, n=10)
    path = tmp_path / "t10k-images-idx3-ubyte"
    raw = path.read_bytes()
    path.write_bytes(raw[:-7] if damage == "truncated" else (2049).to_bytes(4, "big") + raw[4:])
    with pytest.raises(ConfigError) as info:
        read_mnist(tmp_path)
    assert (info.value.key, info.value.value) == ("data.data_dir", str(path))
    assert "IDX file with magic number 2051" in info.value.allowed


def test_truncated_gzip_is_a_config_error(tmp_path: Path):
    write_mnist(tmp_path, n=10, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ConfigError, match="train-labels-idx1-ubyte.gz"):
        read_mnist(tmp_path)


def test_missing_idx_files_name_the_download_command():
    with pytest.raises(ConfigError, match="attnlab data download fashion_mnist$"):
        read_mnist("data/fashion_mnist", "fashion_mnist")


def test_file_data_modules_publish_dims(tmp_path: Path):
    write_cifar(tmp_path / "cifar")
    cifar = CIFAR10DataModule(data_dir=str(tmp_path / "cifar"), batch_size=8, val_fraction=0.2)
    cifar.setup()
    assert cifar.dims == ImageDims(in_channels=3, image_size=32, num_classes=10)
    assert {k: len(v) for k, v in cifar.datasets.items()} == {"train": 80, "val": 20, "test": 20}
    write_mnist(tmp_path / "mnist", n=40, size=6, gz=True)
    mnist = MNISTDataModule(data_dir=str(tmp_path / "mnist"), batch_size=8, val_fraction=0.2)
    mnist.setup()
    assert mnist.dims == ImageDims(in_channels=1, image_size=6, num_classes=4)
    images, labels = next(iter(mnist.train_dataloader()))
    assert images.shape == (8, 1, 6, 6) and images.dtype == torch.float32
    assert labels.dtype == torch.int64


def digits(**kwargs) -> DigitsDataModule:
    module = DigitsDataModule(**kwargs)
    module.setup()
    return module


def class_counts(module: DigitsDataModule, split: str) -> torch.Tensor:
    return torch.bincount(module.datasets[split].tensors[1], minlength=10)


def test_digits_dims_splits_and_stratification():
    module = digits(test_fraction=0.2, val_fraction=0.1)
    assert module.dims == ImageDims(in_channels=1, image_size=8, num_classes=10)
    sizes = {name: len(ds) for name, ds in module.datasets.items()}
    assert sum(sizes.values()) == N_DIGITS
    assert sizes["test"] == pytest.approx(0.2 * N_DIGITS, abs=1)
    overall = sum(class_counts(module, s) for s in sizes).float() / N_DIGITS
    for split, size in sizes.items():
        expected = overall * size
        assert (class_counts(module, split) - expected).abs().max() <= 1.5, split
    train = module.datasets["train"].tensors[0]
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1) < 1e-3


def test_digits_are_seeded():
    a, b, c = digits(seed=1), digits(seed=1), digits(seed=2)
    torch.testing.assert_close(a.datasets["test"].tensors[0], b.datasets["test"].tensors[0])
    assert not torch.equal(a.datasets["test"].tensors[1], c.datasets["test"].tensors[1])


def test_digits_resize_and_pad():
    module = digits(image_size=16, pad=2)
    assert module.dims.image_size == 20
    images = module.datasets["val"].tensors[0]
    assert images.shape[1:] == (1, 20, 20)
    assert images[:, :, :2].abs().max() == 0 and images[:, :, :, -2:].abs().max() == 0


def test_train_fraction_subsets_only_the_training_split():
    full, half = digits(), digits(train_fraction=0.5)
    assert len(half.datasets["train"]) == pytest.approx(len(full.datasets["train"]) / 2, abs=1)
    assert (class_counts(half, "train") - class_counts(full, "train") / 2).abs().max() <= 1
    for split in ("val", "test"):
        torch.testing.assert_close(half.datasets[split].tensors[1], full.datasets[split].tensors[1])
    with pytest.raises(ConfigError, match="data.train_fraction=0.001"):
        digits(train_fraction=0.001)


def test_label_noise_moves_a_seeded_fraction_of_training_labels_and_drop_noisy_removes_them():
    clean, noisy = digits(), digits(label_noise=0.25)
    images, labels = clean.datasets["train"].tensors
    noisy_images, noisy_labels = noisy.datasets["train"].tensors
    torch.testing.assert_close(noisy_images, images)
    changed = noisy_labels != labels  # every chosen label moves to another class
    assert changed.sum() == round(0.25 * len(labels))
    assert noisy_labels.max() < clean.num_classes and noisy_labels.min() >= 0
    assert torch.equal(digits(label_noise=0.25).datasets["train"].tensors[1], noisy_labels)
    for split in ("val", "test"):
        assert torch.equal(noisy.datasets[split].tensors[1], clean.datasets[split].tensors[1])
    cleaned_images, cleaned_labels = (
        digits(label_noise=0.25, drop_noisy=True).datasets["train"].tensors
    )
    torch.testing.assert_close(cleaned_images, images[~changed])
    assert torch.equal(cleaned_labels, labels[~changed])


def test_augmentation_only_on_training_batches():
    module = digits(random_crop_padding=1, hflip=True, gaussian_noise=0.5)
    batch = next(iter(module.val_dataloader()))
    module.trainer = SimpleNamespace(training=False)
    assert module.on_after_batch_transfer(batch, 0) is batch
    module.trainer = SimpleNamespace(training=True)
    images, labels = module.on_after_batch_transfer(batch, 0)
    assert images.shape == batch[0].shape and labels is batch[1]
    assert not torch.allclose(images, batch[0])
    plain = digits()
    plain.trainer = SimpleNamespace(training=True)
    torch.testing.assert_close(plain.on_after_batch_transfer(batch, 0)[0], batch[0])


def test_random_crop_takes_a_window_of_the_padded_image():
    torch.manual_seed(0)
    images = torch.randn(16, 2, 5, 5)
    crops = random_crop(images, padding=2)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for image, crop in zip(padded, crops, strict=True):
        windows = [image[:, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
        assert any(torch.equal(crop, w) for w in windows)
    torch.testing.assert_close(random_crop(images, padding=0), images)


def test_by_class_batches_hold_one_class_each_and_change_every_epoch():
    labels = torch.arange(10).repeat_interleave(torch.tensor([7, 9, 4, 12, 8, 8, 5, 6, 10, 11]))
    sampler = ClassBatchSampler(labels, batch_size=4, seed=3)
    first, second = list(sampler), list(sampler)
    assert len(first) == len(sampler) == sum(n // 4 for n in (7, 9, 4, 12, 8, 8, 5, 6, 10, 11))
    for batch in first:
        assert len(batch) == 4 and len(set(labels[batch].tolist())) == 1
    assert len({i for batch in first for i in batch}) == 4 * len(first)  # no image twice
    assert first != second  # a new draw each epoch ...
    assert first == list(ClassBatchSampler(labels, batch_size=4, seed=3))  # ... from the seed


def test_batches_of_a_few_classes_are_runs_of_one_class_each():
    """Ioffe 2017's non-i.i.d. batches: 2 runs of 4 images of one class each per batch of 8."""
    labels = torch.arange(10).repeat_interleave(torch.tensor([7, 9, 4, 12, 8, 8, 5, 6, 10, 11]))
    sampler = ClassBatchSampler(labels, batch_size=8, seed=3, classes_per_batch=2)
    batches = list(sampler)
    runs = sum(n // 4 for n in (7, 9, 4, 12, 8, 8, 5, 6, 10, 11))
    assert len(batches) == len(sampler) == runs // 2
    for batch in batches:
        first, second = labels[batch[:4]].tolist(), labels[batch[4:]].tolist()
        assert len(batch) == 8 and len(set(first)) == len(set(second)) == 1
    assert len({i for batch in batches for i in batch}) == 8 * len(batches)  # no image twice
    assert any(labels[b[0]] != labels[b[4]] for b in batches)  # two classes in most batches


def test_digits_can_train_on_batches_of_one_class():
    data = DigitsDataModule(batch_size=8, batches="by_class", seed=1)
    data.setup("fit")
    train_labels = [labels for _, labels in data.train_dataloader()]
    assert all(len(set(batch.tolist())) == 1 and len(batch) == 8 for batch in train_labels)
    assert len({int(batch[0]) for batch in train_labels}) == 10
    val_labels = next(iter(data.val_dataloader()))[1]
    assert len(set(val_labels.tolist())) > 1  # validation and test batches are not grouped
