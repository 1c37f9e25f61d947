"""`dirconv.Client` against a real API process that asks for tokens (DIRCONV_AUTH=tokens)."""

from __future__ import annotations

import logging

import pytest

from dirconv import ApiError, Client


def test_token_is_sent_as_bearer_and_me_names_its_user(secured_api):
    with Client(secured_api.url, token=secured_api.member) as client:
        assert client.me() == {"user": "alice", "role": "member"}


def test_token_comes_from_dirconv_token_when_not_given(secured_api, monkeypatch):
    monkeypatch.setenv("DIRCONV_TOKEN", secured_api.reader)
    with Client(secured_api.url) as client:
        assert client.me() == {"user": "rita", "role": "reader"}


def test_no_token_raises_api_error_with_status_401(secured_api):
    with Client(secured_api.url) as client, pytest.raises(ApiError) as raised:
        client.list()
    assert raised.value.status == 401 == raised.value.status_code


def test_reader_cannot_submit_403(secured_api):
    with Client(secured_api.url, token=secured_api.reader) as client:
        with pytest.raises(ApiError) as raised:
            client.submit(steps=10)
        assert raised.value.status == 403
        assert client.list(owner="rita")["count"] == 0


def test_member_submits_then_cancels_its_run_without_a_body(secured_api):
    """Cancel is a POST without a body: the client still says it is JSON (else 415)."""
    with Client(secured_api.url, token=secured_api.member) as client:
        run = client.submit(steps=10, name="client-owned")
        assert run["owner"] == "alice"
        assert client.cancel(run["id"])["id"] == run["id"]
        assert client.get(run["id"])["status"] == "canceled"
        assert run["id"] in [mine["id"] for mine in client.list(owner="alice")["data"]]


def test_member_cannot_cancel_another_users_run(secured_api):
    with Client(secured_api.url, token=secured_api.other_member) as bob:
        run = bob.submit(steps=10, name="bobs")
    with Client(secured_api.url, token=secured_api.member) as alice:
        with pytest.raises(ApiError) as raised:
            alice.cancel(run["id"])
        assert raised.value.status == 403
        assert alice.get(run["id"])["status"] == "queued"


def test_quota_429_carries_retry_after(secured_api):
    with Client(secured_api.url, token=secured_api.crowded) as client:
        client.submit(steps=10, name="fills-the-quota")
        with pytest.raises(ApiError) as raised:
            client.submit(steps=10, name="one-too-many")
    assert raised.value.status == 429
    assert raised.value.retry_after is not None and raised.value.retry_after >= 0


def test_token_is_never_in_reprs_or_logs(secured_api, caplog):
    caplog.set_level(logging.DEBUG)
    with Client(secured_api.url, token=secured_api.member) as client:
        client.me()
        shown = [repr(client), str(client.__dict__), repr(client._http.auth)]
    with Client(secured_api.url, token="not-a-token") as client, pytest.raises(ApiError) as err:
        client.me()
    shown += [str(err.value), repr(err.value)]
    assert caplog.records, "httpx and httpcore log at DEBUG: the check must see their lines"
    for text in [*shown, caplog.text]:
        assert secured_api.member not in text and "not-a-token" not in text


def test_admin_makes_and_revokes_a_token_over_http(secured_api):
    with Client(secured_api.url, token=secured_api.admin) as admin:
        created = admin.create_token("dora", "reader", expires_days=1)
        assert created["user"] == "dora" and created["token"]
        listed = admin.tokens()["data"]
        assert created["id"] in [token["id"] for token in listed]
        assert all("token" not in token for token in listed)
        with Client(secured_api.url, token=created["token"]) as dora:
            assert dora.me() == {"user": "dora", "role": "reader"}
            assert admin.revoke_token(created["id"]) is None
            with pytest.raises(ApiError) as raised:
                dora.me()
        assert raised.value.status == 401
