"""Optimizer `flow`: the population gradient flow (service/theory.py) as a trainer with the
interface of engine.Group. w(t) is integrated in float64 at t = lr x step; the loss logged is
the population loss, and balancedness is 0 by construction."""

from __future__ import annotations

import numpy as np

from service import theory
from service.inits import end_to_end, initial_layers
from service.spec import ExperimentSpec
from worker.engine import MetricBlock, common_step, load_snapshot, save_snapshot


class FlowGroup:
    """Flow runs with the interface of engine.Group: w(t) at t = lr x step, in float64."""

    metric_names = ("directional_error", "angle", "loss", "norm", "balancedness")

    def __init__(self, specs: list[ExperimentSpec], resumes: list[bytes | None]) -> None:
        self.specs = specs
        self.step = common_step(resumes)
        self.w = [_start(spec, resume) for spec, resume in zip(specs, resumes, strict=True)]
        self.active = np.ones(len(specs), dtype=np.bool_)
        self.errors: list[str | None] = [None] * len(specs)

    def advance(self, count: int) -> list:
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
        if self.active[m]:
            steps = np.unique(np.concatenate([[self.step], logged, [last]]))
            path = [self.w[m]]
            if len(steps) > 1:
                teacher = np.array(spec.teacher)
                path = theory.integrate_flow(
                    self.w[m], spec.depth, teacher, spec.loss, spec.lr * steps, spec.distribution
                )
            at = dict(zip(steps.tolist(), path, strict=True))
            self._fill(values, spec, [at[int(k)] for k in logged])
            self.w[m] = path[-1]
        return MetricBlock(logged.copy(), values, last, lambda: self.snapshot(m))

    def _fill(self, values, spec, ws) -> None:
        teacher = np.array(spec.teacher)
        for i, w in enumerate(ws):
            error = float(theory.directional_error(w, teacher))
            values["directional_error"][i] = error
            values["angle"][i] = 2 * np.arcsin(min(error / 2, 1.0))
            values["norm"][i] = float(np.linalg.norm(w))
            values["loss"][i] = theory.population_loss(
                w, teacher, spec.loss, spec.dim, spec.distribution
            )
            values["balancedness"][i] = 0.0

    def snapshot(self, m: int) -> bytes:
        return save_snapshot(self.step, [self.w[m]])


def _start(spec: ExperimentSpec, resume: bytes | None) -> np.ndarray:
    if resume is not None:
        return load_snapshot(resume)[1][0]
    return end_to_end(initial_layers(spec))
