"""A run's live updates as server-sent events (`GET /experiments/{id}/events`).

Every DIRCONV_EVENTS_SECONDS the stream takes a turn at the database (deps.brief_turn), reads
the run and the points stored since the last event on a short connection of its own, and
gives both back before it sleeps: an open stream holds neither a slot nor a connection
between polls. Events:

- `status`: the run as `GET /experiments/{id}` reads it; first, and on every status change;
- `progress`: {"step", "total_steps", "points": {name: {"steps", "values"}}}, every poll
  while the run is active, with the points stored since the previous one;
- the stream ends after the `status` event of a finished run, or after
  DIRCONV_EVENTS_MAX_SECONDS: the client then reconnects with the last event's id as its
  `Last-Event-ID` (the last step sent of each metric, "name=step;..."), and the points go on
  from there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from fastapi import Request
from fastapi.sse import ServerSentEvent
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core import metric_store
from core.models import FINISHED_STATUSES, Experiment
from core.settings import get_settings
from core.spec import LOGGED_METRICS, MAX_INT, METRIC_NAMES
from service import exports, store
from service.api.deps import brief_turn
from service.schemas import ExperimentRead


@dataclass
class Poll:
    run: ExperimentRead
    points: dict[str, metric_store.SeriesArrays]
    sent: dict[str, int]
    """The last step sent of each metric, once these points are."""


RETRY_MILLISECONDS = 1000
"""How soon a browser's EventSource reconnects to a stream that closed."""


def parse_cursor(last_event_id: str | None) -> dict[str, int] | None:
    """{metric: last step sent} from a `Last-Event-ID`; None if it is not one of ours."""
    sent: dict[str, int] = {}
    for part in filter(None, (last_event_id or "").split(";")):
        name, _, step = part.partition("=")
        if name not in METRIC_NAMES or not (step.isascii() and step.isdigit()):
            return None
        if int(step) > MAX_INT:
            return None
        sent[name] = int(step)
    return sent


async def stream(
    request: Request, experiment_id: int, names: list[str] | None, sent: dict[str, int]
) -> AsyncIterator[ServerSentEvent]:
    """The events of one run after the points in `sent`, until after its terminal status or
    DIRCONV_EVENTS_MAX_SECONDS."""
    engine = request.app.state.engine
    settings = get_settings()
    closing = anyio.current_time() + settings.events_max_seconds
    status = None
    while anyio.current_time() < closing:
        async with brief_turn(request) as admitted:
            if admitted:  # else the database is busy: try again at the next poll
                poll = await anyio.to_thread.run_sync(
                    _poll, engine, experiment_id, names, sent, settings.event_points
                )
                if poll is None:
                    return
        if admitted:
            finished = poll.run.status in FINISHED_STATUSES
            changed, status = poll.run.status != status, poll.run.status
            if changed and not finished:
                yield _status(poll)
            if not finished or any(len(part.steps) for part in poll.points.values()):
                yield _progress(poll)
            if finished:  # its last points went first
                yield _status(poll)
                return
        await anyio.sleep(settings.events_seconds)


def _poll(
    engine: Engine, experiment_id: int, names: list[str] | None, sent: dict[str, int], limit: int
) -> Poll | None:
    """The run and, per metric, up to `limit` points after those already sent (downsampled
    past it); `sent` moves on to the last step read. None if the run is gone."""
    with Session(bind=engine) as session:
        experiment = session.get(Experiment, experiment_id)
        if experiment is None:
            return None
        chosen = names or list(LOGGED_METRICS[experiment.spec["optimizer"]])
        points = {}
        for name in chosen:
            after = sent.get(name, -1) + 1
            part = metric_store.read_downsampled(
                session, experiment_id, name, max_points=limit, start_step=after
            )
            if len(part.steps):
                sent[name] = int(part.steps[-1])
            points[name] = part
        return Poll(store.to_read(experiment), points, dict(sent))


def _status(poll: Poll) -> ServerSentEvent:
    return ServerSentEvent(
        event="status",
        raw_data=poll.run.model_dump_json(),
        id=_cursor(poll),
        retry=RETRY_MILLISECONDS,
    )


def _cursor(poll: Poll) -> str:
    return ";".join(f"{name}={step}" for name, step in sorted(poll.sent.items()))


def _progress(poll: Poll) -> ServerSentEvent:
    content = {
        "step": poll.run.progress.step,
        "total_steps": poll.run.progress.total_steps,
        "points": {name: exports.series_json(part) for name, part in poll.points.items()},
    }
    return ServerSentEvent(
        event="progress", raw_data=exports.dumps(content).decode(), id=_cursor(poll)
    )
