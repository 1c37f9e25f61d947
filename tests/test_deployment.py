"""The compose file, the Dockerfile and .dockerignore, checked without a Docker engine (none runs
here): the compose file against the Compose specification's JSON schema, the Dockerfile's
stages by a Dockerfile parser, and the build context by Docker's own .dockerignore rules."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from docker.utils.build import exclude_paths
from dockerfile_parse import DockerfileParser

from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST_STATE = [
    ".venv/bin/python",
    "data/dirconv.db",
    "node_modules/uplot/package.json",
    "service/web/vendor/uPlot.iife.min.js",
    "test-artifacts/dashboard.png",
    ".git/HEAD",
    "core/__pycache__/spec.cpython-311.pyc",
    "dirconv.egg-info/PKG-INFO",
    "reproduction/table.md",
    ".pytest_cache/README.md",
    "dirconv.db",
]
"""Files a developer's checkout holds that must never reach an image."""


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}`, enough for this file."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), str(value))


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def _stages() -> dict[str, list[dict]]:
    """Each build stage's instructions, its base stages' first (a stage built FROM another)."""
    stages: dict[str, list[dict]] = {}
    current: list[dict] = []
    for instruction in DockerfileParser(str(REPO_ROOT / "Dockerfile")).structure:
        if instruction["instruction"] == "FROM":
            base, _, name = instruction["value"].partition(" AS ")
            current = [*stages.get(base.strip(), []), instruction]
            stages[name.strip()] = current
        elif instruction["instruction"] != "COMMENT":
            current.append(instruction)
    return stages


def _runs(stage: str) -> str:
    return "\n".join(i["value"] for i in _stages()[stage] if i["instruction"] == "RUN")


def _copied_sources(stage: str) -> list[str]:
    sources = []
    for instruction in _stages()[stage]:
        parts = instruction["value"].split()
        if instruction["instruction"] == "COPY" and not parts[0].startswith("--from"):
            sources.extend(parts[:-1])
    return sources


def _check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    return subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=120)


def test_compose_file_follows_the_compose_specification():
    result = _check_compose_schema(REPO_ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_rejects_a_misspelt_key(tmp_path):
    broken = _compose()
    broken["services"]["worker-gpu"]["deploy"]["resources"]["reservation"] = {}
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(broken))
    result = _check_compose_schema(tmp_path / "compose.yml")
    assert result.returncode == 1
    assert "reservation" in result.stdout


def test_each_service_builds_its_own_dockerfile_stage():
    services, stages = _compose()["services"], _stages()
    targets = {"api": "api", "worker": "worker-cpu", "worker-gpu": "worker-gpu"}
    for service, target in targets.items():
        assert services[service]["build"] == {"context": ".", "target": target}
        assert target in stages
    assert len({services[name]["image"] for name in targets}) == len(targets)


def test_api_image_has_neither_torch_nor_the_worker():
    runs = _runs("api")
    install = runs.split("!")[0]  # what comes after `!` asserts that torch is absent
    assert "pip install -e ." in install and "[worker]" not in install and "torch" not in install
    assert "worker" not in _copied_sources("api")
    assert '! python -c "import torch"' in runs  # the build itself fails if torch crept in


def test_api_image_gets_the_web_assets_from_the_node_stage():
    stages = _stages()
    assert "scripts/vendor-assets.sh" in _runs("assets")
    copies = [i["value"] for i in stages["api"] if i["instruction"] == "COPY"]
    assert "--from=assets /src/service/web/vendor ./service/web/vendor" in copies


def test_cpu_worker_installs_the_pinned_torch_from_the_cpu_index():
    pins = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(p for p in pins["optional-dependencies"]["worker"] if p.startswith("torch"))
    cpu = _runs("worker-cpu")
    assert f'--extra-index-url "$TORCH_CPU_INDEX" "{torch_pin}+cpu"' in cpu
    assert "whl/cpu" in "\n".join(i["value"] for i in _stages()["worker-cpu"])
    assert "torch.version.cuda is None" in cpu
    assert "torch.version.cuda is not None" in _runs("worker-gpu")


def test_base_dependencies_leave_torch_and_numba_to_the_worker_extra():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[=<>\[]", dep)[0] for dep in project["dependencies"]}
    assert not names & {"torch", "numba", "llvmlite"}
    extras = project["optional-dependencies"]
    assert {dep.split("==")[0] for dep in extras["worker"]} == {"torch", "numba"}
    assert "dirconv[worker]" in extras["dev"]  # `make install` still gets the worker


def _mirror(tmp_path: Path) -> Path:
    """Empty files at the paths of the tracked files and of typical host state."""
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in [*tracked, *HOST_STATE]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (tmp_path / ".dockerignore").write_text((REPO_ROOT / ".dockerignore").read_text())
    return tmp_path


def _build_context(root: Path) -> set[str]:
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return set(exclude_paths(str(root), patterns))


def test_build_context_holds_no_host_state(tmp_path):
    context = _build_context(_mirror(tmp_path))
    leaked = [name for name in HOST_STATE if name in context]
    assert leaked == []
    assert not any(name.startswith(("tests/", "bench/", "docs/")) for name in context)


def test_build_context_holds_everything_the_dockerfile_copies(tmp_path):
    root = _mirror(tmp_path)
    context = _build_context(root)
    sources = {s for stage in _stages() for s in _copied_sources(stage)}
    for source in sources:
        files = [source] if (root / source).is_file() else [
            str(p.relative_to(root)) for p in (root / source).rglob("*")
            if p.is_file() and str(p.relative_to(root)) not in HOST_STATE
        ]  # fmt: skip
        assert files, source
        assert set(files) <= context, source


@pytest.mark.parametrize("service", ["api", "worker", "worker-gpu"])
def test_services_share_a_named_volume_for_the_sqlite_file(service):
    compose = _compose()
    assert "dirconv-data" in compose["volumes"]
    definition = compose["services"][service]
    assert "dirconv-data:/data" in definition["volumes"]
    url = _interpolate(definition["environment"]["DATABASE_URL"], {})
    assert url == "sqlite:////data/dirconv.db"


def test_api_healthcheck_probes_healthz_and_workers_wait_for_it():
    services = _compose()["services"]
    assert any("/healthz" in part for part in services["api"]["healthcheck"]["test"])
    for name in ("worker", "worker-gpu"):
        assert services[name]["depends_on"]["api"]["condition"] == "service_healthy"


def test_gpu_profile_adds_a_worker_that_reserves_the_nvidia_gpus():
    gpu = _compose()["services"]["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_auth_is_on_and_the_readme_gives_the_first_admin_one_liner():
    assert _compose()["services"]["api"]["environment"]["DIRCONV_AUTH"] == "tokens"
    one_liner = "docker compose exec api python -m service tokens create --user admin --role admin"
    assert one_liner in (REPO_ROOT / "README.md").read_text()
    assert one_liner in (REPO_ROOT / "docker-compose.yml").read_text()


def test_compose_version_needed_is_stated():
    for path in ("README.md", "docker-compose.yml"):
        assert "Compose v2.20" in (REPO_ROOT / path).read_text(), path


def test_postgres_profile_serves_the_database_that_the_readme_points_to():
    services = _compose()["services"]
    postgres = services["postgres"]
    assert postgres["profiles"] == ["postgres"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    env = postgres["environment"]
    url = f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432"
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"DATABASE_URL={url}/{env['POSTGRES_DB']}" in readme
    assert "docker compose --profile postgres up --build --scale worker=4" in readme
    for name in ("api", "worker", "worker-gpu"):
        environment = services[name]["environment"]
        assert _interpolate(environment["DATABASE_URL"], {"DATABASE_URL": url}) == url
    assert services["api"]["depends_on"]["postgres"] == {
        "condition": "service_healthy",
        "required": False,
    }


@pytest.mark.parametrize("service", ["worker", "worker-gpu"])
def test_worker_scales_and_stops_gracefully_within_the_grace_period(service):
    worker = _compose()["services"][service]
    assert "container_name" not in worker and "ports" not in worker  # --scale needs both absent
    assert worker["stop_signal"] == "SIGTERM"
    knobs = {k.removeprefix("DIRCONV_").lower(): v for k, v in worker["environment"].items()}
    settings = Settings(**{k: v for k, v in knobs.items() if k != "database_url"})
    assert settings.heartbeat_seconds < settings.lease_seconds
    # A stopping worker finishes its block, writes one checkpoint and requeues: seconds.
    assert _seconds(worker["stop_grace_period"]) >= 10
