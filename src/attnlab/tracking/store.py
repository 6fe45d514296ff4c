"""The tracking store: reached once before a run starts (one line when it cannot be), the
SQLite writers serialized, experiments created once, write conflicts retried."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow

from attnlab.core.errors import ConfigError

DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")  # MLflow's SQL stores
BACKEND_STORES = (
    "a reachable database (sqlite:///FILE, postgresql+psycopg://USER@HOST:PORT/DB, "
    "mysql://..., mssql://...)"
)


def check_tracking_store(key: str, uri: str) -> None:
    """Reach a database store or tracking server once, before any run starts.

    MLflow retries an unreachable store or server for minutes and then prints a traceback;
    this fails in seconds with one line naming ``key``. Folder stores, which MLflow 3 refuses
    unless ``MLFLOW_ALLOW_FILE_STORE=true``, fail here too; plugin stores, and SQLite files that
    do not exist yet, are left to MLflow.
    """
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("file", "") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        folder = "MLflow 3 refuses folder stores unless MLFLOW_ALLOW_FILE_STORE=true"
        raise ConfigError(key, uri, f"{BACKEND_STORES} or http(s)://SERVER; {folder}")
    if scheme in ("http", "https"):
        _check_server(key, uri)
    elif scheme == "sqlite" and not Path(uri.removeprefix("sqlite:///")).exists():
        _check_creatable(key, uri, Path(uri.removeprefix("sqlite:///")))  # MLflow creates it
    elif scheme.partition("+")[0] in DATABASE_SCHEMES:
        _check_database(key, uri)


def check_existing_store(key: str, uri: str) -> None:
    """For commands that only read runs: a store that exists (MLflow would create an empty
    SQLite file), reachable."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(key, uri, "an existing MLflow store; no such SQLite file")
    check_tracking_store(key, uri)


def _check_creatable(key: str, uri: str, path: Path) -> None:
    """A new file can be made at ``path``: its nearest existing folder is a writable folder."""
    existing = next(parent for parent in path.absolute().parents if parent.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a folder" if not existing.is_dir() else "not writable"
        raise ConfigError(key, uri, f"a SQLite file that can be created; {existing} is {why}")


def _check_server(key: str, uri: str) -> None:
    """The server answers /health, and lets this user in (a server with basic auth refuses a
    request without MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or with wrong ones)."""
    import base64
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as answer:
            answer.read()
    except OSError as error:
        reason = str(getattr(error, "reason", error))
        allowed = f"a reachable MLflow tracking server; GET /health failed: {reason}"
        raise ConfigError(key, uri, allowed) from None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    request = urllib.request.Request(
        f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    )
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            who = f"user {user!r}" if user else "no user"
            allowed = (
                f"a server that lets this user in ({who}: HTTP {error.code}); set "
                "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
            )
            raise ConfigError(key, uri, allowed) from None


def _check_database(key: str, uri: str) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    shown = uri
    try:
        url = sqlalchemy.engine.make_url(uri)
        shown = url.render_as_string(hide_password=True)
        timeout = (
            {"connect_timeout": 10} if url.drivername.startswith(("postgresql", "mysql")) else {}
        )
        engine = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=timeout)
        try:
            engine.connect().close()
        finally:
            engine.dispose()
    except Exception as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        reason = reason.removeprefix("connection failed: ")  # psycopg's own prefix
        raise ConfigError(key, shown, f"{BACKEND_STORES}; connecting failed: {reason}") from None


def sqlite_store_lock(tracking_uri: str) -> AbstractContextManager:
    """A file lock next to a SQLite store while it may be created or migrated.

    MLflow creates and migrates a new SQLite store on first use; two jobs doing so at once (a
    parallel launcher's first jobs) fail with "duplicate column". Server stores need no lock.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return nullcontext()
    from filelock import FileLock

    return FileLock(tracking_uri.removeprefix("sqlite:///") + ".lock")


def get_or_create_experiment(client: mlflow.MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when the store has none.

    Get-or-create on a shared store: another process (a second sweep worker, a parallel
    launcher's job) may create it between the lookup and the create, which then fails with
    RESOURCE_ALREADY_EXISTS; the experiment the other one made is read back instead.
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id


def open_experiment(tracking_uri: str, name: str) -> tuple[mlflow.MlflowClient, str]:
    """A client of the store and the id of experiment ``name``, created when missing: what a
    training run, a sweep's parent run, a benchmark and a claim's verdict each open first.

    The lock: processes starting together on a new SQLite store would each create and
    migrate its schema (MlflowClient does on construction) at once.
    """
    with sqlite_store_lock(tracking_uri):
        client = mlflow.MlflowClient(tracking_uri)
        return client, get_or_create_experiment(client, name)


def retry_on_conflict(write: Callable[[], Any], attempts: int = 3) -> Any:
    """``write()``, done again when the store refuses it.

    MLflow sets a tag by reading it, then inserting or updating it: two processes that set the
    same new tag at once (two sweep workers finishing together, two jobs tagging their
    experiment) both insert, and the second insert fails on the unique key. The writes here
    are idempotent, so the loser simply writes again and updates what the winner inserted.
    """
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return write()
        except MlflowException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
