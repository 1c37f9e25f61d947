"""The suite's one way to wait: poll a predicate until it holds, or fail naming what it waited
for. Tests wait for the event they need (a claim, a status), never for a span of time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.05


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float = TIMEOUT_SECONDS,
    interval: float = POLL_SECONDS,
) -> T:
    """Return the first truthy value of `predicate()`; raise AssertionError naming `what` (and
    the last value seen) once `timeout` seconds have passed without one."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what} (last: {value!r})"
            )
        time.sleep(interval)
