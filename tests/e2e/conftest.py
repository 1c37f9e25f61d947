"""The `stack` fixture: processes on the test's database, stopped (and their logs shown on
failure) at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    running = Stack(tmp_path, database_url)
    try:
        yield running
    except BaseException:
        print(running.logs())
        raise
    finally:
        running.stop_all()
