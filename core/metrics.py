"""Every metric a run may log, defined once.

Spec validation (`METRIC_NAMES`, `LOGGED_METRICS`), the kernels' column layout, the torch and
flow trainers, `GET /metrics/definitions` and the dashboard's charts all derive from `METRICS`.
Adding a metric is one entry here plus its computation in each trainer that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OPTIMIZERS = ("sgd", "gd", "flow")
ALL_OPTIMIZERS = OPTIMIZERS

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
        "directional error ‖w/‖w‖ − v‖ of the end-to-end vector w to the teacher v",
        "log",
        ALL_OPTIMIZERS,
    ),
    Metric("angle", "angle between w and the teacher v, in radians", "log", ALL_OPTIMIZERS),
    Metric(
        "loss",
        "loss: on the step's batch (sgd), on the fixed sample (gd), the population loss (flow)",
        "log",
        ALL_OPTIMIZERS,
    ),
    Metric("norm", "norm ‖w‖ of the end-to-end vector", "log", ALL_OPTIMIZERS),
    Metric(
        "balancedness",
        "balancedness max_i ‖W_(i+1)^T W_(i+1) − W_i W_i^T‖_F (0 at depth 1 and under flow)",
        "linear",
        ALL_OPTIMIZERS,
    ),
    Metric("train_loss", "mean loss on the fixed training sample", "log", ("gd",)),
    Metric(
        "train_accuracy",
        "share of the fixed training sample classified correctly",
        "linear",
        ("gd",),
    ),
)

METRIC_NAMES = tuple(metric.name for metric in METRICS)
"""Every metric a run may log, in the table's order."""

LOGGED_METRICS = {
    optimizer: tuple(metric.name for metric in METRICS if optimizer in metric.optimizers)
    for optimizer in OPTIMIZERS
}
"""The metrics each optimizer logs, in the table's order."""
