"""docker/: both Dockerfiles pass hadolint, compose.yaml passes the Compose Specification's
schema, and the files keep the README's promises (non-root images that run ``attnlab``, ports
bound to localhost, health checks, workers that join one shared sweep).

No Docker engine runs where these tests run: nothing here builds an image or starts a container.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from attnlab.core.config import register_schemas
from attnlab.core.paths import config_dir, sweeps_dir

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.cuda"]
COMPOSE = ROOT / "docker" / "compose.yaml"
LONG_RUNNING = {"postgres", "mlflow", "optuna-dashboard"}  # the workers exit when the study is full


def dev_tool(name: str) -> str:
    """A dev dependency's executable (beside this Python first: the venv may not be on PATH)."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    path = shutil.which(name, path=search)
    assert path, f"{name} is missing: it is a dev dependency (pip install -e '.[dev]')"
    return path


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (keyword.upper(), args.strip())
        for keyword, _, args in (line.strip().partition(" ") for line in joined.splitlines())
        if keyword
    ]


def compose_file() -> dict:
    """compose.yaml as Compose reads it with no variable set: ${VAR:-default} -> default."""
    return yaml.safe_load(re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", COMPOSE.read_text()))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_passes_hadolint(dockerfile: Path):
    result = run(dev_tool("hadolint"), "--no-color", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_specification():
    # check-jsonschema ships the Compose Specification's schema (vendor.compose-spec): offline.
    result = run(
        dev_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_image_runs_attnlab_as_a_user(dockerfile: Path):
    steps = instructions(dockerfile)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    assert users[-1].partition(":")[0] not in ("root", "0")
    entrypoints = [args for keyword, args in steps if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoints[-1]) == ["attnlab"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerignore_lets_the_copied_files_through(dockerfile: Path):
    """.dockerignore ignores everything, then lets back what the images COPY from the context."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    for keyword, args in instructions(dockerfile):
        if keyword == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert f"!{source.rstrip('/')}" in patterns, source


def wheel_from_copied_files(dockerfile: Path, folder: Path) -> Path:
    """What ``pip install ./`` in the image builds: the wheel, from exactly the COPYed files
    (pyproject.toml force-includes conf/, sweeps/ and claims/: one left out fails the build)."""
    for keyword, args in instructions(dockerfile):
        if keyword == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copy
                copy(ROOT / source, folder / source.rstrip("/"))
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", "dist"],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (folder / "dist").glob("attnlab-*.whl")
    return wheel


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_files_an_image_copies_build_the_wheel_with_its_configs(
    dockerfile: Path, tmp_path: Path
):
    wheel = wheel_from_copied_files(dockerfile, tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for shipped in ("attnlab/conf/train.yaml", "attnlab/sweeps/overfitting.yaml"):
        assert shipped in names
    assert any(name.startswith("attnlab/claims/") for name in names)


@pytest.mark.slow
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_wheel_an_image_builds_trains_from_an_empty_folder(dockerfile: Path, tmp_path: Path):
    """The image's package, installed into a fresh venv (its dependencies read from this
    environment's site-packages, where the checkout's own attnlab is not importable), trains
    the default experiment for a few steps and lists the claims, in a folder with nothing else."""
    import site

    (tmp_path / "build").mkdir()
    wheel = wheel_from_copied_files(dockerfile, tmp_path / "build")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    (site_packages,) = venv.glob("lib/python*/site-packages")
    # a plain path line: this environment's packages, without its .pth files (the editable
    # install of the checkout is one of them)
    (site_packages / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-q", str(wheel)]
    subprocess.run(pip, check=True, timeout=300, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ATTNLAB_COMPONENTS")}
    env |= {"OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{empty}/mlflow.db"}

    def attnlab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(venv / "bin" / "attnlab"), *args], cwd=empty, env=env,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import attnlab; print(attnlab.__file__)"],
        cwd=empty, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert where.stdout.startswith(str(site_packages)), where.stdout + where.stderr
    trained = attnlab("train", "debug=limit", "callbacks.progress_bar=null")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test/exact_match = " in trained.stdout
    claims = attnlab("claim", "list")
    assert claims.returncode == 0 and "norm_noniid" in claims.stdout, claims.stderr


def test_published_ports_are_bound_to_localhost():
    for name, service in compose_file()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every address"


def test_long_running_services_have_health_checks():
    services = compose_file()["services"]
    assert set(services) == LONG_RUNNING | {"worker", "worker-gpu"}, (
        "a new service: is it long-running?"
    )
    for name in LONG_RUNNING:
        assert services[name].get("restart") == "unless-stopped", name
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, f"{name} -> {needed}"


def test_the_gpu_worker_reserves_a_gpu_and_runs_the_cpu_workers_sweep_on_it():
    services = compose_file()["services"]
    gpu, cpu = services["worker-gpu"], services["worker"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert [c for c in gpu["command"] if c != "trainer=gpu"] == cpu["command"]
    assert gpu["depends_on"] == cpu["depends_on"]


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_worker_command_composes_a_shared_sweep(name: str):
    services = compose_file()["services"]
    train, multirun, *overrides = services[name]["command"]
    assert (train, multirun) == ("train", "-m")
    sweep = next(o.removeprefix("sweep=") for o in overrides if o.startswith("sweep="))
    assert (sweeps_dir() / f"{sweep}.yaml").is_file(), sweep

    register_schemas()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    assert cfg.hydra.sweeper.storage.startswith("postgresql+psycopg://")
    assert cfg.hydra.sweeper.storage.endswith("@postgres:5432/optuna")
    assert cfg.hydra.sweeper.sampler.seed is None  # see the comment on the worker service
    OmegaConf.to_object(cfg.logger)  # the logger schema accepts the tracking URI
    # The MLflow server rejects Host headers it does not list: it must list the workers' one.
    host = cfg.logger.tracking_uri.removeprefix("http://")
    allowed = next(a for a in services["mlflow"]["command"] if a.startswith("--allowed-hosts="))
    assert host in allowed.removeprefix("--allowed-hosts=").split(",")


# The team server's login (MLflow's basic-auth app): the secrets it and the workers need come
# from the environment or docker/.env, each a required variable (Compose stops with the message
# when it is unset) with no default and never on a command line that `ps` shows.
SERVER_SECRETS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
WORKER_LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def raw_compose_file() -> dict:
    """compose.yaml as written: variable references left as they are."""
    return yaml.safe_load(COMPOSE.read_text())


def option(command: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in a command list."""
    for i, arg in enumerate(command):
        if arg.startswith(f"{name}="):
            return arg.partition("=")[2]
        if arg == name and i + 1 < len(command):
            return command[i + 1]
    return None


def assert_required_reference(value: object, variable: str) -> None:
    match = re.fullmatch(r"\$\{(\w+):\?([^}]+)\}", str(value))
    assert match, f"{variable}={value!r}: not a required variable reference ${{VAR:?message}}"
    assert match.group(1) == variable
    assert variable in match.group(2) or "docker/.env" in match.group(2), match.group(2)


def test_the_mlflow_server_runs_the_basic_auth_app():
    mlflow = compose_file()["services"]["mlflow"]
    assert mlflow["entrypoint"] == ["mlflow", "server"]
    assert option(mlflow["command"], "--app-name") == "basic-auth"
    # Without a config file of its own (MLFLOW_AUTH_CONFIG_PATH) the app keeps its users in
    # basic_auth.db, relative to the directory the server starts in (MLflow's basic_auth.ini).
    assert "MLFLOW_AUTH_CONFIG_PATH" not in mlflow.get("environment", {})


def test_the_mlflow_servers_secrets_are_required_variables_of_its_environment():
    mlflow = raw_compose_file()["services"]["mlflow"]
    for variable in SERVER_SECRETS:
        assert_required_reference(mlflow["environment"][variable], variable)


@pytest.mark.parametrize("name", ["worker", "worker-gpu"])
def test_workers_log_in_with_the_tracking_credentials_of_the_environment(name: str):
    worker = raw_compose_file()["services"][name]
    for variable in WORKER_LOGIN:
        assert_required_reference(worker["environment"][variable], variable)
    assert "logger.tracking_uri='http://mlflow:5000'" in worker["command"]


def test_no_secret_is_written_in_the_file_or_on_a_command_line():
    text = COMPOSE.read_text()
    for variable in SERVER_SECRETS + WORKER_LOGIN:
        # every mention is the required reference: no default value, no second copy
        mentions = re.findall(rf"\$\{{{variable}\b[^}}]*\}}", text)
        assert mentions and all(m.startswith(f"${{{variable}:?") for m in mentions), mentions
    for name, service in raw_compose_file()["services"].items():
        argv = [
            *service.get("entrypoint", []),
            *service.get("command", []),
            *service.get("healthcheck", {}).get("test", []),
        ]
        for arg in map(str, argv):
            for variable in SERVER_SECRETS + WORKER_LOGIN:
                assert variable not in arg, f"{name} puts {variable} on its command line: {arg}"


def test_the_user_store_lives_in_a_named_volume_the_image_lets_the_server_write():
    compose = compose_file()
    mlflow = compose["services"]["mlflow"]
    folder = mlflow["working_dir"]  # where basic_auth.db is created
    mounts = dict(reversed(volume.split(":")[:2]) for volume in mlflow["volumes"])
    assert folder in mounts, f"{folder} (basic_auth.db) is not on a volume: lost on restart"
    assert mounts[folder] in compose["volumes"], f"{mounts[folder]} is not a named volume"
    # A new volume takes the owner of the image's folder it is mounted on: without the folder
    # in the image, Docker creates it for root and the server (UID 10001) cannot write there.
    runs = [args for keyword, args in instructions(DOCKERFILES[0]) if keyword == "RUN"]
    assert any(
        re.search(rf"mkdir [^&]*{folder}\b", run) and re.search(rf"chown \S+ [^&]*{folder}\b", run)
        for run in runs
    ), f"docker/Dockerfile does not create {folder} for the attnlab user"


def test_the_health_check_needs_no_login():
    # The basic-auth app leaves /health open (MLflow: mlflow.server.auth's unprotected routes),
    # so the health check stays a plain GET without credentials.
    test = compose_file()["services"]["mlflow"]["healthcheck"]["test"]
    assert any("http://127.0.0.1:5000/health'" in arg for arg in test), test


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_the_images_install_the_auth_extra(dockerfile: Path):
    """MLflow's basic-auth app needs Flask-WTF: pyproject.toml's auth extra."""
    installs = [
        re.search(r'"\./\[([^\]]*)\]"', args)
        for keyword, args in instructions(dockerfile)
        if keyword == "RUN" and "pip install" in args
    ]
    (extras,) = [match.group(1).split(",") for match in installs if match]
    assert {"postgres", "auth"} <= set(extras), extras
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^auth = \[[^\]]*"Flask-WTF', pyproject, re.MULTILINE)
