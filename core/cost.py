"""What a run costs before it is accepted: its peak memory in a worker and the metric points it
will store. The API refuses a run or sweep past `DIRCONV_MAX_RUN_BYTES`,
`DIRCONV_MAX_RUN_POINTS` or `DIRCONV_MAX_SWEEP_POINTS`, so no worker discovers it by crashing.

The memory estimate follows what the trainers allocate (worker/engine.py, worker/kernels.py,
worker/trainers/torch_group.py): one data batch x (dim x size) and labels y per data stream, float64
scratch of a few words per point, per-member batch temporaries on the torch path (margins,
slopes), each member's weights three times over (the weights, the update's scratch, a
checkpoint copy), and the two windows of batches a group drawing ahead holds (sgd on the CPU).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.settings import Settings
from core.spec import LOGGED_METRICS, ExperimentSpec, batch_key, data_key, filled_width

SCRATCH_BYTES_PER_POINT = 48
"""float64 words per batch point the CPU kernels keep besides x and y (sampling, margins)."""
MEMBER_BYTES_PER_POINT = 16
"""Batch-wide temporaries one member holds on the torch path (margins and slopes)."""
WEIGHT_COPIES = 3
PREFETCH_WINDOW_BYTES = 8 << 20
"""A group with a spare thread draws its batches ahead into two windows of about this size
(worker/trainers/prefetch.py), or of one step each where one step's batches are larger."""
BASE_BYTES = 1 << 20
"""Small fixed buffers of a group (metric rows of one block, chain vectors)."""


@dataclass(frozen=True)
class Overrun:
    """A limit a spec (or a sweep) exceeds: the field to blame and why."""

    field: str
    message: str


def batch_points(spec: ExperimentSpec) -> int:
    """Points a trainer holds at once: the mini-batch (sgd), the sample (gd), none (flow)."""
    return {"sgd": spec.batch_size, "gd": spec.n_samples}.get(spec.optimizer, 0)


def weight_count(spec: ExperimentSpec) -> int:
    if spec.depth == 1:
        return spec.dim
    width = filled_width(spec)
    return width * spec.dim + (spec.depth - 2) * width**2 + width


def _itemsize(spec: ExperimentSpec) -> int:
    return 4 if spec.dtype == "float32" else 8


def data_bytes(spec: ExperimentSpec) -> int:
    """One data stream: x and y in the run's dtype plus float64 scratch per point."""
    points = batch_points(spec)
    return points * ((spec.dim + 1) * _itemsize(spec) + SCRATCH_BYTES_PER_POINT)


def member_bytes(spec: ExperimentSpec) -> int:
    """What each member adds on top of its data stream."""
    temporaries = 0 if spec.device == "cpu" else batch_points(spec) * MEMBER_BYTES_PER_POINT
    return WEIGHT_COPIES * weight_count(spec) * _itemsize(spec) + temporaries


def group_bytes(specs: Sequence[ExperimentSpec]) -> int:
    """Peak memory of `specs` training together as one group."""
    streams = {data_key(spec): data_bytes(spec) for spec in specs}
    members = sum(member_bytes(spec) for spec in specs)
    return BASE_BYTES + sum(streams.values()) + members + prefetch_bytes(specs)


def prefetch_bytes(specs: Sequence[ExperimentSpec]) -> int:
    """The two windows of batches drawn ahead, if the group draws ahead (sgd on the CPU)."""
    drawing = [spec for spec in specs if spec.optimizer == "sgd" and spec.device != "cuda"]
    batches = {data_key(spec): _batch_bytes(spec) for spec in drawing}
    return 2 * max(PREFETCH_WINDOW_BYTES, sum(batches.values())) if batches else 0


def _batch_bytes(spec: ExperimentSpec) -> int:
    return batch_points(spec) * (spec.dim + 1) * _itemsize(spec)


def stored_points(spec: ExperimentSpec) -> int:
    """Metric points the run stores: every `log_every`-th step from 0, the last step always."""
    logged_steps = spec.steps // spec.log_every + 1
    if spec.steps % spec.log_every:
        logged_steps += 1
    return logged_steps * len(LOGGED_METRICS[spec.optimizer])


def run_overruns(spec: ExperimentSpec, settings: Settings) -> list[Overrun]:
    """The limits one run exceeds on its own."""
    overruns = []
    peak = group_bytes([spec])
    if peak > settings.max_run_bytes:
        overruns.append(_memory_overrun(spec, peak, settings.max_run_bytes))
    points = stored_points(spec)
    if points > settings.max_run_points:
        overruns.append(
            Overrun(
                _points_field(spec),
                f"the run would store {points:,} metric points; at most "
                f"{settings.max_run_points:,} (DIRCONV_MAX_RUN_POINTS): raise log_every or "
                "lower steps",
            )
        )
    return overruns


def sweep_overruns(specs: Sequence[ExperimentSpec], settings: Settings) -> list[Overrun]:
    """The limits a sweep exceeds as a whole: its groups' memory, its points in total."""
    overruns = []
    for group in _groups(specs, settings.max_batch):
        peak = group_bytes(group)
        if peak > settings.max_run_bytes:
            overrun = _memory_overrun(group[0], peak, settings.max_run_bytes, len(group))
            overruns.append(overrun)
            break
    points = sum(stored_points(spec) for spec in specs)
    if points > settings.max_sweep_points:
        overruns.append(
            Overrun(
                _points_field(specs[0]),
                f"the sweep would store {points:,} metric points; at most "
                f"{settings.max_sweep_points:,} (DIRCONV_MAX_SWEEP_POINTS): raise log_every, "
                "lower steps or make the grid smaller",
            )
        )
    return overruns


def _groups(specs: Iterable[ExperimentSpec], max_batch: int) -> list[list[ExperimentSpec]]:
    """The groups a worker would train: members with one batch key, `max_batch` at a time."""
    by_key: dict[str, list[ExperimentSpec]] = defaultdict(list)
    for spec in specs:
        by_key[batch_key(spec)].append(spec)
    return [
        members[start : start + max_batch]
        for members in by_key.values()
        for start in range(0, len(members), max_batch)
    ]


def _memory_overrun(spec: ExperimentSpec, peak: int, limit: int, members: int = 1) -> Overrun:
    together = f"{members} members training together need" if members > 1 else "the run needs"
    data_heavy = data_bytes(spec) >= member_bytes(spec)
    remedy = "use a smaller batch" if data_heavy else "use a smaller network"
    return Overrun(
        _data_field(spec) if data_heavy else _weights_field(spec),
        f"{together} about {_mib(peak)} of worker memory; at most {_mib(limit)} "
        f"(DIRCONV_MAX_RUN_BYTES): {remedy}",
    )


def _data_field(spec: ExperimentSpec) -> str:
    size_field = "n_samples" if spec.optimizer == "gd" else "batch_size"
    if size_field not in spec.model_fields_set and "dim" in spec.model_fields_set:
        return "dim"
    return size_field


def _weights_field(spec: ExperimentSpec) -> str:
    for field in ("width", "depth", "dim"):
        if field in spec.model_fields_set:
            return field
    return "width"


def _points_field(spec: ExperimentSpec) -> str:
    if "steps" in spec.model_fields_set and "log_every" not in spec.model_fields_set:
        return "steps"
    return "log_every"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"
