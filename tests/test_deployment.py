"""The compose file and Dockerfile, checked without a Docker engine (none runs here)."""

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


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
        assert service["environment"]["DATABASE_URL"] == "sqlite:////data/dirconv.db"


def test_api_healthcheck_probes_healthz():
    healthcheck = _compose()["services"]["api"]["healthcheck"]
    assert any("/healthz" in part for part in healthcheck["test"])


def test_dockerfile_copies_paths_that_exist():
    for line in (REPO_ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO_ROOT / source).exists(), source
