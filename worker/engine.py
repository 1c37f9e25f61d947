"""Gradient training of a deep linear network on spherically symmetric data.

Closed-form forward and backward passes, no autograd. With layers W_1 (width x dim), ...,
W_N (1 x width), the end-to-end vector w = (W_N ... W_1)^T and f(x) = w . x. For a batch mean
loss L = mean l(y w.x) with g = dL/dw = mean l'(y w.x) y x:
    dL/dW_i = s_i h_(i-1)^T,  s_i = (W_N ... W_(i+1))^T,  h_(i-1) = W_(i-1) ... W_1 g,
so two chains of matrix-vector products give every layer's gradient, and s_0 = w.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from service.spec import METRIC_NAMES, ExperimentSpec

BLOCK_TARGET_SECONDS = 0.05
MAX_BLOCK_STEPS = 1024


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
    min_directional_error: float


@dataclass
class Problem:
    """What the data and loss look like, as tensors on the run's device."""

    teacher: torch.Tensor
    distribution: str
    loss: str
    batch_size: int


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise EngineError("device 'cuda' requested but this worker has no CUDA device")
    return torch.device(requested)


def stream_seeds(seed: int) -> tuple[int, int]:
    """Independent seeds for the init draws and the data stream of one run."""
    init_state, data_state = np.random.SeedSequence(seed).spawn(2)
    return int(init_state.generate_state(1, np.uint64)[0] >> 1), int(
        data_state.generate_state(1, np.uint64)[0] >> 1
    )


def paper_init(spec: ExperimentSpec, generator: torch.Generator, **like) -> list[torch.Tensor]:
    """W_N = c u_N^T, W_i = c u_(i+1) u_i^T with u_1 = w0/|w0|, c = |w0|^(1/N): balanced, and
    its product is exactly w0 (for |w0| = 1 this is the paper's init verbatim)."""
    w0 = torch.tensor(spec.init_vector, dtype=torch.float64)
    scale = float(w0.norm()) ** (1.0 / spec.depth)
    units = [w0 / w0.norm()] + [
        _unit(torch.randn(spec.width, generator=generator, dtype=torch.float64))
        for _ in range(spec.depth - 1)
    ]
    layers = [torch.outer(units[i + 1], units[i]) for i in range(spec.depth - 1)]
    layers.append(units[-1].reshape(1, -1))
    return [(scale * layer).to(**like) for layer in layers]


def _unit(vector: torch.Tensor) -> torch.Tensor:
    return vector / vector.norm()


def sample_batch(
    problem: Problem, dim: int, generator: torch.Generator, **like
) -> tuple[torch.Tensor, torch.Tensor]:
    """x uniform on the unit sphere (or standard Gaussian), y = sign(v . x) in {-1, +1}."""
    x = torch.randn(problem.batch_size, dim, generator=generator, **like)
    if problem.distribution == "uniform_sphere":
        x = x / x.norm(dim=1, keepdim=True)
    y = torch.where(x @ problem.teacher >= 0, 1.0, -1.0).to(x.dtype)
    return x, y


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


def directional_metrics(w: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Directional error |w/|w| - v|, angle 2 asin(err/2) (exact for small angles), |w|."""
    norm = w.norm()
    error = (w / norm - teacher).norm()
    angle = 2 * torch.asin(torch.clamp(error / 2, max=1.0))
    return error, angle, norm


class Trainer:
    """One run's state: layers, data stream and the step counter."""

    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec
        self.device = resolve_device(spec.device)
        self.like = {"dtype": getattr(torch, spec.dtype), "device": self.device}
        init_seed, data_seed = stream_seeds(spec.seed)
        init_generator = torch.Generator().manual_seed(init_seed)
        self.layers = paper_init(spec, init_generator, **self.like)
        self.data = torch.Generator(device=self.device).manual_seed(data_seed)
        self.problem = Problem(
            teacher=torch.tensor(spec.teacher, **self.like),
            distribution=spec.distribution,
            loss=spec.loss,
            batch_size=spec.batch_size,
        )
        self.step = 0

    def snapshot(self) -> bytes:
        """Parameters, data-stream state and step, as bytes."""
        buffer = io.BytesIO()
        layers = {f"layer_{i}": layer.cpu().numpy() for i, layer in enumerate(self.layers)}
        np.savez(buffer, step=self.step, data_rng=self.data.get_state().numpy(), **layers)
        return buffer.getvalue()

    def restore(self, snapshot: bytes) -> None:
        with np.load(io.BytesIO(snapshot)) as saved:
            self.step = int(saved["step"])
            self.data.set_state(torch.from_numpy(saved["data_rng"].copy()))
            for i, layer in enumerate(self.layers):
                layer.copy_(torch.from_numpy(saved[f"layer_{i}"]))

    def advance(self, count: int) -> MetricBlock:
        """Log metrics at step k and update, for k = step .. step+count-1 (the final step only
        logs). The loss logged at step k is the mean over the fresh batch at the k-th state."""
        rows, steps = [], []
        for _ in range(count):
            x, y = sample_batch(self.problem, self.spec.dim, self.data, **self.like)
            loss, grads, w = loss_and_gradients(self.layers, x, y, self.problem.loss)
            if self._logs(self.step):
                steps.append(self.step)
                rows.append(torch.stack([*directional_metrics(w, self.problem.teacher), loss]))
            if self.step == self.spec.steps:
                break
            for layer, grad in zip(self.layers, grads, strict=True):
                layer.sub_(self.spec.lr * grad)
            self.step += 1
        return self._block(steps, rows)

    def _logs(self, step: int) -> bool:
        return step % self.spec.log_every == 0 or step == self.spec.steps

    def _block(self, steps: list[int], rows: list[torch.Tensor]) -> MetricBlock:
        table = torch.stack(rows).to("cpu", torch.float64).numpy() if rows else np.empty((0, 4))
        error, angle, norm, loss = table.T
        values = {"directional_error": error, "angle": angle, "loss": loss, "norm": norm}
        assert set(values) == set(METRIC_NAMES)
        return MetricBlock(np.asarray(steps, dtype=np.int64), values, self.step, self.snapshot)


def run(
    spec: ExperimentSpec, on_block: Callable[[MetricBlock], bool], resume: bytes | None = None
) -> RunResult:
    """Train `spec` to the end (from a block's snapshot if `resume` is given), handing each
    block of metrics to `on_block`; a False from it stops the run early. Raises EngineError if
    the parameters stop being finite. After a resume, `final` and `min_directional_error`
    cover only the steps run since."""
    trainer = Trainer(spec)
    if resume is not None:
        trainer.restore(resume)
    block_steps, final, min_error = 16, {}, math.inf
    while True:
        started = time.perf_counter()
        block = trainer.advance(min(block_steps, spec.steps - trainer.step + 1))
        if len(block.steps):
            final = {name: float(values[-1]) for name, values in block.values.items()}
            errors = block.values["directional_error"]
            min_error = min(min_error, float(errors[np.isfinite(errors)].min(initial=math.inf)))
        keep_going = on_block(block)
        _check_finite(trainer, block)
        if trainer.step == spec.steps and block.steps[-1:].tolist() == [spec.steps]:
            return RunResult(True, trainer.step, final, min_error)
        if not keep_going:
            return RunResult(False, trainer.step, final, min_error)
        if time.perf_counter() - started < BLOCK_TARGET_SECONDS:
            block_steps = min(2 * block_steps, MAX_BLOCK_STEPS)


def _check_finite(trainer: Trainer, block: MetricBlock) -> None:
    if not all(bool(torch.isfinite(layer).all()) for layer in trainer.layers):
        raise EngineError(
            f"training diverged: parameters became non-finite by step {trainer.step};"
            " try a smaller lr"
        )
