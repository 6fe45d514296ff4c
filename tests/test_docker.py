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

from attnlab.config import register_schemas
from attnlab.paths import config_dir, sweeps_dir

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
