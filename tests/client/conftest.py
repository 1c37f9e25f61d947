"""One real API process and one worker, shared by the client and CLI tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_processes import Stack


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("stack"))
    try:
        running.start_api()
        running.start("worker")
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop_all()
