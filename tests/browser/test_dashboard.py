"""The dashboard in headless Chromium against real API and worker processes."""

from __future__ import annotations

import httpx
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.browser.conftest import ARTIFACTS
from tests.waiting import wait_for

MAX_POINTS = 2000  # what the dashboard asks the API for (lib.js)

# How many canvas pixels of a chart are not background: proof that lines were drawn.
INK_SCRIPT = """
const canvas = document.querySelector(arguments[0] + ' canvas');
if (!canvas) return 0;
const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let ink = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) ink++;
return ink;
"""
POINTS_SCRIPT = """
const chart = window.dirconv.charts[arguments[0]];
if (!chart) return -1;
return chart.data.slice(1).map(s => s.filter(v => v !== null && v !== undefined).length);
"""


def _wait(browser, predicate, what: str, timeout: float = 60):
    """`wait_for` on the page; on a timeout, a screenshot and the page's text."""

    def looked() -> object:
        try:
            return predicate()
        except StaleElementReferenceException:  # the page re-rendered under us: look again
            return False

    try:
        return wait_for(looked, what, timeout, interval=0.2)
    except AssertionError as failure:
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "failure.png"))
        raise AssertionError(f"{failure} on {browser.current_url}: {_page_text(browser)}") from None


def _page_text(browser) -> str:
    return browser.find_element(By.TAG_NAME, "main").text[:2000]


def _status(browser) -> str | None:
    badges = browser.find_elements(By.CSS_SELECTOR, "h1 .badge")
    return badges[0].get_attribute("data-status") if badges else None


def _finished(api, experiment_id: int) -> bool:
    run = httpx.get(f"{api.url}/experiments/{experiment_id}").json()
    return run["status"] == "succeeded"


def test_new_run_form_shows_errors_next_to_fields(api, browser, screenshot):
    browser.get(f"{api.url}/#/new")
    _wait(browser, lambda: browser.find_elements(By.ID, "spec-depth"), "the spec form")
    browser.find_element(By.ID, "spec-depth").send_keys("0")
    browser.find_element(By.ID, "spec-lr").send_keys("-1")
    browser.find_element(By.ID, "submit-run").click()
    depth_error = browser.find_element(By.ID, "spec-depth-error")
    _wait(browser, lambda: depth_error.text, "the depth field's error")
    assert "greater than or equal to 1" in depth_error.text
    assert "greater than 0" in browser.find_element(By.ID, "spec-lr-error").text
    assert "/new" in browser.current_url
    screenshot("new-run-form-errors")


def test_run_from_the_form_goes_live_to_succeeded_and_draws(api, browser, screenshot):
    browser.get(f"{api.url}/#/new")
    _wait(browser, lambda: browser.find_elements(By.ID, "preset-paper"), "the paper preset")
    browser.find_element(By.ID, "preset-paper").click()
    browser.find_element(By.ID, "spec-steps").send_keys("8000")
    browser.find_element(By.ID, "submit-run").click()
    _wait(browser, lambda: "#/runs/" in browser.current_url, "the run page")
    _wait(browser, lambda: _status(browser) in ("queued", "running", "succeeded"), "a status")
    _wait(browser, lambda: _status(browser) == "succeeded", "status succeeded")
    _wait(
        browser,
        lambda: (
            (pts := browser.execute_script(POINTS_SCRIPT, "directional_error")) != -1
            and 1000 < pts[0] <= MAX_POINTS  # downsampled to at most max_points
        ),
        "the downsampled directional_error chart",
    )
    for name in ("directional_error", "loss", "norm"):
        assert browser.execute_script(INK_SCRIPT, f"#chart-{name}") > 500, name
    definitions = httpx.get(f"{api.url}/metrics/definitions").json()["data"]
    charted = [
        chart.get_attribute("id") for chart in browser.find_elements(By.CSS_SELECTOR, ".chart")
    ]
    assert charted == [f"chart-{d['name']}" for d in definitions if "sgd" in d["optimizers"]]
    summary = browser.find_element(By.ID, "summary-table").text
    assert "final_directional_error" in summary
    assert "depth 4" in browser.find_element(By.ID, "spec").text
    screenshot("run-page")
    linear_points = browser.execute_script(POINTS_SCRIPT, "directional_error")[0]
    Select(browser.find_element(By.ID, "x-axis")).select_by_value("logstep")
    _wait(  # re-read with log-spaced buckets, and step 0 dropped from a log axis
        browser,
        lambda: 0 < browser.execute_script(POINTS_SCRIPT, "directional_error")[0] != linear_points,
        "the chart re-read on a log axis",
    )
    screenshot("run-page-log-x")


def test_runs_list_and_compare_page(api, browser, screenshot):
    ids = [
        httpx.post(f"{api.url}/experiments", json={"depth": d, "steps": 3000}).json()["id"]
        for d in (1, 2)
    ]
    wait_for(lambda: all(_finished(api, i) for i in ids), "both runs to finish")
    browser.get(f"{api.url}/#/")
    _wait(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-id]")) >= 3,
        "3 rows in the runs list",
    )
    for experiment_id in ids:
        row = browser.find_element(By.CSS_SELECTOR, f'#runs tr[data-id="{experiment_id}"]')
        row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    screenshot("runs-list")
    browser.find_element(By.ID, "compare-selected").click()
    _wait(browser, lambda: "#/compare" in browser.current_url, "the compare page")
    _wait(
        browser,
        lambda: browser.execute_script(POINTS_SCRIPT, "compare") not in (-1, None),
        "the compare chart",
    )
    points = browser.execute_script(POINTS_SCRIPT, "compare")
    assert points == [MAX_POINTS] * 4  # two runs, each with its dashed theory curve
    assert browser.execute_script(INK_SCRIPT, "#chart-compare") > 500
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")) == 2
    screenshot("compare")


def test_cancel_button_stops_a_running_run(api, browser):
    # Slow steps (32-d points): a fast machine must not finish the run before the click.
    spec = {"steps": 1_000_000, "dim": 32}
    experiment_id = httpx.post(f"{api.url}/experiments", json=spec).json()["id"]
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    _wait(browser, lambda: _status(browser) == "running", "status running")
    _wait(browser, lambda: _click(browser, "cancel"), "the cancel button to take a click")
    _wait(browser, lambda: _status(browser) == "canceled", "status canceled")


def _click(browser, element_id: str) -> bool:
    """Click the element once it is there (False until then); a re-render between finding
    and clicking it (the run page follows the run's events) raises
    StaleElementReferenceException before any click, and `_wait` looks again."""
    found = browser.find_elements(By.ID, element_id)
    if not found:
        return False
    found[0].click()
    return True


MODULES = ["app", "lib", "charts", "events", "runs", "run", "compare", "sweeps", "forms"]


@pytest.mark.parametrize(
    "path", ["/", "/ui/vendor/uPlot.iife.min.js", *(f"/ui/{name}.js" for name in MODULES)]
)
def test_dashboard_files_are_served(api, path):
    assert httpx.get(f"{api.url}{path}").status_code == 200
