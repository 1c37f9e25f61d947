"""The dashboard's page and assets, served by the API."""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_root_serves_the_dashboard_page(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script src="/ui/app.js"' in response.text
    assert "/ui/vendor/uPlot.iife.min.js" in response.text


def test_assets_are_served_with_their_types(client):
    assert "javascript" in client.get("/ui/app.js").headers["content-type"]
    assert client.get("/ui/style.css").headers["content-type"].startswith("text/css")


def test_paths_outside_the_web_folder_are_not_served(client):
    for path in ("/ui/../db.py", "/ui/%2e%2e/db.py", "/ui/missing.js", "/ui/"):
        assert client.get(path).status_code == 404, path


def test_dashboard_stays_out_of_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/ui") for p in paths)


def test_page_loads_nothing_from_other_hosts():
    page = (REPO_ROOT / "service/web/index.html").read_text()
    assert "http://" not in page and "https://" not in page and "//cdn" not in page


def test_chart_library_is_pinned_from_npm_not_committed():
    package = json.loads((REPO_ROOT / "package.json").read_text())
    assert package["dependencies"]["uplot"].count(".") == 2  # an exact version
    assert "service/web/vendor/" in (REPO_ROOT / ".gitignore").read_text()


def test_a_path_the_filesystem_refuses_is_a_404_with_a_short_detail(client):
    for path in ["a" * 5000, "a/" * 3000]:
        response = client.get(f"/ui/{path}")
        assert response.status_code == 404
        assert len(response.json()["detail"]) < 200
