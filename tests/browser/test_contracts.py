"""Dashboard features that use the sweeps and theory endpoints of issue #3."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

from tests.browser.test_dashboard import POINTS_SCRIPT, _status, _wait
from tests.waiting import wait_for

SERIES_SCRIPT = "const c = window.dirconv.charts[arguments[0]]; return c ? c.series.length : 0;"


@pytest.fixture(scope="module")
def finished_run(api) -> int:
    experiment_id = httpx.post(f"{api.url}/experiments", json={"steps": 4000}).json()["id"]
    url = f"{api.url}/experiments/{experiment_id}"
    wait_for(lambda: httpx.get(url).json()["status"] == "succeeded", "the run to succeed")
    return experiment_id


def _fill(browser, element_id: str, text: str) -> None:
    element = browser.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(text)


def test_sweep_form_then_compare_by_grid_values_with_theory(api, browser, screenshot):
    browser.get(f"{api.url}/#/new-sweep")
    _wait(browser, lambda: browser.find_elements(By.ID, "sweep-grid"), "the sweep form")
    assert browser.find_element(By.CSS_SELECTOR, '[data-nav="new-sweep"]').is_displayed()
    _fill(browser, "sweep-grid", "depth = 0, 2")
    browser.find_element(By.ID, "submit-sweep").click()
    grid_error = '[data-field="grid"] .error'
    _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, grid_error).text, "the grid error")
    assert "greater than or equal to 1" in browser.find_element(By.CSS_SELECTOR, grid_error).text
    screenshot("new-sweep-form-errors")
    _fill(browser, "sweep-grid", "depth = 1, 2, 3, 4")
    _fill(browser, "sweep-name", "depths")
    _fill(browser, "base-steps", "4000")
    browser.find_element(By.ID, "submit-sweep").click()
    _wait(browser, lambda: "#/compare?sweep=" in browser.current_url, "the sweep's compare page")
    # Four measured lines and four dashed theory lines, after the x series.
    _wait(browser, lambda: browser.execute_script(SERIES_SCRIPT, "compare") == 9, "9 series")
    _wait(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, '[data-status="succeeded"]')) == 4,
        "4 succeeded members",
    )
    legend = browser.find_element(By.CSS_SELECTOR, "#chart-compare .u-legend").text
    assert "depth=1" in legend and "depth=4 · flow" in legend
    points = browser.execute_script(POINTS_SCRIPT, "compare")
    assert min(points) > 1000
    screenshot("compare-sweep")


def test_run_page_draws_the_theory_curve_dashed(api, finished_run, browser, screenshot):
    browser.get(f"{api.url}/#/runs/{finished_run}")
    _wait(browser, lambda: _status(browser) == "succeeded", "status succeeded")
    _wait(
        browser,
        lambda: browser.execute_script(SERIES_SCRIPT, "directional_error") == 3,
        "the measured and theory series",
    )
    dash = browser.execute_script("return window.dirconv.charts.directional_error.series[2].dash")
    assert dash == [6, 5]
    screenshot("run-page-theory")


def test_dragging_across_a_chart_rereads_that_range(api, finished_run, browser):
    browser.get(f"{api.url}/#/runs/{finished_run}")
    _wait(
        browser,
        lambda: browser.execute_script(SERIES_SCRIPT, "directional_error") == 3,
        "the measured and theory series",
    )
    plot = browser.find_element(By.CSS_SELECTOR, "#chart-directional_error .u-over")
    ActionChains(browser).move_to_element_with_offset(
        plot, -200, 0
    ).click_and_hold().move_by_offset(150, 0).release().perform()
    reset = browser.find_element(By.ID, "reset-zoom")
    _wait(browser, reset.is_displayed, "the reset-zoom button")
    x_range = (
        "const x = window.dirconv.charts.directional_error.data[0]; return [x[0], x[x.length - 1]];"
    )
    _wait(browser, lambda: browser.execute_script(x_range)[0] > 0, "the zoomed range")
    first, last = browser.execute_script(x_range)
    assert 0 < first < last < 4000
    assert browser.execute_script(SERIES_SCRIPT, "directional_error") == 3  # theory clipped
    reset.click()
    _wait(
        browser,
        lambda: browser.execute_script(SERIES_SCRIPT, "directional_error") == 3,
        "the measured and theory series",
    )
