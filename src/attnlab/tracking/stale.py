"""MLflow runs left RUNNING by processes that no longer exist (``attnlab runs`` lists them).

Each run records the machine and process that own it (tags ``host`` and ``attnlab.pid``). A
process killed outright (SIGKILL, the out-of-memory killer) cannot end its run, which then
shows RUNNING for ever. ``attnlab runs --fix-stale`` ends such runs FAILED, and every tracked
run does the same for its own experiment when it starts.

Only runs of this host can be told dead: a process id means nothing on another machine, so
runs of other hosts (and runs without the pid tag: sweep parent runs, which outlive the worker
that opened them, and runs of older versions) are listed and left alone. A pid that a newer
process has taken over counts as gone: the owner started before its run did.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
from mlflow import MlflowClient
from mlflow.entities import Run

from attnlab.tracking.store import sqlite_store_lock

PID_TAG = "attnlab.pid"
HOST_TAG = "host"
STALE_TAG = "attnlab.stale"  # set on runs this module ended: why
ALIVE, GONE = "alive", "gone"
CLOCK_SLACK_S = 1.0  # process start times have a coarser clock than run start times


def owner(run: Run) -> str:
    """``alive`` or ``gone`` for a run of this host with a pid tag, else why it cannot be told."""
    tags = run.data.tags
    if PID_TAG not in tags:
        return "unknown (no pid tag)"
    if tags.get(HOST_TAG) != socket.gethostname():
        return f"unknown (host {tags.get(HOST_TAG)})"
    try:
        process = psutil.Process(int(tags[PID_TAG]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return GONE
        started_before_run = process.create_time() <= run.info.start_time / 1000 + CLOCK_SLACK_S
    except psutil.NoSuchProcess:
        return GONE
    except psutil.AccessDenied:  # another user's process: it exists
        return ALIVE
    return ALIVE if started_before_run else GONE


def running_runs(client: MlflowClient, experiment_ids: list[str]) -> Iterator[Run]:
    """Every RUNNING run of the experiments, page by page."""
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, "attributes.status = 'RUNNING'", max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def end_failed(client: MlflowClient, run: Run) -> None:
    """End a run whose process is gone FAILED, saying why in a tag."""
    why = f"process {run.data.tags[PID_TAG]} on {run.data.tags[HOST_TAG]} no longer exists"
    client.set_tag(run.info.run_id, STALE_TAG, why)
    client.set_terminated(run.info.run_id, "FAILED")


def fail_stale_of_experiment(tracking_uri: str, experiment_name: str) -> int:
    """At a run's start: end the stale runs of its experiment FAILED; return how many."""
    sqlite_file = Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("sqlite:///") and not sqlite_file.is_file():
        return 0  # a new store: no runs yet (and none created here)
    with sqlite_store_lock(tracking_uri):  # a new SQLite store is created on first use
        client = MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return 0
    stale = [r for r in running_runs(client, [experiment.experiment_id]) if owner(r) == GONE]
    for run in stale:
        end_failed(client, run)
    return len(stale)
