"""MLflow runs -> comparison tables: ``attnlab report``.

    attnlab report --experiment overfitting                # every finished run
    attnlab report --experiment overfitting --sweep overfitting   # the trials of one study
    attnlab report --experiment overfitting --sweep overfitting overfitting_r1 overfitting_r2
                   # repeats of one sweep: which param matters most, with its range over them
    attnlab report --experiment degradation --metrics train/error test/error
    attnlab report --claim agreement      # = attnlab claim report agreement
    attnlab report --claims --readme README.md   # = attnlab claim report --all --readme ...

Columns are the params that differ between the runs, then the metrics; for classification the
train-test gap (test/error - train_eval/error: the same best weights scored on both splits in
eval mode) is added, and for a sweep each swept param is summarised by how the gap moves with
it. Those are marginal effects over the sampler's trials, where all params move at once.
Given several studies, repeats of one sweep (another sampler seed and ``seed`` each), it adds
each param's fANOVA importance per repeat, its mean and range, and the param that matters most
when its lowest importance exceeds every other's highest (attnlab.sweeper.importance).
"""

from __future__ import annotations

import argparse
import os
import sys

import optuna
import pandas as pd
from mlflow import MlflowClient
from rich.console import Console
from rich.table import Table

from attnlab.claims.cli import add_report_options, report_verdicts
from attnlab.cli import command_parser
from attnlab.core.errors import ConfigError, report_config_errors
from attnlab.core.metric_keys import GAP, train_test_gap
from attnlab.sweeper.importance import best_over_repeats, importances, most_important
from attnlab.sweeper.parent_run import PARENT_TAG
from attnlab.sweeper.study import open_storage
from attnlab.tracking.mlflow_run import SWEEP_BOOKKEEPING
from attnlab.tracking.store import check_existing_store

DEFAULT_METRICS = (
    "train_eval/error", "train/error", "val/error", "test/error", "test/acc", "test/exact_match",
)  # fmt: skip


SWEEP_PARAMS = tuple(f"param:{key}" for key in SWEEP_BOOKKEEPING)


def load_runs(
    client: MlflowClient, experiment: str, sweeps: list[str] | None, metrics: list[str]
) -> pd.DataFrame:
    """One row per finished or pruned run: varying params + metrics (+ the generalization gap);
    only the trials of ``sweeps``' studies if given."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none yet"
        raise ConfigError("--experiment", experiment, f"an MLflow experiment: {names}")
    query = "attributes.status != 'RUNNING'"
    if sweeps:
        runs = []
        for sweep in sweeps:
            parents = client.search_runs(
                [found.experiment_id], f"tags.`{PARENT_TAG}` = '{sweep}'", max_results=1
            )
            if not parents:
                raise ConfigError("--sweep", sweep, f"a study swept in experiment {experiment!r}")
            children = f"{query} and tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'"
            runs += client.search_runs([found.experiment_id], children, max_results=5000)
    else:
        runs = client.search_runs([found.experiment_id], query, max_results=5000)
    runs = [r for r in runs if PARENT_TAG not in r.data.tags]
    rows = []
    for record in runs:
        row = {"run": record.info.run_name, "status": record.data.tags.get("optuna.state")}
        row["status"] = row["status"] or record.info.status
        row.update({f"param:{k}": v for k, v in record.data.params.items()})
        row.update({m: record.data.metrics.get(m) for m in metrics})
        row[GAP] = train_test_gap(record.data.metrics)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    params = [c for c in table.columns if c.startswith("param:")]
    varying = [
        c
        for c in params
        if table[c].nunique(dropna=False) > 1
        and not c.startswith(SWEEP_PARAMS)
        and not table[c].astype(str).str.contains(os.sep).all()  # per-run output paths
    ]
    shown = [m for m in [*metrics, GAP] if table[m].notna().any()]
    table = table[["run", "status", *varying, *shown]]
    for column in varying:
        table[column] = table[column].map(_short)
    table.columns = [c.removeprefix("param:") for c in table.columns]
    return table


def _short(value: str) -> str:
    """A param as logged (text) -> 3 significant digits when it is a number."""
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return value


def countermeasure_summary(table: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """How the gap moves with each swept param: rank correlation, or mean gap per value."""
    rows = []
    for param in params:
        values = pd.to_numeric(table[param], errors="coerce")
        if values.notna().all() and values.nunique() > 2:
            corr = values.corr(table[GAP], method="spearman")
            rows.append({"countermeasure": param, "effect on gap": f"Spearman {corr:+.2f}"})
        else:
            means = table.groupby(param)[GAP].mean().round(3).to_dict()
            rows.append({"countermeasure": param, "effect on gap": f"mean gap {means}"})
    return pd.DataFrame(rows)


def print_table(frame: pd.DataFrame, title: str) -> None:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    Console(width=max(120, 14 * len(frame.columns))).print(table)


def main(args: list[str]) -> int:
    parser = command_parser(
        "attnlab report",
        __doc__,
        usage="attnlab report (--experiment NAME | --claim NAME | --claims) [options]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--experiment", help="MLflow experiment (task_name)")
    what.add_argument("--claim", help="the verdict of one claim (claims/NAME.yaml)")
    what.add_argument("--claims", action="store_true", help="the verdicts of every claim")
    parser.add_argument(
        "--sweep",
        nargs="+",
        help="only the trials of this Optuna study; several: repeats of one sweep, whose "
        "param importances are compared",
    )
    parser.add_argument(
        "--storage",
        default="sqlite:///optuna.db",
        help="the Optuna storage of the studies (the sweeper's hydra.sweeper.storage)",
    )
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    add_report_options(parser, condition="with --claim(s): ")
    parser.add_argument(
        "--readme", help="with --claim(s): rewrite the reported claims' rows of this file's table"
    )
    opts = parser.parse_args(args)
    if opts.readme and not (opts.claim or opts.claims):
        parser.error("--readme needs --claim or --claims")
    if opts.claim or opts.claims:
        return report_verdicts(opts)
    with report_config_errors():
        check_existing_store("--tracking-uri", opts.tracking_uri)
        client = MlflowClient(opts.tracking_uri)
        table = load_runs(client, opts.experiment, opts.sweep, opts.metrics)
    if table.empty:
        print(f"attnlab report: no finished runs in {opts.experiment!r}", file=sys.stderr)
        return 1
    sort_by = next((m for m in (GAP, *opts.metrics) if m in table.columns), "run")
    print_table(table.sort_values(sort_by), f"{opts.experiment}: {len(table)} runs")
    if opts.sweep and GAP in table.columns:
        swept = swept_params(table, opts.metrics)
        title = "train-test gap per countermeasure (marginal: every param moves in every trial)"
        print_table(countermeasure_summary(table, swept), title)
    if opts.sweep and len(opts.sweep) > 1:
        with report_config_errors():
            print_importances(opts.sweep, opts.storage)
    return 0


def swept_params(table: pd.DataFrame, metrics: list[str]) -> list[str]:
    """The params of a sweep's table that its summary ranks: every varying one but the
    ``distributed.*`` batch sizes, which follow ``data.batch_size``."""
    return [
        c
        for c in table.columns
        if "." in c and c not in metrics and not c.startswith("distributed.")
    ]


def print_importances(sweeps: list[str], storage_url: str) -> None:
    """fANOVA importance of each swept param in each repeat, its mean and range, the param
    that matters most by the rule of attnlab.sweeper.importance, and the best trial over the
    repeats as overrides."""
    path = storage_url.removeprefix("sqlite:///")
    if storage_url.startswith("sqlite:///") and not os.path.isfile(path):
        raise ConfigError("--storage", storage_url, "an existing Optuna storage; no such file")
    storage = open_storage(storage_url)
    studies = []
    for name in sweeps:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            known = ", ".join(s.study_name for s in optuna.get_all_study_summaries(storage))
            raise ConfigError("--sweep", name, f"a study in {storage_url}: {known}") from None
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) < 2:
            raise ConfigError("--sweep", name, "a study with two complete trials or more")
        studies.append(study)
    found = importances(studies)
    rows = [
        {
            "param": imp.param,
            **{name: round(value, 3) for name, value in zip(sweeps, imp.values, strict=True)},
            "mean": round(imp.mean, 3),
            "range": f"[{imp.low:.3f}, {imp.high:.3f}]",
        }
        for imp in found
    ]
    title = f"fANOVA importance of the objective over {len(sweeps)} repeats"
    print_table(pd.DataFrame(rows), title)
    winner = most_important(found)
    if winner:
        print(f"matters most: {winner} (its lowest importance exceeds every other's highest)")
    else:
        print("matters most: undecided (the leading ranges overlap)")
    study, trial = best_over_repeats(studies)
    overrides = " ".join(f"{key}={value}" for key, value in trial.params.items())
    print(f"best trial over the repeats: {study.study_name} #{trial.number}, "
          f"objective {trial.value:.4f}: {overrides}")  # fmt: skip
