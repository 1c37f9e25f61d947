"""The API image's environment, reproduced without a Docker engine: the API part alone (the base
package, no `worker` extra) installed into a fresh virtual environment as the Dockerfile's `api`
stage does, where `import torch` fails; it serves the dashboard and /docs to Chromium with the
outside network blocked, beside a worker from the development environment on the same SQLite
file (as the compose file's API and worker images share a volume)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import chromium
from tests.browser.test_dashboard import INK_SCRIPT, _wait
from tests.e2e.stack import REPO_ROOT, Stack, stopped_at_end
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

INSTALL_SECONDS = 600
LOOPBACK = {"127.0.0.1", "localhost"}
OFFLINE_FLAGS = (
    # Every name but loopback resolves to nothing, and anything that still tries goes to a
    # proxy on a port where nothing listens (Chromium never proxies loopback).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)
NETWORK_LOG = {"goog:loggingPrefs": {"performance": "ALL"}}


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


@pytest.fixture(scope="module")
def api_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the base package installed (editable, as in the image)."""
    venv = tmp_path_factory.mktemp("api-image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = [_python(venv), "-m", "pip", "install", "--quiet", "-e", str(REPO_ROOT)]
    result = subprocess.run(install, capture_output=True, text=True, timeout=INSTALL_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    return venv


@pytest.fixture(scope="module")
def image_stack(api_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("image-stack")
    with stopped_at_end(Stack(folder, f"sqlite:///{folder / 'dirconv.db'}")) as stack:
        stack.start_api(python=_python(api_venv))
        stack.start("worker")
        yield stack


@pytest.fixture(scope="module")
def offline_browser() -> Iterator:
    with chromium(*OFFLINE_FLAGS, capabilities=NETWORK_LOG) as driver:
        yield driver


def _requested_urls(browser) -> list[str]:
    """Every URL the page asked for since the last call (Chromium's network log)."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def _outside(urls: list[str]) -> list[str]:
    return [
        url
        for url in urls
        if urlsplit(url).scheme in ("http", "https", "ws", "wss")
        and urlsplit(url).hostname not in LOOPBACK
    ]


def test_api_environment_has_neither_torch_nor_numba(api_venv):
    for module in ("torch", "numba"):
        result = subprocess.run(
            [_python(api_venv), "-c", f"import {module}"], capture_output=True, text=True
        )
        assert result.returncode == 1 and "ModuleNotFoundError" in result.stderr, module


@pytest.fixture(scope="module")
def finished_run(image_stack: Stack) -> int:
    """The id of a run that the worker trained to the end."""
    run = httpx.post(f"{image_stack.url}/experiments", json={"depth": 4, "steps": 2000}).json()
    wait_for(
        lambda: (
            httpx.get(f"{image_stack.url}/experiments/{run['id']}").json()["status"] == "succeeded"
        ),
        "the worker to finish the run",
    )
    return run["id"]


def test_every_read_endpoint_answers_without_torch(image_stack, finished_run):
    sweep = httpx.post(
        f"{image_stack.url}/sweeps", json={"base": {"steps": 100}, "grid": {"depth": [1, 2]}}
    )
    assert sweep.status_code == 201, sweep.text
    ids = {"experiment_id": finished_run, "sweep_id": sweep.json()["id"]}
    queries = {
        "/metrics/compare": {"ids": str(finished_run)},
        "/metrics/aggregate": {"ids": str(finished_run)},
    }
    schema = httpx.get(f"{image_stack.url}/openapi.json").json()
    answers = {
        path: httpx.get(f"{image_stack.url}{path.format(**ids)}", params=queries.get(path))
        for path, methods in schema["paths"].items()
        if "get" in methods
    }
    statuses = {path: answer.status_code for path, answer in answers.items()}
    assert statuses == dict.fromkeys(answers, 200)
    assert answers["/experiments/{experiment_id}/metrics.parquet"].content.startswith(b"PAR1")


def test_dashboard_charts_render_offline(image_stack, finished_run, offline_browser):
    _requested_urls(offline_browser)  # start the log here
    offline_browser.get(f"{image_stack.url}/#/runs/{finished_run}")
    for name in ("directional_error", "loss", "norm"):
        _wait(
            offline_browser,
            lambda name=name: offline_browser.execute_script(INK_SCRIPT, f"#chart-{name}") > 500,
            f"the {name} chart drawn",
        )
    assert _outside(_requested_urls(offline_browser)) == []


def test_swagger_ui_renders_every_operation_offline(image_stack, offline_browser):
    schema = httpx.get(f"{image_stack.url}/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    _requested_urls(offline_browser)
    offline_browser.get(f"{image_stack.url}/docs")
    _wait(
        offline_browser,
        lambda: len(offline_browser.find_elements(By.CSS_SELECTOR, ".opblock")) == operations,
        f"Swagger UI listing all {operations} operations",
    )
    title = offline_browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    assert title.startswith("dirconv")
    assert _outside(_requested_urls(offline_browser)) == []


def test_network_log_would_catch_a_request_to_an_outside_host(image_stack, offline_browser):
    # A page of no server's (every page this one serves forbids outside requests by its CSP).
    offline_browser.get("data:text/html,<p>control</p>")
    _requested_urls(offline_browser)
    # `.invalid` never resolves, and the resolver rules stop it before any lookup anyway.
    offline_browser.execute_script("fetch('https://dirconv-check.invalid/x').catch(() => {})")
    seen = wait_for(lambda: _outside(_requested_urls(offline_browser)), "the fetch in the log")
    assert seen == ["https://dirconv-check.invalid/x"]
