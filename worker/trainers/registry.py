"""Which trainer trains a group: the population flow, torch on CUDA, or the numba kernels."""

from __future__ import annotations

from core.spec import ExperimentSpec, group_key
from worker.trainers.base import Trainer, TrainerFactory, resolve_device
from worker.trainers.flow_group import FlowGroup
from worker.trainers.numba_group import Group
from worker.trainers.torch_group import TorchGroup

TRAINERS: dict[str, TrainerFactory] = {"numba": Group, "torch": TorchGroup, "flow": FlowGroup}
"""Every trainer by name; each implements `worker.trainers.base.Trainer`."""


def trainer_name(spec: ExperimentSpec) -> str:
    """The trainer of `spec`'s group: `flow` for optimizer flow, else by device."""
    if spec.optimizer == "flow":
        return "flow"
    return "torch" if resolve_device(spec.device).type == "cuda" else "numba"


def make_trainer(
    specs: list[ExperimentSpec], resumes: list[bytes | None] | None = None, threads: int = 1
) -> Trainer:
    """The trainer for `specs` (equal group keys), from their snapshots if `resumes` are given;
    the numba trainer steps its members on up to `threads` threads."""
    if len({group_key(spec) for spec in specs}) != 1:
        raise ValueError("specs with different group keys cannot train together")
    resumes = resumes or [None] * len(specs)
    name = trainer_name(specs[0])
    if name == "numba":
        return Group(specs, resumes, threads=threads)
    return TRAINERS[name](specs, resumes)
