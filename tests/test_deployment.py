"""The compose file and Dockerfile, checked without a Docker engine (none runs here)."""

import re
from pathlib import Path

import yaml

from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME:-default}`, enough for this file."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1)) or m.group(2), str(value))


def _seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def test_compose_defines_api_and_worker_from_one_image():
    services = _compose()["services"]
    assert {"api", "worker"} <= set(services)
    assert services["api"]["image"] == services["worker"]["image"]
    assert services["api"]["build"] == "."
    assert services["worker"]["command"] == ["python", "-m", "worker"]
    assert services["worker"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_shares_a_named_volume_for_the_sqlite_file():
    compose = _compose()
    assert "dirconv-data" in compose["volumes"]
    for name in ("api", "worker"):
        service = compose["services"][name]
        assert "dirconv-data:/data" in service["volumes"]
        url = _interpolate(service["environment"]["DATABASE_URL"], {})
        assert url == "sqlite:////data/dirconv.db"


def test_api_healthcheck_probes_healthz():
    healthcheck = _compose()["services"]["api"]["healthcheck"]
    assert any("/healthz" in part for part in healthcheck["test"])


def test_dockerfile_copies_paths_that_exist():
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source


def test_postgres_profile_serves_the_database_that_the_readme_points_to():
    services = _compose()["services"]
    postgres = services["postgres"]
    assert postgres["profiles"] == ["postgres"]
    assert "pg_isready" in postgres["healthcheck"]["test"]
    env = postgres["environment"]
    url = f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432"
    readme = (REPO_ROOT / "README.md").read_text()
    assert f"DATABASE_URL={url}/{env['POSTGRES_DB']}" in readme
    assert "docker compose --profile postgres up --scale worker=4" in readme
    for name in ("api", "worker"):
        assert _interpolate(services[name]["environment"]["DATABASE_URL"], {"DATABASE_URL": url})
    assert services["api"]["depends_on"]["postgres"] == {
        "condition": "service_healthy",
        "required": False,
    }


def test_worker_scales_and_stops_gracefully_within_the_grace_period():
    worker = _compose()["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale needs both absent
    assert worker["stop_signal"] == "SIGTERM"
    knobs = {k.removeprefix("DIRCONV_").lower(): v for k, v in worker["environment"].items()}
    settings = Settings(**{k: v for k, v in knobs.items() if k != "database_url"})
    assert settings.heartbeat_seconds < settings.lease_seconds
    # A stopping worker finishes its block, writes one checkpoint and requeues: seconds.
    assert _seconds(worker["stop_grace_period"]) >= 10
