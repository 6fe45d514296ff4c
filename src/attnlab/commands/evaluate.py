"""``attnlab eval``: test a trained run again, on its own data or on data you change.

    attnlab eval                                    # the newest training run, as it was trained
    attnlab eval --run RUN_ID data.max_len=30       # a copy model on longer strings
    attnlab eval --run logs/copy/runs/FOLDER data.seed=7 task.beam_width=4

The run's best checkpoint is tested with the run's own overrides, composed again, then yours.
The result is a new MLflow run in the same experiment, named "eval of NAME ...", tagged
attnlab.evaluates with the trained run's id, with the test metrics, per-bucket metrics and
plots a training run logs. --run takes a run id or a run's output folder; a run whose folder is
not on this machine is read from its MLflow artifacts (overrides and best checkpoint).
"""

from __future__ import annotations

import os
import tempfile
from argparse import RawTextHelpFormatter
from pathlib import Path
from typing import NamedTuple

import yaml

from attnlab.cli import command_parser
from attnlab.core.errors import ConfigError, report_config_errors

# Overrides of the trained run that steer where and how it ran, not what it computed.
NOT_REPEATED = ("hydra", "resume", "trial", "callbacks.optuna_pruning", "register_model")


class TrainedRun(NamedTuple):
    overrides: list[str]
    checkpoint: Path
    run_id: str | None
    name: str


def best_checkpoint(folder: Path) -> Path:
    """The best checkpoint of a run's checkpoints/ folder: the one ModelCheckpoint kept, else
    the last (a run without a monitored checkpoint)."""
    import torch

    kept = sorted(p for p in folder.glob("*.ckpt") if p.name != "last.ckpt")
    if len(kept) > 1:  # save_top_k > 1: the newest knows which one is best
        newest = max(kept, key=lambda p: p.stat().st_mtime)
        states = torch.load(newest, map_location="cpu", weights_only=True)["callbacks"]
        best = [v["best_model_path"] for k, v in states.items() if k.startswith("ModelCheckpoint")]
        kept = [Path(best[0])] if best and Path(best[0]).is_file() else [newest]
    if kept:
        return kept[0]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise ConfigError("--run", str(folder.parent), "a run folder with a checkpoint")


def from_folder(folder: Path, run_id: str | None = None) -> TrainedRun:
    overrides_file = folder / ".hydra" / "overrides.yaml"
    if not overrides_file.is_file():
        raise ConfigError("--run", str(folder), "a run folder of attnlab train (.hydra/ in it)")
    from attnlab.training.resume import RUN_ID_FILE

    id_file = folder / RUN_ID_FILE
    if run_id is None and id_file.is_file():
        run_id = id_file.read_text().strip()
    overrides = yaml.safe_load(overrides_file.read_text()) or []
    return TrainedRun(overrides, best_checkpoint(folder / "checkpoints"), run_id, folder.name)


def from_artifacts(client, record, scratch: Path) -> TrainedRun:
    """A run whose folder is elsewhere: its logged overrides, and the checkpoint that
    Lightning's MLflow logger uploaded with the alias ``best`` (a folder per checkpoint, holding
    the .ckpt and an aliases.txt)."""
    run_id = record.info.run_id

    def download(path: str) -> Path:
        return Path(client.download_artifacts(run_id, path, str(scratch)))

    overrides = yaml.safe_load(download("hydra/overrides.yaml").read_text()) or []
    for folder in (entry for entry in client.list_artifacts(run_id) if entry.is_dir):
        files = {
            f.path.rsplit("/", 1)[-1]: f.path for f in client.list_artifacts(run_id, folder.path)
        }
        checkpoints = [path for name, path in files.items() if name.endswith(".ckpt")]
        if (
            "aliases.txt" in files
            and checkpoints
            and "best" in download(files["aliases.txt"]).read_text()
        ):
            return TrainedRun(overrides, download(checkpoints[0]), run_id, record.info.run_name)
    raise ConfigError("--run", run_id, "a run with a logged best checkpoint")


def trained_run(run: str | None, tracking_uri: str, scratch: Path) -> TrainedRun:
    """The run ``--run`` names (a folder or a run id), or the newest training run."""
    if run and Path(run).is_dir():
        return from_folder(Path(run))
    if run and ("/" in run or os.sep in run):
        raise ConfigError("--run", run, "an existing run folder or an MLflow run id")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from attnlab.tracking.mlflow_run import EVALUATES_TAG
    from attnlab.tracking.store import check_existing_store

    check_existing_store("--tracking-uri", tracking_uri)
    client = MlflowClient(tracking_uri)
    if run is None:
        experiments = [e.experiment_id for e in client.search_experiments()]
        newest = client.search_runs(
            experiments, "attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"], max_results=100,
        )  # fmt: skip
        trained = [
            r for r in newest if EVALUATES_TAG not in r.data.tags and "output_dir" in r.data.tags
        ]
        if not trained:
            raise ConfigError(
                "--tracking-uri", tracking_uri, "a store with a finished training run"
            )
        run = trained[0].info.run_id
    try:
        record = client.get_run(run)
    except MlflowException as error:
        raise ConfigError(
            "--run", run, f"an MLflow run id of this store ({str(error).splitlines()[0]})"
        ) from None
    folder = Path(record.data.tags.get("output_dir", ""))
    if record.data.tags.get("output_dir") and (folder / ".hydra").is_dir():
        return from_folder(folder, run)._replace(name=record.info.run_name)
    return from_artifacts(client, record, scratch)


def repeated(overrides: list[str]) -> list[str]:
    """The trained run's overrides that say what it computed."""
    return [o for o in overrides if not o.lstrip("+~").startswith(NOT_REPEATED)]


def main(args: list[str]) -> int:
    parser = command_parser("attnlab eval", __doc__, formatter_class=RawTextHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="key=value overrides on the run's config")
    parser.add_argument("--run", help="run id or run folder (default: the newest training run)")
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    opts = parser.parse_args(args)
    from attnlab.training.train import main as train_main

    os.environ["MLFLOW_TRACKING_URI"] = opts.tracking_uri  # the eval run goes where its run is

    with tempfile.TemporaryDirectory(prefix="attnlab-eval-") as scratch:
        with report_config_errors():
            trained = trained_run(opts.run, opts.tracking_uri, Path(scratch))
        name = " ".join(["eval of", trained.name, *opts.overrides]).replace("'", "\\'")
        checkpoint = str(trained.checkpoint).replace("'", "\\'")
        evaluation = [f"eval_checkpoint='{checkpoint}'", f"++logger.run_name='{name}'"]
        if trained.run_id:
            evaluation.append(f"eval_of_run={trained.run_id}")
        return train_main([*repeated(trained.overrides), *opts.overrides, *evaluation])
