"""The official files of the image data sets, fetched and checked (md5) into the folder their
data module reads: ``attnlab data download NAME``. Needs no torch."""

from __future__ import annotations

import hashlib
import shlex
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

from attnlab.core.errors import ConfigError

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


class DownloadFailed(OSError):
    """No mirror gave a file with the expected checksum; nothing of it is left on disk."""


def default_dir(name: str) -> Path:
    """The ``data_dir`` of ``conf/data/NAME.yaml``, relative to the working directory."""
    return Path("data") / name


def command(name: str, data_dir: str | Path) -> str:
    """The ``attnlab data download`` command that fills ``data_dir`` with ``name``."""
    if Path(data_dir) == default_dir(name):
        return f"attnlab data download {name}"
    return f"attnlab data download {name} --data-dir {shlex.quote(str(data_dir))}"


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    name: str,
    data_dir: str | Path | None = None,
    mirrors: tuple[str, ...] | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Fetch the files of ``name`` into ``data_dir`` (default: ``default_dir(name)``) from
    ``mirrors`` (default: the official ones) and check their md5; files already there and
    verified are kept. Each file is written under a temporary name and renamed once verified;
    CIFAR-10's archive is extracted to ``data_dir/cifar-10-batches-py`` the same way."""
    if name not in DOWNLOADS:
        raise ConfigError("NAME", name, f"one of {', '.join(DOWNLOADS)}")
    official, files = DOWNLOADS[name]
    target = Path(default_dir(name) if data_dir is None else data_dir)
    target.mkdir(parents=True, exist_ok=True)
    fetched = []
    for filename, expected in files.items():
        dest = target / filename
        if not (dest.is_file() and md5(dest) == expected):
            _fetch(mirrors or official, filename, dest, expected, say)
            fetched.append(filename)
    for filename in files:
        if filename.endswith(".tar.gz"):
            _extract(target / filename, target, force=filename in fetched)
    if not fetched:
        say(f"{name}: the {len(files)} files are already in {target}, md5 verified")
    return target


def _fetch(
    mirrors: tuple[str, ...], filename: str, dest: Path, expected: str, say: Callable
) -> None:
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        say(f"fetching {url}")
        partial = dest.with_name(f".{filename}.part")
        try:
            urllib.request.urlretrieve(url, partial)
            got = md5(partial)
            if got == expected:
                partial.replace(dest)
                return
            errors.append(f"{url}: md5 {got}, expected {expected}")
        except OSError as exc:
            errors.append(f"{url}: {exc}")
        finally:
            partial.unlink(missing_ok=True)
    raise DownloadFailed(f"could not download {filename}: {'; '.join(errors)}")


def _extract(archive: Path, target: Path, force: bool) -> None:
    """Unpack ``archive`` into ``target`` unless (without ``force``) its folders are there."""
    with tarfile.open(archive) as tar:
        tops = {member.name.split("/")[0] for member in tar.getmembers()}
        if not force and all((target / top).exists() for top in tops):
            return
        with tempfile.TemporaryDirectory(dir=target, prefix=f".{archive.name}.") as scratch:
            tar.extractall(scratch, filter="data")
            for top in tops:
                shutil.rmtree(target / top, ignore_errors=True)
                (Path(scratch) / top).replace(target / top)
