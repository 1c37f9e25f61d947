"""Headless Debian Chromium driven by Selenium, and a real API and worker for it to show."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests import prerequisites
from tests.e2e.stack import REPO_ROOT, Stack, api_and_worker

CHROMIUM = Path(os.environ.get("DIRCONV_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("DIRCONV_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test that drives Chromium skips (or, where required, fails) without one, before any
    of its fixtures starts a stack."""
    if any(name.endswith("browser") for name in getattr(item, "fixturenames", ())):
        require_chromium()


def require_chromium() -> None:
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if absent:
        prerequisites.missing("chromium", f"no {' or '.join(absent)}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_and_worker(tmp_path_factory.mktemp("stack")) as running:
        yield running


@contextmanager
def chromium(*flags: str, capabilities: dict | None = None) -> Iterator:
    """Headless Chromium under Selenium with CHROMIUM_FLAGS and `flags`, quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="dirconv-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with chromium() as driver:
        yield driver


@pytest.fixture
def screenshot(browser):
    """Save the page as test-artifacts/<name>.png (kept by CI as a test artifact)."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        browser.save_screenshot(str(path))
        return path

    return take
