"""Every metric a run may log, defined once.

Spec validation (`METRIC_NAMES`, `LOGGED_METRICS`), the kernels' column layout, the torch and
flow trainers, `GET /metrics/definitions` and the dashboard's charts all derive from `METRICS`.
Adding a metric is one entry here plus its computation in each trainer that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OPTIMIZERS = ("sgd", "gd", "flow")
ALL = OPTIMIZERS

Scale = Literal["log", "linear"]


@dataclass(frozen=True)
class Metric:
    """One logged quantity: its name, what it measures, how to chart it (`scale` of the y
    axis) and which optimizers log it."""

    name: str
    description: str
    scale: Scale
    optimizers: tuple[str, ...]


METRICS = (
    Metric(
        "directional_error",
        "directional error ‖w/‖w‖ − v‖ (w: end-to-end vector, v: teacher)",
        "log",
        ALL,
    ),
    Metric("angle", "angle ∠(w, v) in radians", "log", ALL),
    Metric("loss", "loss (sgd: on the batch, gd: on the sample, flow: population)", "log", ALL),
    Metric("norm", "norm ‖w‖", "log", ALL),
    Metric(
        "balancedness",
        "balancedness max_i ‖W_(i+1)ᵀ W_(i+1) − W_i W_iᵀ‖_F (0 at depth 1 and under flow)",
        "linear",
        ALL,
    ),
    Metric("train_loss", "train loss on the fixed sample", "log", ("gd",)),
    Metric("train_accuracy", "train accuracy on the fixed sample", "linear", ("gd",)),
)
"""The metric table. Columns of the kernels' `out` table and of the torch trainer's rows follow
its order; the API's answers list metrics in it."""

METRIC_NAMES = tuple(metric.name for metric in METRICS)
"""Every metric a run may log, in the table's order."""

LOGGED_METRICS = {
    optimizer: tuple(metric.name for metric in METRICS if optimizer in metric.optimizers)
    for optimizer in OPTIMIZERS
}
"""The metrics each optimizer logs, in the table's order."""
