"""The dashboard's sign-in against a real API process that asks for tokens: a 401 brings up
the token form, the token lives in sessionStorage only, the header names who is signed in,
sign-out forgets it, and actions the role cannot take are not shown."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.browser.test_dashboard import _status, _wait
from tests.e2e.stack import Stack
from tests.tokens import api_with_tokens, bearer, create_token

TOKEN_KEY = "dirconv.token"
CREATE_BUTTONS = ["#submit-run", "#preset-paper", '[data-nav="new"]', 'h1 a[href="#/new"]']


@dataclass(frozen=True)
class SecuredDashboard:
    stack: Stack
    tokens: dict[str, str]
    runs: dict[str, int]
    """One queued run a member (no worker: it stays queued, with its Cancel button)."""

    @property
    def url(self) -> str:
        return self.stack.url


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredDashboard]:
    with api_with_tokens(tmp_path_factory.mktemp("secured-dashboard")) as stack:
        roles = {"alice": "member", "bob": "member", "rita": "reader", "root": "admin"}
        tokens = {user: create_token(stack, user, role) for user, role in roles.items()}
        runs = {user: _submit(stack.url, tokens[user]) for user in ("alice", "bob")}
        yield SecuredDashboard(stack, tokens, runs)


def _submit(url: str, token: str) -> int:
    created = httpx.post(f"{url}/experiments", json={"steps": 100}, headers=bearer(token))
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _signed_out(browser, url: str):
    """The page opened afresh with no token: it asks for one."""
    browser.get(f"{url}/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    return _wait(browser, lambda: _shown(browser, "#signin-token"), "the token form")


def _sign_in(browser, url: str, token: str) -> None:
    field = _signed_out(browser, url)
    field.send_keys(token)
    browser.find_element(By.ID, "signin-submit").click()
    _wait(browser, lambda: not browser.find_elements(By.ID, "signin"), "the form to go")


def _shown(browser, selector: str):
    nodes = browser.find_elements(By.CSS_SELECTOR, selector)
    return next((node for node in nodes if node.is_displayed()), None)


def _who(browser) -> str:
    """The header's 'Signed in as' line, read inside the wait: the page may render the header
    again between finding the line and reading it (it did on a busy CI machine)."""

    def text() -> str | None:
        shown = _shown(browser, "#whoami")
        return " ".join(shown.text.split()) if shown else None

    return _wait(browser, text, "who is signed in")


def test_401_asks_for_a_token_then_names_the_user_until_sign_out(secured, browser, screenshot):
    field = _signed_out(browser, secured.url)
    assert not _shown(browser, "#runs tbody tr[data-id]")
    screenshot("sign-in-form")
    field.send_keys("not-a-token")
    browser.find_element(By.ID, "signin-submit").click()
    error = browser.find_element(By.ID, "signin-error")
    _wait(browser, lambda: error.text, "the refusal")
    assert "not accepted" in error.text
    field.clear()
    field.send_keys(secured.tokens["alice"])
    browser.find_element(By.ID, "signin-submit").click()
    assert _who(browser).startswith("Signed in as alice")
    _wait(browser, lambda: _shown(browser, "#runs tbody tr[data-id]"), "the runs the API sent")
    screenshot("signed-in")
    stored = "return [sessionStorage.getItem(arguments[0]), localStorage.length, document.cookie]"
    assert browser.execute_script(stored, TOKEN_KEY) == [secured.tokens["alice"], 0, ""]
    browser.find_element(By.ID, "sign-out").click()
    _wait(browser, lambda: _shown(browser, "#signin-token"), "the token form again")
    assert browser.execute_script(stored, TOKEN_KEY) == [None, 0, ""]


def test_reader_sees_no_submit_or_cancel_buttons(secured, browser, screenshot):
    _sign_in(browser, secured.url, secured.tokens["rita"])
    assert "rita" in _who(browser) and "reader" in _who(browser)
    _wait(browser, lambda: _shown(browser, "#runs tbody tr[data-id]"), "the runs list")
    assert [selector for selector in CREATE_BUTTONS if _shown(browser, selector)] == []
    browser.get(f"{secured.url}/#/new")
    _wait(browser, lambda: browser.find_elements(By.ID, "spec-depth"), "the spec form")
    assert [selector for selector in CREATE_BUTTONS if _shown(browser, selector)] == []
    browser.get(f"{secured.url}/#/runs/{secured.runs['alice']}")
    _wait(browser, lambda: _status(browser) == "queued", "the queued run")
    assert browser.find_elements(By.ID, "cancel") and not _shown(browser, "#cancel")
    screenshot("reader-run-page")


def test_member_may_cancel_its_own_run_only(secured, browser):
    _sign_in(browser, secured.url, secured.tokens["bob"])
    assert "bob" in _who(browser)
    browser.get(f"{secured.url}/#/runs/{secured.runs['alice']}")
    _wait(browser, lambda: _status(browser) == "queued", "alice's queued run")
    assert browser.find_elements(By.ID, "cancel") and not _shown(browser, "#cancel")
    browser.get(f"{secured.url}/#/runs/{secured.runs['bob']}")
    _wait(browser, lambda: _status(browser) == "queued", "bob's queued run")
    _wait(browser, lambda: _shown(browser, "#cancel"), "bob's cancel button").click()
    _wait(browser, lambda: _status(browser) == "canceled", "bob's run canceled")
    browser.get(f"{secured.url}/#/new")
    _wait(browser, lambda: _shown(browser, "#submit-run"), "the submit button a member may use")


def test_a_token_revoked_meanwhile_brings_the_form_back(secured, browser):
    admin = bearer(secured.tokens["root"])
    admin["Content-Type"] = "application/json"  # DELETE too, body or not (else 415)
    body = {"user": "eve", "role": "reader"}
    made = httpx.post(f"{secured.url}/tokens", json=body, headers=admin)
    _sign_in(browser, secured.url, made.json()["token"])
    _wait(browser, lambda: _shown(browser, "#runs tbody tr[data-id]"), "the runs list")
    revoked = httpx.delete(f"{secured.url}/tokens/{made.json()['id']}", headers=admin)
    assert revoked.status_code == 204
    _wait(browser, lambda: _shown(browser, "#signin-token"), "the form after the list's next poll")
    assert browser.execute_script("return sessionStorage.getItem(arguments[0])", TOKEN_KEY) is None
