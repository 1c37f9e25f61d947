"""Gradient training of deep linear networks on spherically symmetric data.

Closed-form forward and backward passes, no autograd. With layers W_1 (width x dim), ...,
W_N (1 x width), the end-to-end vector w = (W_N ... W_1)^T and f(x) = w . x. For a batch mean
loss L = mean l(y w.x) with g = dL/dw = mean l'(y w.x) y x:
    dL/dW_i = s_i h_(i-1)^T,  s_i = (W_N ... W_(i+1))^T,  h_(i-1) = W_(i-1) ... W_1 g,
so two chains of matrix-vector products give every layer's gradient, and s_0 = w.

Runs are trained in groups (`Group`): members sharing dim, dtype, device and data recipe step
together in one compiled call (worker/kernels.py) on the CPU, or as stacked torch tensors on
CUDA (worker/torch_group.py). Data come from a counter-based stream (worker/rng.py) keyed by
the seed, so a member's metrics do not depend on which group it ran in, and members that
differ only in model or optimiser fields (depth, width, init, lr, loss) see the same batches.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from core.inits import DATA_SALT, SAMPLE_SALT, initial_layers, stream_key
from core.spec import LOGGED_METRICS, ExperimentSpec, data_key, group_key
from worker import kernels

BLOCK_SECONDS = 0.05
"""Default time one block of steps should take: the worker checks for cancels, flushes and
checkpoints between blocks (DIRCONV_BLOCK_SECONDS)."""
MAX_BLOCK_STEPS = 4096


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


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EngineError("device 'cuda' requested but this worker has no CUDA device")
    return torch.device(requested)


# -- closed-form passes in torch (the CUDA path, and the reference for the kernels) ------------


def end_to_end(layers: list[torch.Tensor]) -> torch.Tensor:
    """w = (W_N ... W_1)^T as a vector of length dim."""
    return _suffix_chain(layers)[0]


def _suffix_chain(layers: list[torch.Tensor]) -> list[torch.Tensor]:
    """s_i = (W_N ... W_(i+1))^T for i = 0..N; s_N = [1] and s_0 = w."""
    suffix = [torch.ones(1, dtype=layers[0].dtype, device=layers[0].device)]
    for layer in reversed(layers):
        suffix.append(layer.T @ suffix[-1])
    return suffix[::-1]


def loss_and_slope(margins: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example loss l(m) and its derivative l'(m)."""
    if loss == "logistic":
        return torch.nn.functional.softplus(-margins), -torch.sigmoid(-margins)
    values = torch.exp(-margins)
    return values, -values


def loss_and_gradients(
    layers: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Batch-mean loss, dL/dW_i for every layer, and the end-to-end vector w."""
    suffix = _suffix_chain(layers)
    w = suffix[0]
    values, slopes = loss_and_slope(y * (x @ w), loss)
    g = x.T @ (slopes * y) / x.shape[0]
    grads, h = [], g
    for i, layer in enumerate(layers):
        grads.append(torch.outer(suffix[i + 1], h))
        h = layer @ h
    return values.mean(), grads, w


# -- groups -----------------------------------------------------------------------------------


class Group:
    """Members that train together, all at the same step, on the CPU (numba kernels)."""

    def __init__(self, specs: list[ExperimentSpec], resumes: list[bytes | None]) -> None:
        self.specs = specs
        first = specs[0]
        self.dtype = np.float32 if first.dtype == "float32" else np.float64
        self.metric_names = LOGGED_METRICS[first.optimizer]
        layers = [initial_layers(spec) for spec in specs]
        for m, resume in enumerate(resumes):
            if resume is not None:
                layers[m] = load_snapshot(resume)[1]
        self.step = common_step(resumes)
        self._pack(layers)
        self._make_streams(first)
        self.active = np.ones(len(specs), dtype=np.bool_)
        self.errors: list[str | None] = [None] * len(specs)

    def _pack(self, layers: list[list[np.ndarray]]) -> None:
        members, depth_max = len(layers), max(len(member) for member in layers)
        self.depth = np.array([len(member) for member in layers], dtype=np.int64)
        self.rows = np.zeros((members, depth_max), dtype=np.int64)
        self.cols = np.zeros((members, depth_max), dtype=np.int64)
        self.offset = np.zeros((members, depth_max), dtype=np.int64)
        position, self.spans = 0, []
        for m, member in enumerate(layers):
            start = position
            for i, layer in enumerate(member):
                self.rows[m, i], self.cols[m, i] = layer.shape
                self.offset[m, i] = position
                position += layer.size
            self.spans.append((start, position))
        self.params = np.empty(position, dtype=self.dtype)
        for m, member in enumerate(layers):
            for i, layer in enumerate(member):
                self.params[self.offset[m, i] : self.offset[m, i] + layer.size] = layer.ravel()
        self.lr = np.array([spec.lr for spec in self.specs], dtype=np.float64)
        self.loss = np.array(
            [kernels.LOGISTIC if s.loss == "logistic" else kernels.EXPONENTIAL for s in self.specs]
        )

    def _make_streams(self, first: ExperimentSpec) -> None:
        streams: dict[tuple, int] = {}
        self.stream_of = np.array(
            [streams.setdefault(data_key(spec), len(streams)) for spec in self.specs]
        )
        salt = SAMPLE_SALT if first.optimizer == "gd" else DATA_SALT
        by_stream = {index: key for key, index in streams.items()}
        self.keys = np.array(
            [stream_key(by_stream[s][0], salt) for s in range(len(streams))], dtype=np.uint64
        )
        self.teachers = np.array([by_stream[s][1] for s in range(len(streams))])
        size = first.n_samples if first.optimizer == "gd" else first.batch_size
        self.x = np.empty((len(streams), first.dim, size), dtype=self.dtype)
        self.y = np.empty((len(streams), size), dtype=self.dtype)
        self.distribution = (
            kernels.UNIFORM_SPHERE if first.distribution == "uniform_sphere" else kernels.GAUSSIAN
        )
        self.resample = first.optimizer == "sgd"
        if not self.resample:
            for s in range(len(streams)):
                kernels.fill_batch(
                    self.x[s], self.y[s], self.teachers[s], self.keys[s], 0, self.distribution
                )

    def advance(self, count: int) -> list[MetricBlock]:
        """Up to `count` iterations: log when due, then update (the final step only logs)."""
        spec = self.specs[0]
        out = np.full((count + 1, len(self.specs), len(kernels.COLUMNS)), np.nan)
        out_steps = np.empty(count + 1, dtype=np.int64)
        logged, self.step = kernels.train_block(
            self.params, self.offset, self.rows, self.cols, self.depth, self.lr, self.loss,
            self.active, self.stream_of, self.keys, self.teachers, self.x, self.y,
            self.distribution, self.resample, self.step, count, spec.steps, spec.log_every,
            out, out_steps,
        )  # fmt: skip
        self._check_finite()
        steps = out_steps[:logged].copy()
        return [self._block(m, steps, out[:logged, m]) for m in range(len(self.specs))]

    def _block(self, m: int, steps: np.ndarray, table: np.ndarray) -> MetricBlock:
        columns = dict(zip(kernels.COLUMNS, table.T, strict=True))
        columns["train_loss"], columns["train_accuracy"] = columns["loss"], columns["accuracy"]
        values = {name: np.ascontiguousarray(columns[name]) for name in self.metric_names}
        return MetricBlock(steps, values, self.step, lambda: self.snapshot(m))

    def _check_finite(self) -> None:
        for m in np.flatnonzero(self.active):
            start, end = self.spans[m]
            if not np.isfinite(self.params[start:end]).all():
                self.active[m] = False
                self.errors[m] = diverged(self.step)

    def layers(self, m: int) -> list[np.ndarray]:
        return [
            self.params[self.offset[m, i] : self.offset[m, i] + self.rows[m, i] * self.cols[m, i]]
            .reshape(self.rows[m, i], self.cols[m, i])
            .copy()
            for i in range(self.depth[m])
        ]

    def snapshot(self, m: int) -> bytes:
        return save_snapshot(self.step, self.layers(m))


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


# -- driving a run ----------------------------------------------------------------------------


def make_group(specs: list[ExperimentSpec], resumes: list[bytes | None] | None = None):
    """The trainer for `specs` (equal group keys): numba on the CPU, torch on CUDA, or the
    population flow."""
    resumes = resumes or [None] * len(specs)
    if len({group_key(spec) for spec in specs}) != 1:
        raise ValueError("specs with different group keys cannot train together")
    if specs[0].optimizer == "flow":
        from worker.flow_group import FlowGroup

        return FlowGroup(specs, resumes)
    if resolve_device(specs[0].device).type == "cuda":
        from worker.torch_group import TorchGroup

        return TorchGroup(specs, resumes)
    return Group(specs, resumes)


def run_group(
    specs: list[ExperimentSpec],
    on_blocks: Callable[[list[MetricBlock | None]], list[bool]],
    resumes: list[bytes | None] | None = None,
    on_end: Callable[[int, RunResult | EngineError], None] | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> list[RunResult | EngineError]:
    """Train `specs` together to the end. After each block of steps, `on_blocks` gets every
    member's metrics (None for members already done) while the group's state is that of the
    blocks' `step`, and returns per member whether to go on; `on_end(m, outcome)` hears as
    soon as member m is done. Blocks are sized to take about `block_seconds`. Returns each
    member's result, or the EngineError that ended it."""
    group = make_group(specs, resumes)
    tracker = [_Tracker() for _ in specs]
    outcome: list[RunResult | EngineError | None] = [None] * len(specs)
    block_steps, total = 1, specs[0].steps
    while any(result is None for result in outcome):
        started = time.perf_counter()
        count = min(block_steps, total - group.step + 1)
        blocks = group.advance(count)
        block_steps = next_block_steps(count, time.perf_counter() - started, block_seconds)
        live = [
            block if result is None else None for block, result in zip(blocks, outcome, strict=True)
        ]
        keep_going = on_blocks(live)
        for m, block in enumerate(live):
            if block is not None:
                outcome[m] = _after_block(group, m, block, tracker[m], keep_going[m], total)
                if outcome[m] is not None and on_end is not None:
                    on_end(m, outcome[m])
    return outcome


def next_block_steps(steps: int, seconds: float, target_seconds: float) -> int:
    """Steps for the next block, given that the last one did `steps` in `seconds`: as many as
    fit in `target_seconds` at that pace, at most twice as many as before (one fast block may
    be noise), at least one."""
    per_step = seconds / steps
    fitting = int(target_seconds / per_step) if per_step > 0 else MAX_BLOCK_STEPS
    return max(1, min(fitting, 2 * steps, MAX_BLOCK_STEPS))


def _after_block(group, m, block, tracker, keep_going, total) -> RunResult | EngineError | None:
    tracker.add(block)
    if group.errors[m] is not None:
        return EngineError(group.errors[m])
    finished = block.step == total and block.steps[-1:].tolist() == [total]
    if finished or not keep_going:
        group.active[m] = False
        return tracker.result(finished, block.step)
    return None


class _Tracker:
    """The last logged values of one member."""

    def __init__(self) -> None:
        self.final: dict[str, float] = {}

    def add(self, block: MetricBlock) -> None:
        if len(block.steps):
            self.final = {name: float(values[-1]) for name, values in block.values.items()}

    def result(self, completed: bool, step: int) -> RunResult:
        return RunResult(completed, step, self.final)


def run(
    spec: ExperimentSpec, on_block: Callable[[MetricBlock], bool], resume: bytes | None = None
) -> RunResult:
    """Train one run (from a block's snapshot if `resume` is given); a False from `on_block`
    stops it early. Raises EngineError if the run cannot go on."""
    (outcome,) = run_group([spec], lambda blocks: [on_block(blocks[0])], [resume])
    if isinstance(outcome, EngineError):
        raise outcome
    return outcome
