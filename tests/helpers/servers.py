"""Servers started by tests: a free loopback port, start until healthy, stop the whole group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(command: list[str], health: str, log: Path, **popen) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group until ``health`` answers 200 (180 s at most);
    afterwards SIGTERM the group and wait for all of it (mlflow's uvicorn and job runners too),
    SIGKILL after 30 s."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the server exited: {log.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(health, timeout=5) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"no answer from {health} in 180 s: {log.read_text()[-3000:]}")
                time.sleep(1)
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            started = time.monotonic()
            try:
                while time.monotonic() < started + 40:
                    late = time.monotonic() > started + 30
                    os.killpg(process.pid, signal.SIGKILL if late else 0)
                    time.sleep(0.5)
            except ProcessLookupError:  # the group is empty
                pass
