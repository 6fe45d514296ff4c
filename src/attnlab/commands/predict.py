"""``attnlab predict``: a trained run's outputs for inputs you give, in the form its data takes.

    attnlab predict "vendredi 27 novembre 2026"            # the newest run with a model
    attnlab predict --run RUN_ID "11/27/2026" "27.11.2026"
    attnlab predict --run logs/date_transformer/runs/FOLDER --file dates.txt
    attnlab predict --run models:/dates/1 --file -          # a registered model, stdin
    attnlab predict --run RUN_ID --attention maps/ "27.11.2026"   # + maps/attention_1.png

Each kind of run takes its own inputs (arguments, or --file):
    seq2seq on text       a text                        -> its output text
    text classification   words separated by spaces     -> the class (name or index)
    tagging               words separated by spaces     -> one tag per word
    image classification  PNG/JPEG/.npy files, or rows  -> the class (name or index)
                          of comma-separated pixels (--file: a CSV of such rows)
    forecast              one line of comma-separated   -> the next values, comma-separated
                          values (--file: a CSV, one row per step, a header may name columns)

One output per input, one per line, in order. ``--run`` takes an MLflow run id, a model URI
(``runs:/ID/model``, ``models:/NAME/VERSION``) or a run's output folder (its predictor.pt,
no tracking store needed); by default the newest finished run that logged a model.
``--attention DIR`` (seq2seq models with encoder-decoder attention) also writes one heat map
per input, DIR/attention_<n>.png: source tokens x output tokens, per decoder layer and head.
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
    """The attnlab Predictor of ``--run``'s value (from MLflow: the one its pyfunc model holds)."""
    import mlflow

    from attnlab.serving import MODEL_NAME, PREDICTOR_FILE, Predictor
    from attnlab.tracking.store import check_existing_store

    if run and Path(run).is_dir():
        saved = Path(run) / PREDICTOR_FILE
        if not saved.is_file():
            allowed = f"a run folder holding {PREDICTOR_FILE} (a finished run with log_model=true)"
            raise ConfigError("--run", run, allowed)
        return Predictor.load(saved)
    if run and not run.startswith(URI_SCHEMES) and ("/" in run or os.sep in run):
        raise ConfigError("--run", run, "an existing run folder, a run id or a model URI")
    uri = run if run and run.startswith(URI_SCHEMES) else None
    if run and uri is None:
        uri = f"runs:/{run}/{MODEL_NAME}"
    check_existing_store("--tracking-uri", tracking_uri)  # never create one by asking
    mlflow.set_tracking_uri(tracking_uri)
    uri = uri or newest_model_uri(tracking_uri)
    try:
        return mlflow.pyfunc.load_model(uri).unwrap_python_model().predictor
    except mlflow.exceptions.MlflowException as error:
        first = str(error).splitlines()[0]
        allowed = f"a run or model with a logged model ({first})"
        raise ConfigError("--run", run or uri, allowed) from None


def read_inputs(texts: list[str], file: str | None, predictor: Any) -> list[str]:
    """The inputs of the command line, or those of ``file`` (``-``: stdin) as the predictor's
    kind reads a file (lines; a forecast: the whole file, one history)."""
    if file is None:
        return texts
    if file == "-":
        return predictor.split_file(sys.stdin.read())
    try:
        return predictor.split_file(Path(file).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("--file", file, predictor.file_allowed) from None


def main(args: list[str]) -> int:
    parser = command_parser("attnlab predict", __doc__, formatter_class=RawTextHelpFormatter)
    parser.add_argument("texts", nargs="*", metavar="INPUT", help="inputs (or --file)")
    parser.add_argument("--run", help="run id, model URI or run folder (default: the newest)")
    parser.add_argument("--file", help="read the inputs from this file (- stdin); see above")
    parser.add_argument(
        "--attention", metavar="DIR", help="also write a heat map per input (seq2seq attention)"
    )
    parser.add_argument(
        "--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    )
    opts = parser.parse_args(args)
    if bool(opts.texts) == bool(opts.file):
        parser.error("give the inputs as INPUT arguments or as --file, one of the two")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with report_config_errors():
        from attnlab.serving import ATTENTION_ALLOWED, TextPredictor

        if opts.file not in (None, "-") and not Path(opts.file).is_file():
            raise ConfigError("--file", opts.file, "an existing file of inputs")
        predictor = load_predictor(opts.run, opts.tracking_uri)
        inputs = read_inputs(opts.texts, opts.file, predictor)
        if not inputs:
            raise ConfigError("--file", opts.file, "a file with at least one non-empty line")
        if opts.attention and not isinstance(predictor, TextPredictor):
            allowed = f"{ATTENTION_ALLOWED}; this run's predictor is of kind {predictor.kind!r}"
            raise ConfigError("--attention", opts.attention, allowed)
        try:
            outputs = predictor.predict(inputs)
        except ConfigError as error:
            if opts.file not in (None, "-") and len(inputs) == 1:  # the file is the input
                raise ConfigError("--file", opts.file, error.allowed) from None
            raise
        if opts.attention:
            predictor.save_attention(inputs, opts.attention)
    for output in outputs:
        print(output)
    return 0
