"""What the suite needs from the machine beyond the virtual environment: a PostgreSQL server and
Chromium with its chromedriver. One policy for both:

- Where one is missing, the tests that need it skip (the PostgreSQL half of the database tests,
  the browser tests), and the run ends with one line naming what was skipped and how to enable it.
- DIRCONV_TEST_REQUIRE=postgres,chromium (`.ci/run` sets it) makes each such skip a failure, so
  CI cannot pass by skipping.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import NoReturn

import pytest

REQUIRE_ENV = "DIRCONV_TEST_REQUIRE"


@dataclass(frozen=True)
class Prerequisite:
    name: str
    enable: str
    """How to get it, as the closing line and the skip reasons say."""


PREREQUISITES = {
    "postgres": Prerequisite(
        "PostgreSQL",
        "start PostgreSQL on 127.0.0.1:5432 with a database `test` (`createdb test`), "
        "or point DIRCONV_TEST_POSTGRES_URL at one",
    ),
    "chromium": Prerequisite(
        "Chromium",
        "install Chromium and its chromedriver (`apt-get install chromium chromium-driver`), "
        "or point DIRCONV_TEST_CHROMIUM and DIRCONV_TEST_CHROMEDRIVER at them",
    ),
}
SKIPPED = Counter[str]()
"""Tests skipped this session for want of each prerequisite, by key."""


def _tag(key: str) -> str:
    return f"[needs {key}]"


def required() -> set[str]:
    """The prerequisites that DIRCONV_TEST_REQUIRE names; an unknown name is a usage error."""
    names = {name.strip() for name in os.environ.get(REQUIRE_ENV, "").split(",") if name.strip()}
    unknown = names - PREREQUISITES.keys()
    if unknown:
        known = ", ".join(PREREQUISITES)
        raise pytest.UsageError(f"{REQUIRE_ENV} names {sorted(unknown)}; known: {known}")
    return names


def missing(key: str, why: str) -> NoReturn:
    """Skip the current test for want of prerequisite `key`, or fail it if it is required."""
    prerequisite = PREREQUISITES[key]
    message = f"{prerequisite.name} unavailable ({why}); to run these tests, {prerequisite.enable}"
    if key in required():
        pytest.fail(f"{REQUIRE_ENV} requires {key}, but {message}", pytrace=False)
    pytest.skip(f"{_tag(key)} {message}")


def count_skip(report: pytest.TestReport) -> None:
    """Count `report` if it is a skip that `missing` raised."""
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        for key in PREREQUISITES:
            if _tag(key) in reason:
                SKIPPED[key] += 1


def closing_line() -> str | None:
    """One line on what was skipped for want of what, and how to enable it; None if nothing."""
    if not SKIPPED:
        return None
    parts = [
        f"{count} tests that need {PREREQUISITES[key].name} (to run them, "
        f"{PREREQUISITES[key].enable})"
        for key, count in sorted(SKIPPED.items())
    ]
    return "skipped " + "; ".join(parts)
