"""``attnlab`` console entry: a table of commands, each a module with ``main(argv) -> int``.

Command modules are imported only when run, so ``attnlab -h`` answers without torch or MLflow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple


class Command(NamedTuple):
    name: str
    module: str  # exposes main(argv: list[str]) -> int
    summary: str


COMMANDS = (
    Command(
        "train",
        "attnlab.training.train",
        "train and test one config (Hydra: -m, --cfg job, k=v ...)",
    ),
    Command(
        "eval",
        "attnlab.commands.evaluate",
        "test a trained run again, on its data or data you change",
    ),
    Command(
        "predict", "attnlab.commands.predict", "a trained seq2seq model's output for your texts"
    ),
    Command(
        "report", "attnlab.commands.report", "compare MLflow runs: params that differ, metrics, gap"
    ),
    Command("claim", "attnlab.claims.cli", "the claims of the notes: list, run, report a verdict"),
    Command("data", "attnlab.commands.data", "fetch an image data set's files, checked (md5)"),
    Command("bench", "attnlab.bench.cli", "benchmarks: layer cost vs n and d, speed vs PyTorch"),
    Command(
        "runs",
        "attnlab.commands.runs",
        "runs shown RUNNING; --fix-stale ends FAILED the dead ones",
    ),
    Command(
        "ui",
        "attnlab.commands.ui",
        "the MLflow UI, a tracking server or the Optuna dashboard",
    ),
)


def plain(text: str) -> str:
    """Docstring text as help shows it: RST ``literals`` without their backticks."""
    return text.replace("``", "")


def command_parser(prog: str, description: str, **options) -> argparse.ArgumentParser:
    """The parser of one command; its description (often a docstring) reads as plain text."""
    return argparse.ArgumentParser(prog=prog, description=plain(description), **options)


def listing(prog: str, kind: str, commands: Sequence[Command], description: str) -> str:
    """The help of a command that runs one of ``commands``: usage, description, the table."""
    width = max(len(command.name) for command in commands) + 2
    rows = "\n".join(f"  {c.name:<{width}}{c.summary}" for c in commands)
    return (
        f"usage: {prog} <{kind}> [args]\n\n{description}\n\n{kind}s:\n{rows}\n\n"
        f"{prog} <{kind}> -h: the {kind}'s options"
    )


def dispatch(
    prog: str, kind: str, commands: Sequence[Command], argv: list[str], description: str
) -> int:
    """Run the command ``argv[0]`` names with the rest of ``argv``; -h lists ``commands``.

    No name prints the list and exits 2; an unknown name is one line and exit 2.
    """
    if not argv or argv[0] in ("-h", "--help"):
        print(listing(prog, kind, commands, description), file=sys.stdout if argv else sys.stderr)
        if not argv:
            raise SystemExit(2)
        return 0
    by_name = {command.name: command for command in commands}
    if argv[0] not in by_name:
        names = ", ".join(by_name)
        print(f"{prog}: unknown {kind} {argv[0]!r}; one of {names} ({prog} -h)", file=sys.stderr)
        raise SystemExit(2)
    return importlib.import_module(by_name[argv[0]].module).main(argv[1:])


def main(argv: list[str] | None = None) -> int:
    """``attnlab <command> [args]``: the command's exit code; usage mistakes exit 2."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--version"]:
        from importlib.metadata import version

        print(f"attnlab {version('attnlab')}")
        return 0
    description = (
        "Runnable, comparable experiments on attention, Transformers, residual networks and "
        "normalization.\n\noptions:\n  -h, --help  this list\n  --version   attnlab's version"
    )
    return dispatch("attnlab", "command", COMMANDS, argv, description)


if __name__ == "__main__":
    raise SystemExit(main())
