"""The paper's SGD run for many members on one device, a block of steps captured as one CUDA
graph: members of one shape (depth, width) on the circle (dim 2, uniform_sphere), each
reading the batch of its data stream. Every step (data draw, forward, metrics, update) is a
fixed sequence of tensor operations with no host synchronisation, so on CUDA a block of
`block_steps` steps replays as one graph launch instead of hundreds of kernel launches; on the
CPU the same operations run eagerly (the tests' path). The data stream, the algebra and the
metrics are those of the numba kernels (worker/kernels.py): float64 runs agree with them to
float tolerance.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from core.inits import DATA_SALT, initial_layers, stream_key
from core.spec import ExperimentSpec, data_key
from worker.rng import GOLDEN, TWO_TO_MINUS_31, _as_signed, _shift, torch_mix

GRAPH_METRICS = ("directional_error", "angle", "loss", "norm", "balancedness")
"""The columns of `GraphedSweep.run`'s table, as the kernels log them under sgd."""
BLOCK_STEPS = 32
"""Steps captured in one graph."""
CANDIDATE_MARGIN = 1.1
"""Candidates drawn per step over the expected need: a shortfall (about 10 standard
deviations away for 1,000 points) is detected, never silently wrong."""


class GraphedSweep:
    """Members stepping together; `run(steps)` returns their metrics, one row per step."""

    def __init__(
        self, specs: list[ExperimentSpec], device: torch.device, block_steps: int = BLOCK_STEPS
    ) -> None:
        _check(specs)
        self.device, self.dtype = device, getattr(torch, specs[0].dtype)
        self.block_steps, self.size = block_steps, specs[0].batch_size
        like = {"dtype": self.dtype, "device": device}
        arrays = [initial_layers(spec) for spec in specs]
        self.layers = [torch.tensor(np.stack([member[i] for member in arrays]), **like)
                       for i in range(len(arrays[0]))]  # fmt: skip
        self.lr = torch.tensor([spec.lr for spec in specs], **like).reshape(-1, 1, 1)
        logistic = [spec.loss == "logistic" for spec in specs]
        self.logistic = torch.tensor(logistic, device=device).reshape(-1, 1)
        self._make_streams(specs)
        self.step = torch.zeros((), dtype=torch.int64, device=device)
        self.short = torch.zeros((), dtype=torch.bool, device=device)
        self.table = torch.empty((block_steps, len(specs), len(GRAPH_METRICS)),
                                 dtype=torch.float64, device=device)  # fmt: skip
        self.graph: torch.cuda.CUDAGraph | None = None

    def _make_streams(self, specs: list[ExperimentSpec]) -> None:
        streams: dict[tuple, int] = {}
        stream_of = [streams.setdefault(data_key(spec), len(streams)) for spec in specs]
        firsts = [specs[stream_of.index(s)] for s in range(len(streams))]
        keys = [_as_signed(np.uint64(stream_key(spec.seed, DATA_SALT))) for spec in firsts]
        self.keys = torch.tensor(keys, dtype=torch.int64, device=self.device).reshape(-1, 1)
        self.teachers = torch.tensor([spec.teacher for spec in firsts], dtype=torch.float64,
                                     device=self.device)  # fmt: skip
        self.stream_of = torch.tensor(stream_of, device=self.device)
        self.member_teachers = self.teachers[self.stream_of]
        count = int(self.size / (math.pi / 4) * CANDIDATE_MARGIN) + 64
        self.counters = torch.arange(count, device=self.device).reshape(1, -1)

    # One step, as fixed tensor operations

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stream's batch at `self.step`: the first `size` points of the step's stream
        that fall in the unit disk, their angle doubled onto the circle (as kernels.fill_batch
        draws them), and labels from the float64 points."""
        step_keys = torch_mix(self.keys + self.step * _as_signed(GOLDEN))
        z = torch_mix(step_keys + self.counters * _as_signed(GOLDEN))
        a = (_shift(z, 32).double() + 0.5) * TWO_TO_MINUS_31 - 1.0
        b = ((z & 0xFFFFFFFF).double() + 0.5) * TWO_TO_MINUS_31 - 1.0
        r2 = a * a + b * b
        inside = r2 < 1.0
        rank = torch.cumsum(inside, dim=1) - 1
        self.short |= (rank[:, -1] < self.size - 1).any()
        # accepted point k goes to row k; the rest to a scratch row past the end
        rows = torch.where(inside & (rank < self.size), rank, self.size)
        inverse = 1.0 / r2  # as the kernel computes them, bit for bit
        points = torch.stack([(a * a - b * b) * inverse, 2.0 * a * b * inverse], dim=2)
        batch = torch.zeros((len(self.keys), self.size + 1, 2), dtype=torch.float64,
                            device=self.device)  # fmt: skip
        batch.scatter_(1, rows.unsqueeze(2).expand(-1, -1, 2), points)
        x64 = batch[:, : self.size]
        t = self.teachers.unsqueeze(1)
        y = torch.where(x64[..., 0] * t[..., 0] + x64[..., 1] * t[..., 1] >= 0.0, 1.0, -1.0)
        return x64.to(self.dtype)[self.stream_of], y.to(self.dtype)[self.stream_of]

    def _one_step(self, row: int) -> None:
        """Log the metrics of `self.step` into table[row], then update (kernels' order)."""
        x, y = self._draw()
        suffix = [torch.ones((len(self.lr), 1), dtype=self.dtype, device=self.device)]
        for layer in reversed(self.layers):
            suffix.append(torch.bmm(layer.transpose(1, 2), suffix[-1].unsqueeze(2)).squeeze(2))
        suffix.reverse()
        w = suffix[0]
        margins = y * torch.bmm(x, w.unsqueeze(2)).squeeze(2)
        exponential = torch.exp(-margins)
        losses = torch.where(self.logistic, torch.nn.functional.softplus(-margins), exponential)
        slopes = torch.where(self.logistic, -torch.sigmoid(-margins), -exponential)
        g = (x * (slopes * y).unsqueeze(2)).mean(dim=1)
        self.table[row] = self._metrics(w, losses.double().mean(dim=1))
        h = g
        for i, layer in enumerate(self.layers):
            grad = suffix[i + 1].unsqueeze(2) * h.unsqueeze(1)
            h = torch.bmm(layer, h.unsqueeze(2)).squeeze(2)
            layer.sub_(self.lr * grad)
        self.step += 1

    def _metrics(self, w: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        w64 = w.double()
        norm = w64.norm(dim=1)
        error = (w64 / norm.unsqueeze(1) - self.member_teachers).norm(dim=1)
        angle = 2.0 * torch.asin(torch.clamp(error / 2.0, max=1.0))
        return torch.stack([error, angle, loss, norm, self._balancedness()], dim=1)

    def _balancedness(self) -> torch.Tensor:
        layers = [layer.double() for layer in self.layers]
        gaps = [torch.zeros(len(self.lr), dtype=torch.float64, device=self.device)]
        for low, up in itertools.pairwise(layers):
            gap = up.transpose(1, 2) @ up - low @ low.transpose(1, 2)
            gaps.append(gap.flatten(1).norm(dim=1))
        return torch.stack(gaps, dim=1).max(dim=1).values

    def _block(self) -> None:
        for row in range(self.block_steps):
            self._one_step(row)

    # Driving

    def capture(self) -> None:
        """Record one block as a CUDA graph (a no-op off CUDA). The warm-up steps it needs
        are undone: the state is that of before."""
        if self.device.type != "cuda":
            return
        saved = [tensor.clone() for tensor in (*self.layers, self.step, self.short)]
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._block()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._block()
        with torch.no_grad():
            for tensor, value in zip((*self.layers, self.step, self.short), saved, strict=True):
                tensor.copy_(value)

    def run(self, steps: int) -> np.ndarray:
        """`steps` steps (a multiple of `block_steps`); their metrics as a float64 array
        (steps, members, GRAPH_METRICS), row k the state at step k of this run."""
        if steps % self.block_steps:
            raise ValueError(f"steps must be a multiple of {self.block_steps}")
        blocks = steps // self.block_steps
        pinned = self.device.type == "cuda"
        history = torch.empty((blocks, *self.table.shape), dtype=torch.float64,
                              pin_memory=pinned)  # fmt: skip
        with torch.no_grad():
            for block in range(blocks):
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self._block()
                history[block].copy_(self.table, non_blocking=pinned)
        if pinned:
            torch.cuda.synchronize(self.device)
        if bool(self.short):
            raise RuntimeError("a step drew too few candidate points; raise CANDIDATE_MARGIN")
        return history.reshape(steps, *self.table.shape[1:]).numpy()


def _check(specs: list[ExperimentSpec]) -> None:
    first = specs[0]
    shared = {(s.depth, s.width, s.batch_size, s.dtype) for s in specs}
    if len(shared) != 1 or any(
        (s.optimizer, s.dim, s.distribution) != ("sgd", 2, "uniform_sphere") for s in specs
    ):
        raise ValueError(
            "GraphedSweep takes sgd members on the circle of one depth, width, batch_size and "
            f"dtype (the first is depth {first.depth}, width {first.width})"
        )
