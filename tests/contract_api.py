"""The API plus stand-ins for endpoints other issues add, shaped to their agreed contracts.

`python -m tests.contract_api --port P` serves what `python -m service` serves, plus:
  POST /sweeps {"name", "base", "grid"} -> 201 {"id", "experiment_ids"}     (issue #3)
  GET /sweeps/{id}, GET /sweeps/{id}/metrics?name=&max_points=               (issue #3)
  GET /experiments/{id}/theory?max_points=                                   (issue #3)
so the dashboard, client and CLI can be tested against those contracts before they land.
The sweeps live in memory; the theory is `worker.flow` for dim-2 uniform-circle specs.
"""

from __future__ import annotations

import argparse
import itertools
from typing import Annotated, Any

import numpy as np
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service import store
from service.api.deps import ReadSession, WriteSession, get_experiment_or_404
from service.db import upgrade_schema
from service.main import create_app
from service.spec import ExperimentSpec
from tests.e2e.test_processes import Stack, wait_for
from worker import flow


class SweepCreate(BaseModel):
    name: str
    base: dict[str, Any] = {}
    grid: dict[str, list[Any]]


def build_app() -> FastAPI:
    app = create_app()
    sweeps: dict[int, dict] = {}
    router = APIRouter()

    @router.post("/sweeps", status_code=201)
    def create_sweep(session: WriteSession, body: SweepCreate) -> dict:
        """Queue one experiment a grid point."""
        fields = list(body.grid)
        specs = [
            _spec({**body.base, **dict(zip(fields, values, strict=True))})
            for values in itertools.product(*body.grid.values())
        ]
        ids = [store.create_experiment(session, spec).id for spec in specs]
        session.commit()
        sweep_id = len(sweeps) + 1
        sweeps[sweep_id] = {"id": sweep_id, "name": body.name, "grid": body.grid, "ids": ids}
        return {"id": sweep_id, "experiment_ids": ids}

    @router.get("/sweeps/{sweep_id}")
    def read_sweep(sweep_id: int) -> dict:
        """Read a sweep."""
        sweep = _sweep_or_404(sweeps, sweep_id)
        return {**sweep, "experiment_ids": sweep["ids"]}

    @router.get("/sweeps/{sweep_id}/metrics")
    def sweep_metrics(
        session: ReadSession, sweep_id: int, name: str = "directional_error", max_points: int = 2000
    ) -> dict:
        """One metric for every member, with its grid values."""
        sweep = _sweep_or_404(sweeps, sweep_id)
        members = []
        for experiment_id in sweep["ids"]:
            spec = get_experiment_or_404(session, experiment_id).spec
            series = store.read_series(
                session, experiment_id, name, start_step=None, end_step=None, max_points=max_points
            )
            grid_values = {field: spec[field] for field in sweep["grid"]}
            members.append(
                {"experiment_id": experiment_id, "grid_values": grid_values, **series.model_dump()}
            )
        return {"sweep_id": sweep_id, "members": members}

    @router.get("/experiments/{experiment_id}/theory")
    def theory(
        session: ReadSession, experiment_id: int, max_points: Annotated[int, Query(ge=2)] = 2000
    ) -> dict:
        """The population flow's directional error for this run's spec."""
        spec = get_experiment_or_404(session, experiment_id).spec
        if spec["dim"] != 2 or spec["distribution"] != "uniform_sphere":
            raise HTTPException(status_code=422, detail="theory needs dim 2, uniform_sphere")
        steps = np.unique(np.linspace(0, spec["steps"], max_points).astype(np.int64))
        teacher = np.asarray(spec["teacher"])
        w = flow.integrate_flow(
            np.asarray(spec["init_vector"]),
            spec["depth"],
            teacher,
            spec["loss"],
            spec["lr"] * steps,
        )
        errors = flow.directional_error(w, teacher)
        return {
            "experiment_id": experiment_id,
            "steps": steps.tolist(),
            "directional_error": errors.tolist(),
        }

    app.include_router(router)
    return app


def _spec(fields: dict) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", "base", *e["loc"])} for e in error.errors(include_context=False)]
        ) from None


def _sweep_or_404(sweeps: dict[int, dict], sweep_id: int) -> dict:
    if sweep_id not in sweeps:
        raise HTTPException(status_code=404, detail=f"sweep {sweep_id} not found")
    return sweeps[sweep_id]


def start_stack(stack: Stack) -> Stack:
    """Start this API and one worker in `stack` (a `tests.e2e` process stack)."""
    stack.start("tests.contract_api", "--port", str(stack.port))
    wait_for(stack._healthy, timeout=30)
    stack.start("worker")
    return stack


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    upgrade_schema()
    uvicorn.run(build_app(), host=args.host, port=args.port, log_level="warning")
