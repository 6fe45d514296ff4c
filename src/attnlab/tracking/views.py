"""What the MLflow UI shows first: the runs table, with the columns that compare runs.

MLflow 3's UI opens an experiment on its GenAI overview unless the address asks for the
training runs (``workflowType=machine_learning``); its table shows no param or metric until a
user picks them, except in a saved view. So every experiment attnlab logs to gets

- the tag ``mlflow.experimentKind = custom_model_development`` (a model-training experiment);
- a saved view ``attnlab`` (an experiment tag the UI lists under "Views"): the params that tell
  its runs apart (what their names show) and the objective metric as columns, runs sorted by it;

and ``attnlab ui`` prints the address of the runs table in that view.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
VIEW_ID = "attnlab"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"  # the UI's saved views are such tags
VIEW_NAME = "attnlab: what differs"


def param_column(key: str) -> str:
    """A param's column id in the UI's runs table."""
    return f"params.`{key}`"


def metric_column(key: str) -> str:
    return f"metrics.`{key}`"


def _envelope(tags: dict[str, str]) -> tuple[dict[str, Any], int | None]:
    """The saved view's state and creation time (empty, None when there is none yet)."""
    try:
        saved = json.loads(tags[VIEW_TAG])
        return json.loads(saved["state"]), saved["createdAt"]
    except (KeyError, TypeError, ValueError):
        return {}, None


def view_state(previous: dict[str, Any], params: Iterable[str], metric: str, minimize: bool):
    """The saved view's state: earlier param columns + ``params``, then the metric columns.

    Runs of one experiment may come from several commands, so columns are only ever added.
    """
    columns = previous.get("selectedColumns", [])
    param_columns = [c for c in columns if c.startswith("params.")]
    metric_columns = [c for c in columns if c.startswith("metrics.")]
    for column in map(param_column, params):
        if column not in param_columns:
            param_columns.append(column)
    if metric_column(metric) not in metric_columns:
        metric_columns.append(metric_column(metric))
    return {
        "selectedColumns": param_columns + metric_columns,
        "orderByKey": metric_column(metric),
        "orderByAsc": minimize,
    }


def prepare_experiment(
    client, experiment_id: str, params: Iterable[str], metric: str, minimize: bool
) -> None:
    """Tag the experiment as model training and add ``params`` and ``metric`` to its view.

    Read-modify-write: two jobs that start at the same moment may each miss the other's new
    columns (a SQLite store is locked around this by the caller); the next run adds them back.
    """
    tags = client.get_experiment(experiment_id).tags
    if tags.get(KIND_TAG) != KIND:
        client.set_experiment_tag(experiment_id, KIND_TAG, KIND)
    previous, created = _envelope(tags)
    state = view_state(previous, params, metric, minimize)
    if state == previous:
        return
    now = int(time.time() * 1000)
    envelope = {
        "name": VIEW_NAME,
        "createdAt": created or now,
        "updatedAt": now,
        "state": json.dumps(state),
    }
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(envelope))


def runs_url(base: str, experiment_id: str | None, view: bool = True) -> str:
    """The runs table of an experiment (its attnlab view when ``view``), or the experiments."""
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    query = {"workflowType": "machine_learning"}
    if view:
        query["viewStateShareKey"] = VIEW_ID
    return f"{base}/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"


def latest_experiment(client) -> Any | None:
    """The experiment of the run started last (None in a store without runs)."""
    ids = [e.experiment_id for e in client.search_experiments(max_results=1000)]
    if not ids:
        return None
    runs = client.search_runs(ids, max_results=1, order_by=["attributes.start_time DESC"])
    return client.get_experiment(runs[0].info.experiment_id) if runs else None
