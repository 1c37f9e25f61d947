"""A lone run with a spare thread draws its batches ahead (worker/trainers/prefetch.py): its
metrics and snapshots are bit for bit those of the run drawing every batch itself."""

from __future__ import annotations

import numpy as np
import pytest

from core.spec import ExperimentSpec
from worker import engine, kernels
from worker.trainers import prefetch
from worker.trainers.numba_group import Group


def _run(spec: ExperimentSpec, threads: int, resume: bytes | None = None):  # noqa: ANN202
    """Every logged value of every metric, and the snapshot after each block."""
    logged: dict[str, list[float]] = {}
    snapshots: dict[int, bytes] = {}

    def on_blocks(blocks):  # noqa: ANN001, ANN202
        (block,) = blocks
        for name, values in block.values.items():
            logged.setdefault(name, []).extend(values.tolist())
        logged.setdefault("step", []).extend(block.steps.tolist())
        snapshots[block.step] = block.snapshot()
        return [True]

    engine.run_group([spec], on_blocks, [resume], block_seconds=0.002, threads=threads)
    return logged, snapshots


@pytest.fixture(autouse=True)
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows of 7 steps, so every run crosses many window borders mid-block."""
    monkeypatch.setattr(prefetch, "MAX_WINDOW_STEPS", 7)


@pytest.mark.parametrize(
    "spec",
    [
        ExperimentSpec(depth=4, steps=300, batch_size=100),
        ExperimentSpec(depth=3, steps=211, log_every=13, dtype="float32", batch_size=64),
        ExperimentSpec(dim=5, distribution="gaussian", width=3, steps=90, batch_size=33),
        ExperimentSpec(dim=3, loss="exponential", steps=50, batch_size=10),
    ],
    ids=["paper-like", "float32-log13", "gaussian-dim5", "sphere-dim3"],
)
def test_batches_drawn_ahead_give_the_metrics_of_batches_drawn_inline(spec):
    assert Group([spec], [None], threads=2).prefetch is not None
    assert Group([spec], [None], threads=1).prefetch is None
    inline, _ = _run(spec, threads=1)
    ahead, _ = _run(spec, threads=2)
    assert ahead == inline
    assert ahead["step"] == list(range(0, spec.steps + 1, spec.log_every)) + (
        [spec.steps] if spec.steps % spec.log_every else []
    )


def test_a_run_resumed_mid_window_goes_on_as_it_would_have():
    spec = ExperimentSpec(depth=2, steps=120, batch_size=50)
    whole, snapshots = _run(spec, threads=2)
    step = next(step for step in snapshots if 0 < step < 100 and step % 7)
    resumed, _ = _run(spec, threads=2, resume=snapshots[step])
    assert resumed["directional_error"] == whole["directional_error"][step:]


def test_a_window_holds_whole_batches_within_its_byte_budget():
    assert prefetch.window_steps(1, 2, 1000, 8) == 7  # the fixture's cap
    assert prefetch.window_steps(4, 1000, 10_000, 8) == 1  # one huge batch: still one step
    steps = prefetch.window_steps(2, 10, 1000, 8)
    assert steps * 2 * 11 * 1000 * 8 <= prefetch.WINDOW_BYTES


def test_drawn_ahead_batches_are_those_of_fill_batch():
    keys, teachers = np.array([3, 99], np.uint64), np.array([[0.0, 1.0], [0.6, 0.8]])
    x, y = np.empty((4, 2, 2, 40)), np.empty((4, 2, 40))
    kernels.draw_block(x, y, keys, teachers, kernels.UNIFORM_SPHERE, 17)
    for slot in range(4):
        for stream in range(2):
            one_x, one_y = np.empty((2, 40)), np.empty(40)
            kernels.fill_batch(
                one_x, one_y, teachers[stream], keys[stream], 17 + slot, kernels.UNIFORM_SPHERE
            )
            assert np.array_equal(x[slot, stream], one_x) and np.array_equal(y[slot, stream], one_y)
