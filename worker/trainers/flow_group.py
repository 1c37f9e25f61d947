"""Optimizer `flow`: the population gradient flow (core/theory.py) as a trainer
(`worker.trainers.base.Trainer`). w(t) is integrated in float64 at t = lr x step; the loss logged is
the population loss, and balancedness is 0 by construction."""

from __future__ import annotations

import time

import numpy as np

from core import theory
from core.inits import initial_end_to_end
from core.metrics import LOGGED_METRICS
from core.spec import ExperimentSpec
from worker.trainers.base import MetricBlock, common_step, load_snapshot, save_snapshot

BLOCK_SECONDS = 30.0
"""Most time one block of a flow run may take to integrate before the run fails."""


class FlowGroup:
    """Flow runs, a `worker.trainers.base.Trainer`: w(t) at t = lr x step, in float64."""

    metric_names = LOGGED_METRICS["flow"]

    def __init__(self, specs: list[ExperimentSpec], resumes: list[bytes | None]) -> None:
        self.specs = specs
        self.step = common_step(resumes)
        self.w = [_start(spec, resume) for spec, resume in zip(specs, resumes, strict=True)]
        self.active = np.ones(len(specs), dtype=np.bool_)
        self.errors: list[str | None] = [None] * len(specs)

    def advance(self, count: int) -> list[MetricBlock]:
        spec = self.specs[0]
        last = min(self.step + count, spec.steps)
        iterated = np.arange(self.step, min(self.step + count, spec.steps + 1))
        logged = iterated[(iterated % spec.log_every == 0) | (iterated == spec.steps)]
        blocks = []
        for m, member in enumerate(self.specs):
            blocks.append(self._advance_member(m, member, logged, last))
        self.step = last
        return blocks

    def _advance_member(self, m, spec, logged, last) -> MetricBlock:
        values = {name: np.full(len(logged), np.nan) for name in self.metric_names}
        steps = np.unique(np.concatenate([[self.step], logged, [last]]))
        path = self._path(m, spec, steps) if self.active[m] else None
        if path is None:
            return MetricBlock(logged[:0], {k: v[:0] for k, v in values.items()}, last)
        at = dict(zip(steps.tolist(), path, strict=True))
        for i, k in enumerate(logged):
            metrics = _metrics(at[int(k)], spec)
            for name in self.metric_names:
                values[name][i] = metrics[name]
        self.w[m] = path[-1]
        return MetricBlock(logged.copy(), values, last, lambda: self.snapshot(m))

    def _path(self, m: int, spec: ExperimentSpec, steps: np.ndarray) -> list | None:
        """w at each of `steps` (from the current one); None, and the member failed, if the
        integration takes longer than BLOCK_SECONDS."""
        if len(steps) == 1:
            return [self.w[m]]
        deadline = time.monotonic() + BLOCK_SECONDS
        try:
            return list(
                theory.integrate_flow(self.w[m], spec.depth, np.array(spec.teacher), spec.loss,
                                      spec.lr * steps, spec.distribution, deadline)
            )  # fmt: skip
        except theory.FlowTooSlow:
            self.active[m] = False
            self.errors[m] = (
                f"the flow turned too stiff to integrate at rtol {theory.RTOL:g} after step "
                f"{self.step}; try a smaller lr or fewer steps"
            )
            return None

    def snapshot(self, m: int) -> bytes:
        return save_snapshot(self.step, [self.w[m]])


def _start(spec: ExperimentSpec, resume: bytes | None) -> np.ndarray:
    if resume is not None:
        return load_snapshot(resume)[1][0]
    return initial_end_to_end(spec)


def _metrics(w: np.ndarray, spec: ExperimentSpec) -> dict[str, float]:
    """The values of flow's metrics (core/metrics.py) at w."""
    teacher = np.array(spec.teacher)
    error = float(theory.directional_error(w, teacher))
    return {
        "directional_error": error,
        "angle": 2 * np.arcsin(min(error / 2, 1.0)),
        "loss": theory.population_loss(w, teacher, spec.loss, spec.dim, spec.distribution),
        "norm": float(np.linalg.norm(w)),
        "balancedness": 0.0,
    }
