"""/docs: Swagger UI served from the npm package's local copy, naming no outside host."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.db import upgrade_schema
from service.main import create_app

ASSET_REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')
OUTSIDE_URL = re.compile(r"(?:https?:)?//(?!localhost|127\.0\.0\.1)[\w.-]+\.\w+", re.IGNORECASE)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'dirconv.db'}"
    upgrade_schema(url)
    with TestClient(create_app(url), base_url="http://localhost") as test_client:
        yield test_client


def test_docs_page_loads_swagger_ui_from_this_server(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = ASSET_REFERENCE.findall(page.text)
    assert "/ui/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert response.content, asset
    assert "url: '/openapi.json'" in page.text


@pytest.mark.parametrize("path", ["/", "/docs"])
def test_no_page_names_an_outside_host(client, path):
    assert OUTSIDE_URL.findall(client.get(path).text) == []


def test_swagger_ui_sends_the_schema_to_no_online_validator(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_redoc_is_not_served(client):
    # FastAPI's ReDoc page loads its script and fonts from a CDN.
    assert client.get("/redoc").status_code == 404


def test_outside_url_pattern_finds_a_cdn_link():
    page = '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js">'
    assert OUTSIDE_URL.findall(page) == ["https://cdn.jsdelivr.net"]
    assert OUTSIDE_URL.findall('<a href="http://127.0.0.1:8000/docs">') == []


def test_swagger_ui_is_pinned_from_npm_and_copied_by_the_one_vendor_script():
    root = Path(__file__).resolve().parents[2]
    package = json.loads((root / "package.json").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["dependencies"]["swagger-ui-dist"])
    assert "swagger-ui-dist/swagger-ui-bundle.js" in (root / "scripts/vendor-assets.sh").read_text()
    assert "scripts/vendor-assets.sh" in (root / "Makefile").read_text()
