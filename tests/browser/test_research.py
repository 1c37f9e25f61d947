"""The research workflow in the dashboard (issue 13): the sweeps page, grouped compare with
bands and theory, the continuous-time axis, and a run's lifecycle (edit, archive, restore)."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select

from tests.browser.test_dashboard import POINTS_SCRIPT, _click, _status, _wait
from tests.waiting import wait_for

DEPTHS = (1, 2, 3, 4)
SEEDS = (0, 1, 2, 3)
STEPS = 6000
LR = 0.002

SERIES_LABELS = """
const c = window.dirconv.charts[arguments[0]];
return c ? c.series.slice(1).map(s => s.label) : [];
"""
SERIES_COLOURS = "return window.dirconv.charts[arguments[0]].series.slice(1).map(s => s.stroke());"
BANDS = "const c = window.dirconv.charts[arguments[0]]; return c ? c.bands.length : -1;"
# The last x value with a y value, for each series: where each line ends on the x axis.
VIOLATIONS = "return window.dirconv.violations;"
SLIDE = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));"
LAST_X = """
const c = window.dirconv.charts[arguments[0]];
return c.data.slice(1).map(ys => {
  for (let i = ys.length - 1; i >= 0; i--) {
    if (ys[i] !== null && ys[i] !== undefined) return c.data[0][i];
  }
  return null;
});
"""


def _post(api, path: str, body: dict) -> dict:
    response = httpx.post(f"{api.url}{path}", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _run(api, experiment_id: int) -> dict:
    return httpx.get(f"{api.url}/experiments/{experiment_id}").json()


def _all_succeeded(api, ids: list[int]) -> bool:
    return all(_run(api, i)["status"] == "succeeded" for i in ids)


@pytest.fixture(scope="module")
def sweep(api) -> dict:
    """A finished 4 x 4 depth x seed sweep."""
    body = {
        "name": "depth x seed",
        "base": {"steps": STEPS, "lr": LR, "log_every": 5},
        "grid": {"depth": list(DEPTHS), "seed": list(SEEDS)},
    }
    created = _post(api, "/sweeps", body)
    wait_for(lambda: _all_succeeded(api, created["experiment_ids"]), "the sweep to finish")
    return created


def test_sweeps_page_shows_counts_grid_and_links(api, sweep, browser, screenshot):
    browser.get(f"{api.url}/#/sweeps")
    row = f'#sweeps tr[data-sweep="{sweep["id"]}"]'
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, row), "the sweep's row")
    counts = browser.find_element(By.CSS_SELECTOR, f"{row} .counts [data-status=succeeded]")
    assert counts.get_attribute("data-count") == "16"
    grid = browser.find_element(By.CSS_SELECTOR, f"{row} .grid").text
    assert "depth 1, 2, 3, 4" in grid and "seed 0, 1, 2, 3" in grid
    screenshot("sweeps-page")
    browser.find_element(By.CSS_SELECTOR, f"{row} a.members").click()
    rows = "#runs tbody tr[data-id]"
    shown = lambda: {  # noqa: E731
        int(r.get_attribute("data-id")) for r in browser.find_elements(By.CSS_SELECTOR, rows)
    }
    _wait(
        browser,
        lambda: shown() == set(sweep["experiment_ids"]),
        "the sweep's 16 members in the runs list",
    )


def test_grouped_compare_draws_a_band_and_theory_per_depth(api, sweep, browser, screenshot):
    browser.get(f"{api.url}/#/sweeps")
    link = f'#sweeps tr[data-sweep="{sweep["id"]}"] a.compare'
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, link), "the compare link")
    browser.find_element(By.CSS_SELECTOR, link).click()
    _wait(browser, lambda: browser.execute_script(BANDS, "compare") == 4, "four bands")
    labels = browser.execute_script(SERIES_LABELS, "compare")
    # Each group: its median, the band's q90 and q10 edges, and its flow theory.
    for depth in DEPTHS:
        assert f"depth={depth}" in labels and f"depth={depth} · flow" in labels
    assert len(labels) == 16
    colours = browser.execute_script(SERIES_COLOURS, "compare")
    medians = [colours[labels.index(f"depth={d}")] for d in DEPTHS]
    assert len(set(medians)) == 4
    keys = browser.find_elements(By.CSS_SELECTOR, "#compare-legend .group-key")
    assert [k.get_attribute("data-group") for k in keys] == [f"depth={d}" for d in DEPTHS]
    table = browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
    assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in table] == ["1", "2", "3", "4"]
    # The link groups by depth on the continuous-time axis: the data end at t = lr x steps,
    # and no theory curve runs past the data.
    axis = Select(browser.find_element(By.ID, "x-axis")).first_selected_option
    assert axis.get_attribute("value") == "time"
    ends = browser.execute_script(LAST_X, "compare")
    assert max(ends) == pytest.approx(LR * STEPS)
    assert "1e-9" in browser.find_element(By.ID, "compare-note").text
    screenshot("sweep-bands-time")
    Select(browser.find_element(By.ID, "band")).select_by_value("minmax")
    _wait(
        browser,
        lambda: "depth=1 max" in browser.execute_script(SERIES_LABELS, "compare"),
        "min-max bands",
    )
    slider = browser.find_element(By.ID, "smoothing")
    browser.execute_script(SLIDE, slider, 0.8)
    _wait(
        browser,
        lambda: "depth=4 (raw)" in browser.execute_script(SERIES_LABELS, "compare"),
        "the raw lines beside the smoothed ones",
    )
    labels = browser.execute_script(SERIES_LABELS, "compare")
    assert len(labels) == 20 and "smooth=0.8" in browser.current_url
    data = browser.execute_script("return window.dirconv.charts.compare.data;")
    raw, smoothed = data[1 + labels.index("depth=4 (raw)")], data[1 + labels.index("depth=4")]
    assert raw != smoothed and smoothed[0] == pytest.approx(raw[0], rel=1e-12)  # starts equal
    assert browser.execute_script(VIOLATIONS) == []  # the page's strict CSP refused nothing


def test_time_axis_lines_up_runs_with_different_learning_rates(api, browser):
    slow = _post(api, "/experiments", {"lr": 0.001, "steps": 4000})["id"]
    fast = _post(api, "/experiments", {"lr": 0.004, "steps": 1000})["id"]
    wait_for(lambda: _all_succeeded(api, [slow, fast]), "both runs to finish")
    browser.get(f"{api.url}/#/compare?ids={slow},{fast}&x=step")
    _wait(browser, lambda: browser.execute_script(BANDS, "compare") == 0, "the compare chart")
    _wait(browser, lambda: len(browser.execute_script(LAST_X, "compare")) == 4, "4 lines")
    assert browser.execute_script(LAST_X, "compare")[0::2] == [4000, 1000]
    Select(browser.find_element(By.ID, "x-axis")).select_by_value("time")
    _wait(
        browser,
        lambda: browser.execute_script(LAST_X, "compare")[0::2] == [4.0, 4.0],
        "both runs ending at t = 4",
    )
    assert "time" in browser.current_url  # the choice is kept in the page's address


def test_archive_and_restore_from_the_run_page(api, browser, screenshot):
    experiment_id = _post(api, "/experiments", {"steps": 2000, "tags": ["keep"]})["id"]
    wait_for(lambda: _all_succeeded(api, [experiment_id]), "the run to finish")
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    _wait(browser, lambda: browser.find_elements(By.ID, "archive"), "the archive button")
    assert browser.find_elements(By.CSS_SELECTOR, "#steps-to tbody tr")
    browser.find_element(By.ID, "archive").click()
    _wait(browser, lambda: browser.find_elements(By.ID, "archived-badge"), "the archived badge")
    _wait(browser, lambda: browser.find_elements(By.ID, "restore"), "the restore button")
    assert _run(api, experiment_id)["archived"] is True
    browser.get(f"{api.url}/#/")
    row = f'#runs tr[data-id="{experiment_id}"]'
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr"), "the list")
    assert not browser.find_elements(By.CSS_SELECTOR, row)
    browser.find_element(By.ID, "filter-archived").click()
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, f"{row}.archived"), "the row")
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    _wait(browser, lambda: browser.find_elements(By.ID, "restore"), "the restore button")
    browser.find_element(By.ID, "restore").click()
    _wait(browser, lambda: browser.find_elements(By.ID, "archive"), "the archive button again")
    assert _run(api, experiment_id)["archived"] is False
    assert browser.execute_script(VIOLATIONS) == []


def test_rename_tag_and_annotate_a_run(api, browser):
    experiment_id = _post(api, "/experiments", {"steps": 1000})["id"]
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    _wait(browser, lambda: browser.find_elements(By.ID, "run-name"), "the editor")
    for field, text in (("run-name", "renamed"), ("run-tags", "a, b"), ("run-notes", "why")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(text)
    browser.find_element(By.ID, "save-run").click()
    _wait(browser, lambda: browser.find_element(By.ID, "run-saved").text == "saved", "saved")
    run = _run(api, experiment_id)
    assert (run["name"], run["tags"], run["notes"]) == ("renamed", ["a", "b"], "why")
    _wait(browser, lambda: browser.find_element(By.TAG_NAME, "h1").text.startswith("renamed"), "h1")
    browser.find_element(By.ID, "run-name").clear()
    browser.find_element(By.ID, "save-run").click()  # an empty name: the API's 422, by the field
    error = '.field[data-field="name"] .error'
    _wait(browser, lambda: browser.find_element(By.CSS_SELECTOR, error).text, "the name's error")
    assert _run(api, experiment_id)["name"] == "renamed"


READS = """
return performance.getEntriesByType("resource").map(e => new URL(e.name).pathname)
  .filter(path => path.startsWith(arguments[0]));
"""


def test_run_page_follows_the_run_by_server_sent_events(api, browser):
    # Slow steps (32-d points), canceled once seen to grow: a fast machine must not finish
    # the run before the page has followed it; a slow one need not wait for its end.
    spec = {"steps": 1_000_000, "log_every": 20, "dim": 32}
    experiment_id = _post(api, "/experiments", spec)["id"]
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    _wait(browser, lambda: _status(browser) == "running", "status running")
    points = lambda: browser.execute_script(POINTS_SCRIPT, "directional_error")  # noqa: E731
    _wait(browser, lambda: points() != -1, "the chart")
    first = points()[0]
    _wait(
        browser,
        lambda: (now := points()) != -1 and now[0] > first,
        "points appended from the event stream",
    )
    cancel = f"{api.url}/experiments/{experiment_id}/cancel"
    httpx.post(cancel, headers={"Content-Type": "application/json"}).raise_for_status()
    _wait(browser, lambda: _status(browser) == "canceled", "status canceled")
    paths = browser.execute_script(READS, f"/experiments/{experiment_id}")
    assert f"/experiments/{experiment_id}/events" in paths
    # Read once at the start and once after the terminal status: no polling in between.
    assert paths.count(f"/experiments/{experiment_id}") <= 3, paths


def test_download_buttons_save_the_csv_and_parquet_exports(api, browser, tmp_path):
    experiment_id = _post(api, "/experiments", {"steps": 500})["id"]
    wait_for(lambda: _all_succeeded(api, [experiment_id]), "the run to finish")
    browser.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)}
    )
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    for extension in ("csv", "parquet"):
        saved = _download(browser, tmp_path, experiment_id, extension)
        exported = httpx.get(f"{api.url}/experiments/{experiment_id}/metrics.{extension}")
        wait_for(lambda: saved.read_bytes() == exported.content, "the whole file")  # noqa: B023


def _download(browser, folder, experiment_id: int, extension: str):
    """Press the download button of `extension`; the saved file's path once it exists."""
    button = f"download-{extension}"
    _wait(browser, lambda: browser.find_elements(By.ID, button), f"the {button} button")
    browser.find_element(By.ID, button).click()
    saved = folder / f"experiment-{experiment_id}-metrics.{extension}"
    wait_for(saved.exists, f"the {extension} download")
    return saved


THEORY_POINTS = """
const c = window.dirconv.charts[arguments[0]];
const i = c.series.findIndex(s => s.label.startsWith("flow theory"));
return c.data[0].map((x, j) => [x, c.data[i][j]]).filter(([, y]) => y !== null && y !== undefined);
"""


def test_theory_stops_at_the_integrators_floor_and_the_datas_steps(api, browser):
    spec = {"depth": 4, "steps": 40_000, "log_every": 20}
    experiment_id = _post(api, "/experiments", spec)["id"]
    wait_for(lambda: _all_succeeded(api, [experiment_id]), "the run to finish")
    theory = httpx.get(f"{api.url}/experiments/{experiment_id}/theory").json()
    assert min(theory["directional_error"]) < 1e-9  # the flow itself goes below the floor
    browser.get(f"{api.url}/#/runs/{experiment_id}")
    notes = lambda: browser.find_elements(By.ID, "theory-note")  # noqa: E731
    _wait(browser, lambda: any("1e-9" in note.text for note in notes()), "the floor's note")
    drawn = browser.execute_script(THEORY_POINTS, "directional_error")
    assert min(y for _, y in drawn) >= 1e-9
    assert 10_000 < drawn[-1][0] < 40_000  # cut where it crossed the floor, not at the end


def test_runs_found_by_spec_values_and_grouped_by_id(api, sweep, browser):
    ids = sweep["experiment_ids"]
    browser.get(f"{api.url}/#/?sweep_id={sweep['id']}&spec.depth=2&sort=min_directional_error")
    rows = "#runs tbody tr[data-id]"
    _wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, rows)) == 4, "4 rows")
    assert browser.find_element(By.ID, "filter-spec").get_attribute("value") == "depth=2"
    best = [
        r.find_element(By.CSS_SELECTOR, "td.best").text
        for r in browser.find_elements(By.CSS_SELECTOR, rows)
    ]
    assert [float(b) for b in best] == sorted(float(b) for b in best)
    browser.get(f"{api.url}/#/?spec.colour=red")  # not a spec field: the API's 422, shown
    problem = lambda: browser.find_elements(By.CSS_SELECTOR, "#list-error .error-box")  # noqa: E731
    _wait(browser, lambda: problem() and "colour" in problem()[0].text, "the filter's error")
    # Runs picked by id, grouped on the page by a spec field, each group aggregated by the API.
    browser.get(f"{api.url}/#/compare?ids={','.join(map(str, ids))}&by=depth")
    _wait(browser, lambda: browser.execute_script(BANDS, "compare") == 4, "four bands")
    boxes = browser.find_elements(By.CSS_SELECTOR, "#group-by input[data-by]")
    assert {b.get_attribute("value") for b in boxes} == {"depth", "seed", "name"}


def test_rerun_opens_a_new_run_with_the_same_spec(api, browser):
    original = _post(api, "/experiments", {"steps": 700, "depth": 3, "seed": 5})
    browser.get(f"{api.url}/#/runs/{original['id']}")
    _wait(browser, lambda: _click(browser, "rerun"), "the rerun button to take a click")
    page = f"/runs/{original['id']}"
    _wait(browser, lambda: not browser.current_url.endswith(page), "the new run's page")
    copy = _run(api, int(browser.current_url.rsplit("/", 1)[1]))
    assert copy["id"] != original["id"] and copy["spec"] == original["spec"]


def test_sixteen_groups_get_sixteen_colours(api, sweep, browser):
    browser.get(f"{api.url}/#/compare?sweep={sweep['id']}&by=depth,seed&band=minmax")
    _wait(browser, lambda: browser.execute_script(BANDS, "compare") == 16, "sixteen bands")
    labels = browser.execute_script(SERIES_LABELS, "compare")
    colours = browser.execute_script(SERIES_COLOURS, "compare")
    groups = [f"depth={d}, seed={s}" for d in DEPTHS for s in SEEDS]
    assert len({colours[labels.index(group)] for group in groups}) == 16
    keys = browser.find_elements(By.CSS_SELECTOR, "#compare-legend .group-key")
    assert [k.get_attribute("data-group") for k in keys] == groups
