"""Sweeps: expanding a grid into validated member specs, storing them, counting them."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import cost, lifecycle
from core.models import STATUSES, Experiment, Sweep
from core.settings import Settings
from core.spec import ExperimentSpec, batch_key
from service.schemas import SweepCreate, SweepRead

NOT_GRIDDABLE = ("name", "tags")
MAX_REPORTED_ERRORS = 20


class SweepInvalid(ValueError):
    """Errors in FastAPI's shape: each with a `loc` naming the field in the request body."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


def expand(request: SweepCreate, settings: Settings) -> list[tuple[dict, ExperimentSpec]]:
    """(grid values, validated spec) for every member; raises SweepInvalid before anything
    is stored if the grid or any member is invalid, or the sweep costs more than the limits."""
    _check_grid(request.grid, settings.max_sweep_size)
    fields = list(request.grid)
    members, errors = [], {}
    for values in itertools.product(*request.grid.values()):
        grid_values = dict(zip(fields, values, strict=True))
        try:
            spec = ExperimentSpec.model_validate({**request.base, **grid_values})
        except ValidationError as exc:
            member_errors = exc.errors(include_url=False, include_context=False)
        else:
            members.append((grid_values, spec))
            overruns = cost.run_overruns(spec, settings)
            member_errors = [_error((o.field,), o.message) for o in overruns]
        for error in member_errors:
            error = _locate(error, grid_values)
            errors.setdefault((tuple(error["loc"]), error["msg"]), error)
    if not errors:
        specs = [spec for _, spec in members]
        for overrun in cost.sweep_overruns(specs, settings):
            where = "grid" if overrun.field in request.grid else "base"
            error = _error(("body", where, overrun.field), overrun.message)
            errors[(tuple(error["loc"]), error["msg"])] = error
    if errors:
        raise SweepInvalid(list(errors.values())[:MAX_REPORTED_ERRORS])
    return members


def _check_grid(grid: dict[str, list], max_size: int) -> None:
    errors = []
    for field, values in grid.items():
        if field not in ExperimentSpec.model_fields or field in NOT_GRIDDABLE:
            errors.append(_error(("body", "grid", field), "not a spec field that can be swept"))
        elif not values:
            errors.append(_error(("body", "grid", field), "needs at least one value"))
    size = 1
    for values in grid.values():
        size *= max(len(values), 1)
    if size > max_size:
        errors.append(
            _error(("body", "grid"), f"{size} members; at most {max_size} (DIRCONV_MAX_SWEEP_SIZE)")
        )
    if errors:
        raise SweepInvalid(errors)


def _locate(error: dict, grid_values: dict) -> dict:
    """Point an error at the grid field that set it, or else at the base."""
    field = error["loc"][0] if error["loc"] else None
    where = ("body", "grid") if field in grid_values else ("body", "base")
    message = error["msg"]
    if field in grid_values:
        message = f"{message} (for {field}={grid_values[field]!r})"
    return {**error, "loc": (*where, *error["loc"]), "msg": message}


def _error(loc: tuple, message: str) -> dict:
    return {"loc": loc, "msg": message, "type": "value_error", "input": None}


def create_sweep(
    session: Session,
    request: SweepCreate,
    members: list[tuple[dict, ExperimentSpec]],
    owner: str | None = None,
) -> tuple[Sweep, list[int]]:
    """Store the sweep and its members (queued), all owned by `owner`; the caller commits."""
    sweep = Sweep(name=request.name or "", base=request.base, grid=request.grid, owner=owner)
    session.add(sweep)
    session.flush()
    sweep.name = sweep.name or f"sweep-{sweep.id}"
    ids = []
    for grid_values, spec in members:
        label = " ".join(f"{field}={value}" for field, value in grid_values.items())
        experiment = lifecycle.create_experiment(
            session, spec.model_copy(update={"name": spec.name or f"{sweep.name} {label}"}), owner
        )
        experiment.sweep_id, experiment.grid_values = sweep.id, grid_values
        experiment.batch_key = batch_key(spec)
        ids.append(experiment.id)
    session.flush()
    return sweep, ids


def member_rows(session: Session, sweep_id: int) -> Sequence[Experiment]:
    query = select(Experiment).where(Experiment.sweep_id == sweep_id).order_by(Experiment.id)
    return session.scalars(query).all()


def to_read(session: Session, sweep: Sweep) -> SweepRead:
    return to_reads(session, [sweep])[0]


def to_reads(session: Session, sweeps: Sequence[Sweep]) -> list[SweepRead]:
    """The sweeps with their member ids and counts by status, from one query for them all."""
    members: dict[int, list[tuple[int, str]]] = {sweep.id: [] for sweep in sweeps}
    query = (
        select(Experiment.sweep_id, Experiment.id, Experiment.status)
        .where(Experiment.sweep_id.in_(list(members)))
        .order_by(Experiment.id)
    )
    for sweep_id, experiment_id, status in session.execute(query):
        members[sweep_id].append((experiment_id, status))
    return [_read(sweep, members[sweep.id]) for sweep in sweeps]


def _read(sweep: Sweep, members: list[tuple[int, str]]) -> SweepRead:
    by_status = Counter(status for _, status in members)
    return SweepRead(
        id=sweep.id,
        name=sweep.name,
        base=sweep.base,
        grid=sweep.grid,
        created_at=sweep.created_at,
        experiment_ids=[experiment_id for experiment_id, _ in members],
        total=len(members),
        counts={status: by_status[status] for status in STATUSES},
        owner=sweep.owner,
    )


def list_sweeps(session: Session, limit: int, offset: int) -> tuple[Sequence[Sweep], int]:
    count = session.scalar(select(func.count()).select_from(Sweep)) or 0
    page = select(Sweep).order_by(Sweep.id.desc()).limit(limit).offset(offset)
    return session.scalars(page).all(), count
