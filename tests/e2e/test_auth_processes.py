"""Tokens over real processes, on both databases: the command line makes the first admin, the
API (a real uvicorn) takes it, tokens made over HTTP show in the command line's list, a
revoke from the command line locks the API out at once, and no secret reaches a log."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.stack import Stack
from tests.tokens import bearer, tokens_cli


@pytest.mark.slow
def test_token_lifecycle_over_the_command_line_and_http(stack: Stack) -> None:
    stack.env["DIRCONV_AUTH"] = "tokens"
    created = tokens_cli(stack, "create", "--user", "root", "--role", "admin")
    assert created.returncode == 0, created.stderr
    admin = created.stdout.strip().splitlines()[-1]
    assert admin.startswith("dirconv_") and " " not in admin
    stack.start_api()

    assert httpx.get(f"{stack.url}/experiments").status_code == 401
    assert httpx.get(f"{stack.url}/me", headers=bearer(admin)).json() == {
        "user": "root",
        "role": "admin",
    }
    member = httpx.post(
        f"{stack.url}/tokens", json={"user": "bob", "role": "member"}, headers=bearer(admin)
    ).json()
    run = httpx.post(
        f"{stack.url}/experiments", json={"steps": 10}, headers=bearer(member["token"])
    )
    assert run.json()["owner"] == "bob"

    listed = tokens_cli(stack, "list")
    assert listed.returncode == 0
    assert "root" in listed.stdout and "bob" in listed.stdout
    assert admin not in listed.stdout and member["token"] not in listed.stdout

    revoked = tokens_cli(stack, "revoke", "--user", "bob")
    assert revoked.returncode == 0, revoked.stderr
    answer = httpx.get(f"{stack.url}/me", headers=bearer(member["token"]))
    assert answer.status_code == 401 and answer.json()["detail"] == "token revoked"
    assert tokens_cli(stack, "revoke", str(member["id"])).returncode == 1  # already revoked

    for secret in (admin, member["token"]):
        assert secret not in stack.logs()


@pytest.mark.slow
def test_a_network_address_needs_tokens_unless_auth_is_set(stack: Stack) -> None:
    stack.start_api(host="0.0.0.0")
    answer = httpx.get(f"{stack.url}/experiments")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
