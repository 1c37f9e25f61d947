"""One real API process and one worker, shared by the client and CLI tests of a module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, api_and_worker
from tests.tokens import api_with_tokens, create_token


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_and_worker(tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest.fixture(autouse=True)
def private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own config folder and no DIRCONV_TOKEN: no token of the person
    running the tests is read, and `dirconv login` writes nowhere real."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DIRCONV_TOKEN", raising=False)
    return tmp_path / "config"


@dataclass(frozen=True)
class SecuredApi:
    """An API with DIRCONV_AUTH=tokens and one token a role (two members)."""

    stack: Stack
    admin: str
    member: str
    other_member: str
    reader: str
    crowded: str
    """A member whose quota of active runs (one) the tests fill."""

    @property
    def url(self) -> str:
        return self.stack.url


@pytest.fixture(scope="module")
def secured_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredApi]:
    folder = tmp_path_factory.mktemp("secured")
    with api_with_tokens(folder, DIRCONV_MAX_ACTIVE_RUNS="1") as stack:
        yield SecuredApi(
            stack=stack,
            admin=create_token(stack, "root", "admin"),
            member=create_token(stack, "alice", "member"),
            other_member=create_token(stack, "bob", "member"),
            reader=create_token(stack, "rita", "reader"),
            crowded=create_token(stack, "carol", "member"),
        )
