"""What every trainer is and hands back: the `Trainer` protocol, the metric block and run
result, snapshots, and the messages of a run that cannot go on."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from core.metrics import METRIC_NAMES
from core.spec import ExperimentSpec


class EngineError(RuntimeError):
    """A run that cannot go on; the message is shown to the user."""


@dataclass
class MetricBlock:
    """Metrics logged in one block of steps; `step` is the number of updates done so far.

    `snapshot()` returns the run's state right after this block (opaque bytes): passed back to
    `run(..., resume=...)`, training goes on from `step` exactly as it would have, and the
    first metrics it logs are those of step `step`.
    """

    steps: np.ndarray
    values: dict[str, np.ndarray]
    step: int
    snapshot: Callable[[], bytes] = field(repr=False, default=lambda: b"")


@dataclass
class RunResult:
    completed: bool
    steps_done: int
    final: dict[str, float]


@runtime_checkable
class Trainer(Protocol):
    """Members that train together, all at the same step (equal `core.spec.group_key`).

    `active[m]` False stops member m (the engine sets it when a member ends); `errors[m]` is
    the message of a member that cannot go on (the trainer sets it and deactivates it).
    """

    specs: list[ExperimentSpec]
    step: int
    active: np.ndarray
    errors: list[str | None]

    def advance(self, count: int) -> list[MetricBlock]:
        """Up to `count` iterations: log when due, then update (the final step only logs);
        one block per member, its values those of the optimizer's metrics."""
        ...

    def snapshot(self, m: int) -> bytes:
        """Member m's state at `step`, for `save_snapshot`'s reader."""
        ...


TrainerFactory = Callable[[list[ExperimentSpec], list[bytes | None]], Trainer]


def metric_block(
    names: tuple[str, ...],
    steps: np.ndarray,
    table: np.ndarray,
    step: int,
    snapshot: Callable[[], bytes],
) -> MetricBlock:
    """The block of `names` from `table` (logged rows x one column per metric of
    `core.metrics.METRICS`, in its order)."""
    values = {
        name: np.array(table[:, column])  # a copy: trainers reuse their tables
        for column, name in enumerate(METRIC_NAMES)
        if name in names
    }
    return MetricBlock(steps, values, step, snapshot)


def metric_blocks(
    names: tuple[str, ...],
    steps: np.ndarray,
    table: np.ndarray,
    step: int,
    snapshot: Callable[[int], bytes],
) -> list[MetricBlock]:
    """One block per member of `names` from `table` (logged rows x members x one column per
    metric of `core.metrics.METRICS`): one copy of the table, every block's values views of
    it, as a large group makes thousands of blocks a second."""
    # a copy even when the view is contiguous already (one row): trainers reuse their tables
    columns = np.array(table.transpose(1, 2, 0), order="C")  # members x metrics x rows
    wanted = [(column, name) for column, name in enumerate(METRIC_NAMES) if name in names]
    return [
        MetricBlock(steps, {name: member[column] for column, name in wanted}, step,
                    functools.partial(snapshot, m))
        for m, member in enumerate(columns)
    ]  # fmt: skip


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EngineError("device 'cuda' requested but this worker has no CUDA device")
    return torch.device(requested)


def diverged(step: int) -> str:
    return f"training diverged: parameters became non-finite by step {step}; try a smaller lr"


def save_snapshot(step: int, arrays: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, step=step, **{f"array_{i}": array for i, array in enumerate(arrays)})
    return buffer.getvalue()


def load_snapshot(snapshot: bytes) -> tuple[int, list[np.ndarray]]:
    with np.load(io.BytesIO(snapshot)) as saved:
        count = sum(name.startswith("array_") for name in saved.files)
        return int(saved["step"]), [saved[f"array_{i}"] for i in range(count)]


def common_step(resumes: list[bytes | None]) -> int:
    steps = {0 if resume is None else load_snapshot(resume)[0] for resume in resumes}
    if len(steps) != 1:
        raise ValueError("members of a group must resume from the same step")
    return steps.pop()
