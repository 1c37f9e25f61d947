"""A run's live updates as server-sent events (`GET /experiments/{id}/events`).

Every DIRCONV_EVENTS_SECONDS the stream takes a turn at the database (deps.brief_turn), reads
the run and the points stored since the last event on a short connection of its own, and
gives both back before it sleeps: an open stream holds neither a slot nor a connection
between polls. Events:

- `status`: the run as `GET /experiments/{id}` reads it; first, and on every status change;
- `progress`: {"step", "total_steps", "points": {name: {"steps", "values"}}}, every poll
  while the run is active, with the points stored since the previous one;
- the stream ends after the `status` event of a finished run.
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
from core.spec import LOGGED_METRICS
from service import exports, store
from service.api.deps import brief_turn
from service.schemas import ExperimentRead


@dataclass
class Poll:
    run: ExperimentRead
    points: dict[str, metric_store.SeriesArrays]


async def stream(
    request: Request, experiment_id: int, names: list[str] | None
) -> AsyncIterator[ServerSentEvent]:
    """The events of one run, until after its terminal status."""
    engine = request.app.state.engine
    settings = get_settings()
    sent: dict[str, int] = {}
    status = None
    while True:
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
        return Poll(store.to_read(experiment), points)


def _status(poll: Poll) -> ServerSentEvent:
    return ServerSentEvent(event="status", raw_data=poll.run.model_dump_json())


def _progress(poll: Poll) -> ServerSentEvent:
    content = {
        "step": poll.run.progress.step,
        "total_steps": poll.run.progress.total_steps,
        "points": {name: exports.series_json(part) for name, part in poll.points.items()},
    }
    return ServerSentEvent(event="progress", raw_data=exports.dumps(content).decode())
