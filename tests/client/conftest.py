"""One real API process and one worker, shared by the client and CLI tests of a module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.stack import Stack


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("stack")
    running = Stack(folder, f"sqlite:///{folder / 'dirconv.db'}")
    try:
        running.start_api()
        running.start("worker")
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop_all()
