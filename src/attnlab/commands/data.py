"""``attnlab data download NAME``: the official files of an image data set, checked (md5), in
the folder its data module reads (``data/NAME``, the default ``data.data_dir``).

    attnlab data download mnist
    attnlab data download cifar10 --data-dir /scratch/c10   # then data.data_dir=/scratch/c10
    attnlab data download fashion_mnist --mirror http://mirror.lan/fashion/
"""

from __future__ import annotations

import argparse
import sys

from attnlab.cli import command_parser
from attnlab.core.errors import report_config_errors
from attnlab.data.downloads import DOWNLOADS, DownloadFailed, default_dir, download


def data_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "attnlab data", __doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    names = ", ".join(DOWNLOADS)
    fetch = commands.add_parser(
        "download",
        help=f"fetch and check (md5) the files of {names}",
        description="Fetch the official files of a data set and check their md5; each is "
        "written under a temporary name and renamed once verified. Files already there and "
        "verified are kept.",
    )
    fetch.add_argument("name", metavar="NAME", help=f"the data set: one of {names}")
    fetch.add_argument(
        "--data-dir",
        help=f"the folder to fill (default: {default_dir('NAME')}, where data=NAME reads)",
    )
    fetch.add_argument(
        "--mirror",
        metavar="URL",
        help="fetch from this URL (a folder holding the files) instead of the official mirrors",
    )
    return parser


def main(argv: list[str]) -> int:
    opts = data_parser().parse_args(argv)
    with report_config_errors():
        try:
            download(opts.name, opts.data_dir, (opts.mirror,) if opts.mirror else None)
        except DownloadFailed as exc:
            print(f"attnlab: {exc}", file=sys.stderr)
            return 1
    return 0
