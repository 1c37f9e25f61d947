"""Gradient training of deep linear networks on spherically symmetric data.

Closed-form forward and backward passes, no autograd. With layers W_1 (width x dim), ...,
W_N (1 x width), the end-to-end vector w = (W_N ... W_1)^T and f(x) = w . x. For a batch mean
loss L = mean l(y w.x) with g = dL/dw = mean l'(y w.x) y x:
    dL/dW_i = s_i h_(i-1)^T,  s_i = (W_N ... W_(i+1))^T,  h_(i-1) = W_(i-1) ... W_1 g,
so two chains of matrix-vector products give every layer's gradient, and s_0 = w.

Runs are trained in groups by a trainer (worker/trainers/, picked by its registry): members
sharing dim, dtype, device and data recipe step together in one compiled call
(worker/kernels.py) on the CPU, or as stacked torch tensors on CUDA; optimizer `flow`
integrates the population flow. `run_group` and `run` drive any trainer. Data come from a
counter-based stream (worker/rng.py) keyed by the seed, so a member's metrics do not depend
on which group it ran in, and members that differ only in model or optimiser fields (depth,
width, init, lr, loss) see the same batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from core.settings import BLOCK_SECONDS
from core.spec import ExperimentSpec
from worker.trainers.base import EngineError, MetricBlock, RunResult, Trainer
from worker.trainers.base import resolve_device as resolve_device  # the worker loop's
from worker.trainers.registry import make_trainer

MAX_BLOCK_STEPS = 4096


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


# -- driving a run ----------------------------------------------------------------------------


def run_group(
    specs: list[ExperimentSpec],
    on_blocks: Callable[[list[MetricBlock | None]], list[bool]],
    resumes: list[bytes | None] | None = None,
    on_end: Callable[[list[tuple[int, RunResult | EngineError]]], None] | None = None,
    block_seconds: float = BLOCK_SECONDS,
    threads: int = 1,
) -> list[RunResult | EngineError]:
    """Train `specs` together to the end. After each block of steps, `on_blocks` gets every
    member's metrics (None for members already done) while the group's state is that of the
    blocks' `step`, and returns per member whether to go on; `on_end([(m, outcome), ...])`
    hears of the members done after each block, all at once. Blocks are sized to take about
    `block_seconds`; the members step on up to `threads` threads. Returns each member's
    result, or the EngineError that ended it."""
    group = make_trainer(specs, resumes, threads)
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
        ended = []
        for m, block in enumerate(live):
            if block is not None:
                outcome[m] = _after_block(group, m, block, tracker[m], keep_going[m], total)
                if outcome[m] is not None:
                    ended.append((m, outcome[m]))
        if ended and on_end is not None:
            on_end(ended)
    return outcome


def next_block_steps(steps: int, seconds: float, target_seconds: float) -> int:
    """Steps for the next block, given that the last one did `steps` in `seconds`: as many as
    fit in `target_seconds` at that pace, at most twice as many as before (one fast block may
    be noise), at least one."""
    per_step = seconds / steps
    fitting = int(target_seconds / per_step) if per_step > 0 else MAX_BLOCK_STEPS
    return max(1, min(fitting, 2 * steps, MAX_BLOCK_STEPS))


def _after_block(
    group: Trainer, m: int, block: MetricBlock, tracker: _Tracker, keep_going: bool, total: int
) -> RunResult | EngineError | None:
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
