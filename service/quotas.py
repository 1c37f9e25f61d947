"""Per-user limits: active runs (DIRCONV_MAX_ACTIVE_RUNS), stored metric points
(DIRCONV_MAX_USER_POINTS), and requests per token (DIRCONV_RATE_LIMIT, DIRCONV_RATE_BURST).
Past any of them the API answers 429 with Retry-After and the limit's name.

The rate is counted in each API process with the `limits` library's moving window: at most
`burst` requests in any window of burst / rate seconds, so a token may send `burst` at once
and `rate` a second on average. With auth off there is one user (owner None): the quotas
count all runs together and no rate applies."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Experiment, MetricChunk
from core.settings import Settings
from core.status import Status

QUOTA_RETRY_SECONDS = 60
"""Retry-After for a quota: runs finish (or are canceled) on the scale of a minute."""
ACTIVE = (Status.QUEUED.value, Status.RUNNING.value)


class OverLimit(Exception):
    """A quota or the rate limit refused the request: 429 with Retry-After (service.main)."""

    def __init__(self, limit: str, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.limit, self.detail, self.retry_after = limit, detail, retry_after


@dataclass
class RateLimiter:
    limiter: MovingWindowRateLimiter
    item: RateLimitItemPerSecond


def make_limiter(settings: Settings) -> RateLimiter:
    window_seconds = settings.rate_burst / settings.rate_limit
    item = RateLimitItemPerSecond(settings.rate_burst, window_seconds)  # type: ignore[arg-type]
    return RateLimiter(MovingWindowRateLimiter(MemoryStorage()), item)


def count_request(rate: RateLimiter, key: str) -> None:
    """Count one request of `key`; OverLimit past the rate."""
    if rate.limiter.hit(rate.item, key):
        return
    reset_at = rate.limiter.get_window_stats(rate.item, key).reset_time
    raise OverLimit(
        "DIRCONV_RATE_LIMIT",
        f"rate limit: over {rate.item.amount} requests in {rate.item.get_expiry():g} s for this "
        "token (DIRCONV_RATE_LIMIT per second, bursts of DIRCONV_RATE_BURST)",
        max(1, math.ceil(reset_at - time.time())),
    )


def _owned(owner: str | None) -> tuple:
    return () if owner is None else (Experiment.owner == owner,)


def check_run_quotas(
    session: Session, owner: str | None, new_runs: int, new_points: int, settings: Settings
) -> None:
    """OverLimit if `owner`'s active runs plus `new_runs`, or its stored points plus the new
    runs' planned `new_points`, would pass DIRCONV_MAX_ACTIVE_RUNS or DIRCONV_MAX_USER_POINTS."""
    whose = "your" if owner is not None else "all"
    active = (
        session.scalar(select(func.count()).where(Experiment.status.in_(ACTIVE), *_owned(owner)))
        or 0
    )
    if active + new_runs > settings.max_active_runs:
        raise OverLimit(
            "DIRCONV_MAX_ACTIVE_RUNS",
            f"{whose} queued and running runs ({active}) plus {new_runs} new would pass "
            f"{settings.max_active_runs} (DIRCONV_MAX_ACTIVE_RUNS); wait for runs to finish",
            QUOTA_RETRY_SECONDS,
        )
    stored = (
        session.scalar(
            select(func.coalesce(func.sum(MetricChunk.n_points), 0))
            .join(Experiment, Experiment.id == MetricChunk.experiment_id)
            .where(*_owned(owner))
        )
        or 0
    )
    if stored + new_points > settings.max_user_points:
        raise OverLimit(
            "DIRCONV_MAX_USER_POINTS",
            f"{whose} runs store {stored:,} metric points; {new_points:,} more would pass "
            f"{settings.max_user_points:,} (DIRCONV_MAX_USER_POINTS)",
            QUOTA_RETRY_SECONDS,
        )
