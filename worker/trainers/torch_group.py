"""The torch trainer (the CUDA path): the same data stream and algebra as the numba kernels,
member by member, so CPU and CUDA runs agree to float tolerance."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from core.inits import DATA_SALT, SAMPLE_SALT, initial_layers, stream_key
from core.metrics import LOGGED_METRICS, METRIC_NAMES
from core.spec import ExperimentSpec, data_key
from worker.rng import torch_square_points, torch_step_key
from worker.trainers.base import (
    MetricBlock,
    common_step,
    diverged,
    load_snapshot,
    metric_block,
    resolve_device,
    save_snapshot,
)

ACCEPT_RATE = math.pi / 4  # the unit disk's share of the square


def _accepted_pairs(key: int, needed: int, device: torch.device) -> torch.Tensor:
    """The first `needed` points (a, b) of the unit disk drawn as in kernels (rejection)."""
    count = int(needed / ACCEPT_RATE * 1.1) + 64
    while True:
        pairs = torch_square_points(key, torch.arange(count, device=device))
        accepted = pairs[(pairs**2).sum(dim=1) < 1]
        if len(accepted) >= needed:
            return accepted[:needed]
        count *= 2


def sample(spec: ExperimentSpec, teacher: torch.Tensor, key: int, step: int, size: int, dtype):
    """x and y = sign(v.x) for `step` of a stream, as kernels.fill_batch draws them."""
    step_key = torch_step_key(key, step)
    device = teacher.device
    if spec.dim == 2 and spec.distribution == "uniform_sphere":
        ab = _accepted_pairs(step_key, size, device)
        r2 = (ab**2).sum(dim=1)
        x64 = torch.stack([(ab[:, 0] ** 2 - ab[:, 1] ** 2) / r2, 2 * ab[:, 0] * ab[:, 1] / r2], 1)
        x = x64.to(dtype)
    else:
        ab = _accepted_pairs(step_key, (size * spec.dim + 1) // 2, device)
        r2 = (ab**2).sum(dim=1, keepdim=True)
        normals = (ab * torch.sqrt(-2.0 * torch.log(r2) / r2)).reshape(-1)[: size * spec.dim]
        x = normals.reshape(size, spec.dim).to(dtype)
        if spec.distribution == "uniform_sphere":
            x = (x.double() / x.double().norm(dim=1, keepdim=True)).to(dtype)
        x64 = x.double()
    # As in kernels.fill_batch: labels from the float64 points on the circle, else from the
    # stored points.
    y = torch.where(x64 @ teacher.double() >= 0, 1.0, -1.0).to(dtype)
    return x, y


@dataclass
class _Stack:
    """Members of one shape (depth, width), their layers stacked on a leading axis."""

    members: list[int]
    layers: list[torch.Tensor]  # layer i: (members, rows_i, cols_i)
    lr: torch.Tensor  # (members, 1, 1)
    logistic: torch.Tensor  # (members, 1), bool
    stream: torch.Tensor  # (members,), index into the group's data streams


class TorchGroup:
    """Members trained as stacked torch tensors on one device (the CUDA path), a
    `worker.trainers.base.Trainer`. Members of equal shape step together in batched matrix
    products."""

    def __init__(
        self,
        specs: list[ExperimentSpec],
        resumes: list[bytes | None],
        device: torch.device | None = None,
    ) -> None:
        self.specs = specs
        first = specs[0]
        self.device = device or resolve_device(first.device)
        self.dtype = getattr(torch, first.dtype)
        self.metric_names = LOGGED_METRICS[first.optimizer]
        self.step = common_step(resumes)
        self._make_streams(first)
        arrays = [initial_layers(spec) if resume is None else load_snapshot(resume)[1]
                  for spec, resume in zip(specs, resumes, strict=True)]  # fmt: skip
        shapes: dict[tuple, list[int]] = {}
        for m, spec in enumerate(specs):
            shapes.setdefault((spec.depth, spec.width), []).append(m)
        self.stacks = [self._stack(members, arrays) for members in shapes.values()]
        self.active = np.ones(len(specs), dtype=np.bool_)
        self.errors: list[str | None] = [None] * len(specs)

    def _make_streams(self, first: ExperimentSpec) -> None:
        streams: dict[tuple, int] = {}
        self.stream_of = [streams.setdefault(data_key(spec), len(streams)) for spec in self.specs]
        salt = SAMPLE_SALT if first.optimizer == "gd" else DATA_SALT
        self.stream_specs = [self.specs[self.stream_of.index(s)] for s in range(len(streams))]
        self.keys = [stream_key(spec.seed, salt) for spec in self.stream_specs]
        self.teachers = torch.tensor([spec.teacher for spec in self.stream_specs],
                                     dtype=torch.float64, device=self.device)  # fmt: skip
        self.size = first.n_samples if first.optimizer == "gd" else first.batch_size
        self.fixed = self._sample(0) if first.optimizer == "gd" else None

    def _sample(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stream's batch at `step`: x (streams, n, dim), y (streams, n)."""
        batches = [
            sample(spec, self.teachers[s], self.keys[s], step, self.size, self.dtype)
            for s, spec in enumerate(self.stream_specs)
        ]
        return torch.stack([x for x, _ in batches]), torch.stack([y for _, y in batches])

    def _stack(self, members: list[int], arrays: list[list[np.ndarray]]) -> _Stack:
        like = {"dtype": self.dtype, "device": self.device}
        depth = len(arrays[members[0]])
        layers = [torch.tensor(np.stack([arrays[m][i] for m in members]), **like)
                  for i in range(depth)]  # fmt: skip
        lr = torch.tensor([self.specs[m].lr for m in members], **like).reshape(-1, 1, 1)
        logistic = torch.tensor([self.specs[m].loss == "logistic" for m in members],
                                device=self.device).reshape(-1, 1)  # fmt: skip
        stream = torch.tensor([self.stream_of[m] for m in members], device=self.device)
        return _Stack(members, layers, lr, logistic, stream)

    def advance(self, count: int) -> list[MetricBlock]:
        spec = self.specs[0]
        steps, rows = [], []
        for _ in range(count):
            logs = self.step % spec.log_every == 0 or self.step == spec.steps
            x, y = self.fixed if self.fixed is not None else self._sample(self.step)
            row = torch.full((len(self.specs), len(METRIC_NAMES)), math.nan,
                             dtype=torch.float64, device=self.device)  # fmt: skip
            for stack in self.stacks:
                self._stack_step(stack, x, y, row if logs else None)
            if logs:
                steps.append(self.step)
                rows.append(row)
            if self.step == spec.steps:
                break
            self.step += 1
        self._check_finite()
        empty = np.empty((0, len(self.specs), len(METRIC_NAMES)))
        table = torch.stack(rows).cpu().numpy() if rows else empty
        logged = np.array(steps, dtype=np.int64)
        return [self._block(m, logged, table[:, m]) for m in range(len(self.specs))]

    def _stack_step(self, stack: _Stack, x, y, row: torch.Tensor | None) -> None:
        xs, ys = x[stack.stream], y[stack.stream]  # (members, n, dim), (members, n)
        suffix = [torch.ones(len(stack.members), 1, dtype=self.dtype, device=self.device)]
        for layer in reversed(stack.layers):
            suffix.append(torch.bmm(layer.transpose(1, 2), suffix[-1].unsqueeze(2)).squeeze(2))
        suffix.reverse()
        w = suffix[0]
        margins = ys * torch.bmm(xs, w.unsqueeze(2)).squeeze(2)
        values, slopes = _losses(margins, stack.logistic)
        g = (xs * (slopes * ys).unsqueeze(2)).mean(dim=1)
        if row is not None:
            row[stack.members] = self._metrics(stack, w, values.mean(dim=1), margins)
        if self.step < self.specs[0].steps:
            self._update(stack, suffix, g)

    def _update(self, stack: _Stack, suffix: list[torch.Tensor], g: torch.Tensor) -> None:
        active = torch.tensor(self.active[stack.members], device=self.device).reshape(-1, 1, 1)
        h = g
        for i, layer in enumerate(stack.layers):
            grad = suffix[i + 1].unsqueeze(2) * h.unsqueeze(1)
            h = torch.bmm(layer, h.unsqueeze(2)).squeeze(2)
            layer.sub_(stack.lr * active * grad)

    def _metrics(self, stack: _Stack, w, loss, margins) -> torch.Tensor:
        """One column per metric of the table (core/metrics.py), in its order."""
        teacher = self.teachers[stack.stream]
        w64 = w.double()
        norm = w64.norm(dim=1)
        error = (w64 / norm.unsqueeze(1) - teacher).norm(dim=1)
        angle = 2 * torch.asin(torch.clamp(error / 2, max=1.0))
        accuracy = (margins > 0).double().mean(dim=1)
        values = {
            "directional_error": error,
            "angle": angle,
            "loss": loss.double(),
            "norm": norm,
            "balancedness": self._balancedness(stack),
            "train_loss": loss.double(),  # the batch is the fixed training sample under gd
            "train_accuracy": accuracy,
        }
        return torch.stack([values[name] for name in METRIC_NAMES], dim=1)

    def _balancedness(self, stack: _Stack) -> torch.Tensor:
        layers = [layer.double() for layer in stack.layers]
        gaps = [
            (up.transpose(1, 2) @ up - low @ low.transpose(1, 2)).flatten(1).norm(dim=1)
            for low, up in itertools.pairwise(layers)
        ]
        if not gaps:
            return torch.zeros(len(stack.members), dtype=torch.float64, device=self.device)
        return torch.stack(gaps, dim=1).max(dim=1).values

    def _block(self, m: int, steps: np.ndarray, table: np.ndarray) -> MetricBlock:
        return metric_block(self.metric_names, steps, table, self.step, lambda: self.snapshot(m))

    def _check_finite(self) -> None:
        for stack in self.stacks:
            finite = torch.stack([layer.isfinite().flatten(1).all(dim=1) for layer in stack.layers])
            for local in torch.nonzero(~finite.all(dim=0)).flatten().tolist():
                m = stack.members[local]
                if self.active[m]:
                    self.active[m] = False
                    self.errors[m] = diverged(self.step)

    def layers(self, m: int) -> list[np.ndarray]:
        for stack in self.stacks:
            if m in stack.members:
                local = stack.members.index(m)
                return [layer[local].cpu().numpy() for layer in stack.layers]
        raise KeyError(m)

    def snapshot(self, m: int) -> bytes:
        return save_snapshot(self.step, self.layers(m))


def _losses(margins: torch.Tensor, logistic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss and slope l'(m), logistic or exponential member by member."""
    soft, sigmoid = torch.nn.functional.softplus(-margins), torch.sigmoid(-margins)
    exponential = torch.exp(-margins)
    return torch.where(logistic, soft, exponential), torch.where(logistic, -sigmoid, -exponential)
