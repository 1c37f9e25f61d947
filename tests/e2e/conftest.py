"""The `stack` fixture: processes on the test's database, stopped (and their logs shown on
failure) at the end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import Stack, stopped_at_end


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Iterator[Stack]:
    with stopped_at_end(Stack(tmp_path, database_url)) as running:
        yield running
