"""One real API process and one worker, shared by the client and CLI tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack, api_and_worker


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with api_and_worker(tmp_path_factory.mktemp("stack")) as running:
        yield running
