"""Every trainer logs exactly the metrics the table (core/metrics.py) gives its optimizer, and
the trainers agree on their values where they measure the same thing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.metrics import LOGGED_METRICS, METRIC_NAMES, METRICS
from core.spec import ExperimentSpec
from worker.trainers.base import Trainer
from worker.trainers.flow_group import FlowGroup
from worker.trainers.numba_group import Group
from worker.trainers.registry import TRAINERS
from worker.trainers.torch_group import TorchGroup

SMALL = {"depth": 3, "width": 4, "dim": 3, "steps": 12, "log_every": 4, "dtype": "float64"}
FLOW_AGREES_AT_START = ("directional_error", "angle", "norm", "balancedness")
"""Flow's loss is the population loss, the others' the batch loss: only the state's own
metrics agree, and only at step 0, before the trajectories part."""


def _torch_cpu(specs: list[ExperimentSpec], resumes: list[bytes | None]) -> TorchGroup:
    return TorchGroup(specs, resumes, device=torch.device("cpu"))


def _first_block(make, spec: ExperimentSpec):  # noqa: ANN001, ANN202
    return make([spec], [None]).advance(spec.steps + 1)[0]


def test_the_table_gives_each_optimizer_its_metrics_in_order():
    names = [metric.name for metric in METRICS]
    assert names == [*LOGGED_METRICS["sgd"], "train_loss", "train_accuracy"]
    assert names == list(METRIC_NAMES) == list(LOGGED_METRICS["gd"])
    assert LOGGED_METRICS["flow"] == LOGGED_METRICS["sgd"]
    assert LOGGED_METRICS["sgd"] == ("directional_error", "angle", "loss", "norm", "balancedness")
    assert all(metric.scale in ("log", "linear") and metric.description for metric in METRICS)


def test_every_registered_trainer_implements_the_protocol():
    spec = ExperimentSpec(**SMALL)
    flow = ExperimentSpec(**{**SMALL, "optimizer": "flow"})
    assert set(TRAINERS) == {"numba", "torch", "flow"}
    assert isinstance(Group([spec], [None]), Trainer)
    assert isinstance(_torch_cpu([spec], [None]), Trainer)
    assert isinstance(FlowGroup([flow], [None]), Trainer)


@pytest.mark.parametrize(
    ("optimizer", "make"),
    [("sgd", Group), ("sgd", _torch_cpu), ("gd", Group), ("gd", _torch_cpu), ("flow", FlowGroup)],
)
def test_every_trainer_logs_exactly_the_tables_metrics_for_its_optimizer(optimizer, make):
    block = _first_block(make, ExperimentSpec(**{**SMALL, "optimizer": optimizer}))
    assert list(block.values) == list(LOGGED_METRICS[optimizer])
    assert block.steps.tolist() == [0, 4, 8, 12]
    for name, values in block.values.items():
        assert len(values) == 4 and np.isfinite(values).all(), name


@pytest.mark.parametrize("optimizer", ["sgd", "gd"])
def test_numba_and_torch_on_the_cpu_agree_on_every_metric(optimizer):
    spec = ExperimentSpec(**{**SMALL, "optimizer": optimizer})
    kernel, reference = _first_block(Group, spec), _first_block(_torch_cpu, spec)
    assert kernel.steps.tolist() == reference.steps.tolist()
    for name in LOGGED_METRICS[optimizer]:
        assert np.allclose(kernel.values[name], reference.values[name], rtol=1e-12, atol=1e-14)


def test_gd_train_metrics_are_those_of_the_fixed_sample():
    block = _first_block(Group, ExperimentSpec(**{**SMALL, "optimizer": "gd"}))
    assert block.values["train_loss"].tolist() == block.values["loss"].tolist()
    accuracy = block.values["train_accuracy"]
    assert ((accuracy >= 0) & (accuracy <= 1)).all()


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("make", [Group, _torch_cpu])
def test_flow_starts_where_the_other_trainers_start(depth, make):
    fields = {**SMALL, "depth": depth, "init": "balanced", "init_scale": 0.7}
    flow = _first_block(FlowGroup, ExperimentSpec(**fields, optimizer="flow"))
    trained = _first_block(make, ExperimentSpec(**fields, optimizer="gd"))
    for name in FLOW_AGREES_AT_START:
        assert flow.values[name][0] == pytest.approx(trained.values[name][0], rel=1e-9, abs=1e-9)
