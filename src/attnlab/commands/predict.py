"""``attnlab predict``: a trained seq2seq model's output for texts you give.

    attnlab predict "vendredi 27 novembre 2026"            # the newest run with a model
    attnlab predict --run RUN_ID "11/27/2026" "27.11.2026"
    attnlab predict --run logs/date_transformer/runs/FOLDER --file dates.txt
    attnlab predict --run models:/dates/1 --file -          # a registered model, stdin

One output per input, one per line, in order. ``--run`` takes an MLflow run id, a model URI
(``runs:/ID/model``, ``models:/NAME/VERSION``) or a run's output folder (its predictor.pt,
no tracking store needed); by default the newest finished run that logged a model.
"""

from __future__ import annotations

import os
import sys
from argparse import RawTextHelpFormatter
from pathlib import Path
from typing import Any

from attnlab.cli import command_parser
from attnlab.core.errors import ConfigError, report_config_errors

URI_SCHEMES = ("runs:/", "models:/")


def newest_model_uri(tracking_uri: str) -> str:
    """The model of the newest finished run of the store that logged one."""
    from mlflow import MlflowClient

    from attnlab.serving import MODEL_TAG

    client = MlflowClient(tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(
        experiments,
        f"attributes.status = 'FINISHED' and tags.`{MODEL_TAG}` LIKE 'runs:/%'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not found:
        allowed = "a store with a finished run that logged a model (seq2seq: attnlab train)"
        raise ConfigError("--tracking-uri", tracking_uri, allowed)
    return found[0].data.tags[MODEL_TAG]


def load_predictor(run: str | None, tracking_uri: str) -> Any:
    """Something with ``predict(texts) -> texts`` for ``--run``'s value."""
    import mlflow

    from attnlab.serving import MODEL_NAME, PREDICTOR_FILE, TextPredictor
    from attnlab.tracking.store import check_existing_store

    if run and Path(run).is_dir():
        saved = Path(run) / PREDICTOR_FILE
        if not saved.is_file():
            allowed = f"a run folder holding {PREDICTOR_FILE} (a seq2seq run with log_model=true)"
            raise ConfigError("--run", run, allowed)
        return TextPredictor.load(saved)
    if run and not run.startswith(URI_SCHEMES) and ("/" in run or os.sep in run):
        raise ConfigError("--run", run, "an existing run folder, a run id or a model URI")
    uri = run if run and run.startswith(URI_SCHEMES) else None
    if run and uri is None:
        uri = f"runs:/{run}/{MODEL_NAME}"
    check_existing_store("--tracking-uri", tracking_uri)  # never create one by asking
    mlflow.set_tracking_uri(tracking_uri)
    uri = uri or newest_model_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as error:
        first = str(error).splitlines()[0]
        allowed = f"a run or model with a logged model ({first})"
        raise ConfigError("--run", run or uri, allowed) from None


def read_inputs(texts: list[str], file: str | None) -> list[str]:
    """The texts of the command line, or the lines of ``file`` (``-``: stdin)."""
    if file is None:
        return texts
    if file == "-":
        return [line.rstrip("\n") for line in sys.stdin if line.strip()]
    path = Path(file)
    if not path.is_file():
        raise ConfigError("--file", file, "an existing text file, one input per line")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError("--file", file, "a UTF-8 text file, one input per line") from None
    return [line for line in lines if line.strip()]


def main(args: list[str]) -> int:
    parser = command_parser("attnlab predict", __doc__, formatter_class=RawTextHelpFormatter)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="inputs (or --file)")
    parser.add_argument("--run", help="run id, model URI or run folder (default: the newest)")
    parser.add_argument("--file", help="read the inputs from this file, one per line; - stdin")
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    opts = parser.parse_args(args)
    if bool(opts.texts) == bool(opts.file):
        parser.error("give the inputs as TEXT arguments or as --file, one of the two")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with report_config_errors():
        inputs = read_inputs(opts.texts, opts.file)
        if not inputs:
            raise ConfigError("--file", opts.file, "a file with at least one non-empty line")
        predictor = load_predictor(opts.run, opts.tracking_uri)
        outputs = predictor.predict(inputs)
    for output in outputs:
        print(output)
    return 0
