"""A run's status. The moves between statuses, and the code that makes them, are in
core/lifecycle.py; this module stands apart so that the ORM models can use the enum."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Stored and answered as its value, a plain string."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})
"""A run in one of these never moves again."""
