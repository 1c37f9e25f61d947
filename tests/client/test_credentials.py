"""Tokens kept by `dirconv login`: a private file in the user's config folder, one per API."""

from __future__ import annotations

import stat

from dirconv.credentials import credentials_path, forget_token, store_token, stored_token


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_file_is_0600_in_a_0700_folder_under_xdg_config_home(private_config):
    path = store_token("http://lab:8000/", "secret-1")
    assert path == credentials_path() == private_config / "dirconv" / "credentials.json"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    assert stored_token("http://lab:8000") == "secret-1"


def test_a_world_readable_file_becomes_private_when_rewritten(private_config):
    path = store_token("http://a:1", "old")
    path.chmod(0o644)
    store_token("http://a:1", "new")
    assert _mode(path) == 0o600 and stored_token("http://a:1") == "new"


def test_tokens_are_kept_per_address_and_forgotten_one_at_a_time(private_config):
    store_token("http://a:1", "token-a")
    store_token("http://b:2", "token-b")
    assert stored_token("http://c:3") is None
    assert forget_token("http://a:1") and not forget_token("http://a:1")
    assert stored_token("http://a:1") is None and stored_token("http://b:2") == "token-b"


def test_an_unreadable_file_means_no_token(private_config):
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("not json")
    assert stored_token("http://a:1") is None
