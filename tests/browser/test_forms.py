"""The new-run and new-sweep forms offer what this server takes, and a grid error names the
line it comes from."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.test_dashboard import _wait

GRID_ERROR = '[data-field="grid"] .error'


def _fill(browser, element_id: str, text: str) -> None:
    element = browser.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(text)


def _sweep_count(api) -> int:
    return httpx.get(f"{api.url}/sweeps").json()["count"]


def test_new_run_form_offers_the_servers_choices_without_version_hints(api, browser):
    browser.get(f"{api.url}/#/new")
    _wait(browser, lambda: browser.find_elements(By.ID, "spec-optimizer"), "the spec form")
    schema = httpx.get(f"{api.url}/openapi.json").json()
    served = schema["components"]["schemas"]["ExperimentSpec"]["properties"]
    for field in ("optimizer", "init", "loss", "device", "dtype", "distribution"):
        select = browser.find_element(By.ID, f"spec-{field}")
        offered = [option.get_attribute("value") for option in Select(select).options][1:]
        assert offered == served[field]["enum"], field
        assert select.get_attribute("title") == served[field]["description"]
    form = browser.find_element(By.ID, "spec-form").text
    assert "newer API" not in form and "not on this server" not in form
    assert not browser.find_elements(By.CSS_SELECTOR, "#spec-form :disabled")


def test_sweep_grid_errors_name_their_line(api, browser, screenshot):
    before = _sweep_count(api)
    browser.get(f"{api.url}/#/new-sweep")
    _wait(browser, lambda: browser.find_elements(By.ID, "sweep-grid"), "the sweep form")
    _fill(browser, "sweep-grid", "depth = 1, 2\nlr = 0.01, -1")
    browser.find_element(By.ID, "submit-sweep").click()
    error = _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, GRID_ERROR).text, "error")
    assert "line 2 (lr): " in error and "greater than 0" in error
    screenshot("new-sweep-grid-line-error")
    _fill(browser, "sweep-grid", "depth = 1, 2\n\nlr 0.01")
    browser.find_element(By.ID, "submit-sweep").click()
    error = _wait(
        browser,
        lambda: (
            "line 3" in (text := browser.find_element(By.CSS_SELECTOR, GRID_ERROR).text) and text
        ),
        "the unparsable line's error",
    )
    assert 'expected "field = value, value, …", got "lr 0.01"' in error
    assert _sweep_count(api) == before
