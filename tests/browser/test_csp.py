"""The dashboard works under its Content-Security-Policy: Chromium reports no violation on any
view while it renders a finished run, the runs list, compare and the forms."""

from __future__ import annotations

import httpx
from selenium.webdriver.common.by import By

from tests.browser.test_dashboard import _finished
from tests.waiting import wait_for

RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}`);
});
"""
VIEWS = ("#/", "#/runs/{id}", "#/compare?ids={id}", "#/new", "#/new-sweep")


def test_no_view_breaks_the_content_security_policy(api, browser) -> None:  # noqa: ANN001
    run = httpx.post(f"{api.url}/experiments", json={"steps": 2000}).json()["id"]
    wait_for(lambda: _finished(api, run), "the run to finish")
    # Scripts injected over the DevTools protocol run before the page's and outside its CSP.
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_VIOLATIONS})
    for view in VIEWS:
        browser.get(f"{api.url}/{view.format(id=run)}")
        browser.refresh()  # a new document, so the recorder is in place from its start
        wait_for(
            lambda: browser.find_elements(By.CSS_SELECTOR, "main#app > :not(p.muted)"),
            f"the {view} view to render",
        )
        if view == "#/":
            wait_for(
                lambda: browser.find_elements(By.CSS_SELECTOR, f'#runs tr[data-id="{run}"]'),
                "the run's row with its progress bar",
            )
        if view.startswith("#/runs"):
            wait_for(
                lambda: browser.find_elements(By.CSS_SELECTOR, "#chart-directional_error canvas"),
                "the run's chart",
            )
        assert browser.execute_script("return window.__violations") == [], view
