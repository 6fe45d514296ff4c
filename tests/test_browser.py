"""What a user sees: the MLflow UI and the Optuna dashboard in headless Chromium (slow).

Tiny real runs make the stores, in one folder as a user's would be: a 3-trial Optuna sweep, then
``attnlab train -m experiment=agreement model=conv_classifier,rnn_classifier,
transformer_classifier``. ``attnlab ui`` and ``attnlab ui --optuna`` start the servers on free
loopback ports, and the addresses they print are the pages opened. Chromium is Debian's
(``apt-get install -y chromium``), driven by Playwright without a browser download.

Screenshots are kept in the test's output folder (printed with ``-s``); the README's are also
copied to ``$ATTNLAB_SCREENSHOT_DIR`` when set: ``ATTNLAB_SCREENSHOT_DIR=docs pytest -m slow
tests/test_browser.py`` refreshes them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.servers import free_port, serving

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
MODELS = ("conv_classifier", "rnn_classifier", "transformer_classifier")
TINY_AGREEMENT = [
    "experiment=agreement", f"model={','.join(MODELS)}", "data.n_train=256", "data.n_val=64",
    "data.n_test=128", "trainer.max_epochs=2", "logger.log_model=false",
    "callbacks.progress_bar=null", "callbacks.model_summary=null",
]  # fmt: skip
TINY_SWEEP = [
    "sweep=transformer", "hydra.sweeper.n_trials=3", "objective.metric=val/loss",
    "objective.direction=minimize", "data.n_train=256", "data.n_val=32", "data.n_test=32",
    "data.batch_size=32", "model.width=32", "model.ff_width=64", "model.heads=choice(1,2)",
    "scheduler.warmup_steps=2", "debug=limit", "logger.log_model=false",
    "callbacks.progress_bar=null", "callbacks.model_summary=null",
]  # fmt: skip
README_SHOTS = ("runs_table.png", "compare.png")  # docs/*.png, shown in the README
WAIT_MS = 90_000  # the first page of a fresh server on a busy 2-core machine


@pytest.fixture(scope="module", autouse=True)  # first: without a browser, fail in a second
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("no Playwright: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """save(page, name): a screenshot in the test's output (and $ATTNLAB_SCREENSHOT_DIR)."""
    folder = tmp_path_factory.mktemp("screenshots")
    copy_to = os.environ.get("ATTNLAB_SCREENSHOT_DIR")
    if copy_to:  # resolved now: each test runs in its own folder
        copy_to = Path(copy_to).resolve()
        copy_to.mkdir(parents=True, exist_ok=True)

    def save(target, name: str, **options) -> Path:
        path = folder / name
        target.screenshot(path=str(path), **options)
        if copy_to and name in README_SHOTS:
            shutil.copy(path, copy_to / name)
        print(f"screenshot: {path}")
        return path

    return save


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A folder with mlflow.db and optuna.db from a tiny sweep, then the agreement multirun."""
    folder = tmp_path_factory.mktemp("store")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the defaults
    env["OMP_NUM_THREADS"] = "1"
    for args in (TINY_SWEEP, TINY_AGREEMENT):
        command = [sys.executable, "-m", "attnlab.cli", "train", "-m", *args]
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
    return folder


def start_ui(store: Path, *args: str):
    """`attnlab ui ARGS` on a free port in ``store``: (the address it printed, its base)."""
    port = free_port()
    command = [sys.executable, "-m", "attnlab.cli", "ui", "--port", str(port), *args]
    log = store / f"ui-{port}.log"
    base = f"http://127.0.0.1:{port}"
    health = f"{base}/dashboard" if "--optuna" in args else f"{base}/health"
    return serving(command, health, log, cwd=store), log, base


def printed_address(log: Path) -> str:
    match = re.search(r"^(MLflow|Optuna dashboard): (\S+)$", log.read_text(), re.MULTILINE)
    assert match, log.read_text()[-2000:]
    return match.group(2)


@pytest.fixture(scope="module")
def mlflow_ui(store):
    server, log, base = start_ui(store, "--no-browser", "--workers", "1")
    with server:
        yield SimpleNamespace(url=printed_address(log), base=base)


@pytest.fixture(scope="module")
def dashboard(store):
    server, log, base = start_ui(store, "--optuna", "--no-browser")
    with server:
        yield SimpleNamespace(url=printed_address(log), base=base)


def close_assistant(page) -> None:
    """MLflow opens its assistant panel on a first visit; a user closes it to see the table."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def open_runs_table(page, url: str):
    from playwright.sync_api import expect

    page.goto(url)
    for model in MODELS:
        expect(page.get_by_role("link", name=f"model={model}", exact=True)).to_be_visible()
    close_assistant(page)


def test_attnlab_ui_opens_the_runs_table_with_telling_names(mlflow_ui, page, shots):
    from playwright.sync_api import expect

    assert "/runs?workflowType=machine_learning" in mlflow_ui.url
    open_runs_table(page, mlflow_ui.url)
    # the saved view's columns: the param that varies and the objective, runs sorted by it
    for column in ("params.`choices.model`", "metrics.`test/acc`"):
        expect(page.locator(f'[role=columnheader][col-id="{column}"]')).to_be_visible()
    expect(page.get_by_text("rnn_classifier", exact=True)).to_be_visible()
    assert "No data available" not in page.inner_text("body")  # not the GenAI overview
    shots(page, "runs_table.png")


def test_the_compare_view_shows_the_param_that_differs_and_the_metric(
    mlflow_ui, store, page, shots
):
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    open_runs_table(page, mlflow_ui.url)
    compared = ("conv_classifier", "rnn_classifier")
    for model in compared:
        row = page.get_by_role("row").filter(has_text=f"model={model}")
        row.get_by_role("checkbox", name="Press Space to toggle row selection").check()
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text("Comparing 2 Runs")).to_be_visible()
    close_assistant(page)
    page.set_viewport_size({"width": 1400, "height": 2600})  # the whole page, for the picture
    for section in ("Parameters", "Metrics"):
        page.get_by_role("switch", name=f"{section} - Show diff only").click()
    differs = page.get_by_role("row").filter(has_text="choices.model")
    for model in compared:
        expect(differs).to_contain_text(model)
    assert not page.get_by_role("row").filter(has_text="choices.data").count()  # equal: hidden
    expect(page.get_by_role("link", name="test/acc", exact=True)).to_be_visible()
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("agreement")
    for run in client.search_runs([experiment.experiment_id]):
        if run.data.params["choices.model"] in compared:  # shown to 3 significant digits
            value = f"{run.data.metrics['test/acc']:.3g}"
            expect(page.get_by_text(value, exact=True).first).to_be_visible()
    top = page.get_by_role("button", name="Run details").bounding_box()
    end = page.get_by_role("button", name="Artifacts").bounding_box()
    area = {"x": top["x"] - 12, "y": top["y"] - 8, "width": top["width"] + 24}
    shots(page, "compare.png", clip={**area, "height": end["y"] - area["y"]})


def test_a_runs_artifacts_list_its_plots(mlflow_ui, store, page, shots):
    from mlflow import MlflowClient
    from playwright.sync_api import expect

    open_runs_table(page, mlflow_ui.url)
    page.get_by_role("link", name="model=transformer_classifier", exact=True).click()
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("acc_by_group.png", exact=True).click()  # accuracy per distance bucket
    expect(page.get_by_role("img", name="plots/acc_by_group.png")).to_be_visible()
    shots(page, "artifacts.png")

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("date_transformer")
    (trial,) = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_number` = '0'")
    page.goto(f"{mlflow_ui.base}/#/experiments/{experiment.experiment_id}/runs/"
              f"{trial.info.run_id}/artifacts")  # fmt: skip
    page.get_by_text("plots", exact=True).click()
    expect(page.get_by_text("attention_layer1.png", exact=True)).to_be_visible()


def test_the_chart_view_groups_metrics_by_prefix(mlflow_ui, page, shots):
    from playwright.sync_api import expect

    open_runs_table(page, mlflow_ui.url)
    page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
    sections = {
        "test/acc_by_group": "5",
        "val/acc_by_group": "5",
        "baseline/test/acc": "4",  # chance, bag_of_tokens, last_noun, majority
        "baseline/test/error": "4",
        "test": r"\d+",
        "val": r"\d+",
        "train": r"\d+",
    }
    for section, count in sections.items():  # MLflow's section: the name up to its last "/"
        title = re.compile(rf"^{re.escape(section)}\s*\({count}\)")
        expect(page.get_by_role("figure").filter(has_text=title)).to_be_visible()
    shots(page, "charts.png")


def test_the_dashboard_shows_the_sweep(dashboard, page, shots):
    from playwright.sync_api import expect

    assert dashboard.url == f"{dashboard.base}/dashboard/studies/1"
    page.goto(dashboard.url)
    expect(page.get_by_text("transformer_dates (id=1)")).to_be_visible()
    for panel in ("History", "Hyperparameter Importance", "Intermediate values"):
        expect(page.get_by_role("heading", name=panel, exact=True)).to_be_visible()
    for number in range(3):
        expect(page.get_by_text(f"trial #{number}", exact=True)).to_be_visible()
    shots(page, "optuna_dashboard.png", full_page=True)


def test_sweep_trials_are_named_by_number_and_sampled_values(store):
    import optuna
    from mlflow import MlflowClient

    from attnlab.tracking.names import trial_name

    study = optuna.load_study(
        study_name="transformer_dates", storage=f"sqlite:///{store}/optuna.db"
    )
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("date_transformer")
    runs = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_number` != ''")
    names = {int(r.data.tags["optuna.trial_number"]): r.info.run_name for r in runs}
    assert names == {t.number: trial_name(t.number, t.params) for t in study.trials}
    assert all(name.startswith(f"trial-{n} ") and "heads=" in name for n, name in names.items())
