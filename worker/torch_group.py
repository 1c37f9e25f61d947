"""The torch trainer (the CUDA path): the same data stream and algebra as the numba kernels,
member by member, so CPU and CUDA runs agree to float tolerance."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from service.inits import DATA_SALT, SAMPLE_SALT, initial_layers, stream_key
from service.spec import LOGGED_METRICS, ExperimentSpec
from worker import engine, kernels
from worker.rng import torch_square_points, torch_step_key

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


class TorchGroup:
    """Members trained with torch tensors on one device; interface of engine.Group."""

    def __init__(self, specs, resumes, device: torch.device | None = None) -> None:
        self.specs = specs
        first = specs[0]
        self.device = device or engine.resolve_device(first.device)
        self.dtype = getattr(torch, first.dtype)
        self.metric_names = LOGGED_METRICS[first.optimizer]
        self.step = engine._common_step(resumes)
        self.layers = [
            self._initial(spec, resume) for spec, resume in zip(specs, resumes, strict=True)
        ]
        self.teachers = [torch.tensor(s.teacher, dtype=torch.float64, device=self.device)
                         for s in specs]  # fmt: skip
        salt = SAMPLE_SALT if first.optimizer == "gd" else DATA_SALT
        self.keys = [stream_key(spec.seed, salt) for spec in specs]
        self.fixed = (
            [self._batch(m, 0) for m in range(len(specs))] if first.optimizer == "gd" else None
        )
        self.active = np.ones(len(specs), dtype=np.bool_)
        self.errors: list[str | None] = [None] * len(specs)

    def _initial(self, spec, resume) -> list[torch.Tensor]:
        arrays = initial_layers(spec) if resume is None else engine._load_snapshot(resume)[1]
        return [torch.tensor(a, dtype=self.dtype, device=self.device) for a in arrays]

    def _batch(self, m: int, step: int):
        spec = self.specs[m]
        size = spec.n_samples if spec.optimizer == "gd" else spec.batch_size
        return sample(spec, self.teachers[m], self.keys[m], step, size, self.dtype)

    def advance(self, count: int) -> list[engine.MetricBlock]:
        spec = self.specs[0]
        steps, rows = [], [[] for _ in self.specs]
        for _ in range(count):
            logs = self.step % spec.log_every == 0 or self.step == spec.steps
            if logs:
                steps.append(self.step)
            for m in np.flatnonzero(self.active):
                row = self._member_step(m, logs)
                if logs:
                    rows[m].append(row)
            if self.step == spec.steps:
                break
            self.step += 1
        self._check_finite()
        logged = np.array(steps, dtype=np.int64)
        return [self._block(m, logged, rows[m]) for m in range(len(self.specs))]

    def _member_step(self, m: int, logs: bool) -> torch.Tensor | None:
        x, y = self.fixed[m] if self.fixed is not None else self._batch(m, self.step)
        loss, grads, w = engine.loss_and_gradients(self.layers[m], x, y, self.specs[m].loss)
        row = self._metrics(m, w, loss, y * (x @ w)) if logs else None
        if self.step < self.specs[m].steps:
            for layer, grad in zip(self.layers[m], grads, strict=True):
                layer.sub_(self.specs[m].lr * grad)
        return row

    def _metrics(self, m, w, loss, margins) -> torch.Tensor:
        w64 = w.double()
        norm = w64.norm()
        error = (w64 / norm - self.teachers[m]).norm()
        angle = 2 * torch.asin(torch.clamp(error / 2, max=1.0))
        accuracy = (margins > 0).double().mean()
        return torch.stack([error, angle, loss.double(), norm, self._balancedness(m), accuracy])

    def _balancedness(self, m: int) -> torch.Tensor:
        layers = [layer.double() for layer in self.layers[m]]
        gaps = [(up.T @ up - low @ low.T).norm() for low, up in itertools.pairwise(layers)]
        if not gaps:
            return torch.zeros((), dtype=torch.float64, device=self.device)
        return torch.stack(gaps).max()

    def _block(self, m: int, steps: np.ndarray, rows: list) -> engine.MetricBlock:
        table = torch.stack(rows).cpu().numpy() if rows else np.full((len(steps), 6), np.nan)
        columns = dict(zip(kernels.COLUMNS, table.T, strict=True))
        columns["train_loss"], columns["train_accuracy"] = columns["loss"], columns["accuracy"]
        values = {name: np.ascontiguousarray(columns[name]) for name in self.metric_names}
        return engine.MetricBlock(steps, values, self.step, lambda: self.snapshot(m))

    def _check_finite(self) -> None:
        for m in np.flatnonzero(self.active):
            if not all(bool(torch.isfinite(layer).all()) for layer in self.layers[m]):
                self.active[m] = False
                self.errors[m] = (
                    f"training diverged: parameters became non-finite by step {self.step};"
                    " try a smaller lr"
                )

    def snapshot(self, m: int) -> bytes:
        return engine._save_snapshot(self.step, [layer.cpu().numpy() for layer in self.layers[m]])
