import itertools
import math
import threading
import time

import numpy as np
import pytest
import scipy.stats
import torch

from core import inits
from core.spec import ExperimentSpec
from worker import engine, kernels
from worker.engine import EngineError
from worker.trainers.numba_group import Group
from worker.trainers.torch_group import TorchGroup


def _autograd_loss_and_grads(layers, x, y, loss):
    params = [layer.clone().requires_grad_(True) for layer in layers]
    out = x
    for layer in params:
        out = out @ layer.T
    margins = y * out.squeeze(1)
    if loss == "logistic":
        value = torch.nn.functional.softplus(-margins).mean()
    else:
        value = torch.exp(-margins).mean()
    value.backward()
    return value.detach(), [p.grad for p in params]


CASES = list(
    itertools.product(
        [1, 2, 3, 6],
        [1, 3, 8],
        [2, 5, 8],
        ["logistic", "exponential"],
        ["uniform_sphere", "gaussian"],
    )
)


@pytest.mark.parametrize(("depth", "width", "dim", "loss", "distribution"), CASES)
def test_closed_form_gradients_match_autograd(depth, width, dim, loss, distribution):
    generator = torch.Generator().manual_seed(depth * 100 + width * 10 + dim)
    shapes = inits.layer_shapes(depth, width, dim)
    layers = [torch.randn(*s, generator=generator, dtype=torch.float64) * 0.7 for s in shapes]
    x = torch.randn(64, dim, generator=generator, dtype=torch.float64)
    if distribution == "uniform_sphere":
        x = x / x.norm(dim=1, keepdim=True)
    y = torch.where(x[:, 0] >= 0, 1.0, -1.0).to(torch.float64)
    value, grads, w = engine.loss_and_gradients(layers, x, y, loss)
    expected_value, expected_grads = _autograd_loss_and_grads(layers, x, y, loss)
    assert torch.allclose(value, expected_value, rtol=1e-12, atol=0)
    for grad, expected in zip(grads, expected_grads, strict=True):
        assert (grad - expected).abs().max() <= 1e-6 * expected.abs().max()
    product = layers[0].T
    for layer in layers[1:]:
        product = product @ layer.T
    assert torch.allclose(w, product.squeeze(1), rtol=1e-12)


KERNEL_CASES = [
    {"depth": 1},
    {"depth": 4},
    {"depth": 3, "width": 5, "dim": 3, "loss": "exponential"},
    {"depth": 2, "dim": 4, "distribution": "gaussian", "init": "gaussian", "init_scale": 0.5},
    {"depth": 5, "width": 1, "init": "balanced", "init_scale": 2.0},
    {"depth": 3, "width": 9},
    {"depth": 2, "optimizer": "gd", "n_samples": 64, "dim": 3},
]


@pytest.mark.parametrize("fields", KERNEL_CASES)
def test_numba_kernels_match_the_torch_closed_form(fields):
    spec = ExperimentSpec(steps=40, log_every=7, dtype="float64", **fields)
    kernel = Group([spec], [None]).advance(50)[0]
    reference = TorchGroup([spec], [None], device=torch.device("cpu")).advance(50)[0]
    assert kernel.steps.tolist() == reference.steps.tolist() == [0, 7, 14, 21, 28, 35, 40]
    assert set(kernel.values) == set(reference.values)
    for name, values in kernel.values.items():
        assert np.allclose(values, reference.values[name], rtol=1e-12, atol=1e-14), name


def test_float32_kernels_agree_with_torch_to_float_tolerance():
    spec = ExperimentSpec(depth=3, steps=200, log_every=50)
    kernel = Group([spec], [None]).advance(300)[0]
    reference = TorchGroup([spec], [None], device=torch.device("cpu")).advance(300)[0]
    for name, values in kernel.values.items():
        assert np.allclose(values, reference.values[name], rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize("depth", [1, 2, 4, 7])
@pytest.mark.parametrize("init_vector", [[0.6, 0.8], [3.0, -1.0]])
def test_paper_init_is_balanced_with_the_requested_product(depth, init_vector):
    spec = ExperimentSpec(depth=depth, width=5, init_vector=init_vector)
    layers = [torch.from_numpy(a) for a in inits.initial_layers(spec)]
    assert engine.end_to_end(layers).tolist() == pytest.approx(init_vector, rel=1e-12)
    assert [tuple(layer.shape) for layer in layers] == inits.layer_shapes(depth, 5, 2)
    for lower, upper in itertools.pairwise(layers):
        assert torch.allclose(upper.T @ upper, lower @ lower.T, atol=1e-12)


def test_balanced_init_has_the_requested_scale_and_gaussian_init_its_spread():
    balanced = ExperimentSpec(depth=3, init="balanced", init_scale=2.5, seed=4)
    w = engine.end_to_end([torch.from_numpy(a) for a in inits.initial_layers(balanced)])
    assert float(w.norm()) == pytest.approx(2.5, rel=1e-12)
    gaussian = ExperimentSpec(depth=2, width=400, init="gaussian", init_scale=0.3)
    entries = np.concatenate([a.ravel() for a in inits.initial_layers(gaussian)])
    assert entries.std() == pytest.approx(0.3, rel=0.05)


def _batch(dim, distribution, size=20_000, teacher=None):
    teacher = np.asarray(teacher if teacher is not None else np.eye(dim)[-1], dtype=np.float64)
    x, y = np.empty((dim, size)), np.empty(size)
    kernels.fill_batch(x, y, teacher, np.uint64(12345), 3, DISTRIBUTIONS[distribution])
    return x.T, y, teacher


DISTRIBUTIONS = {"uniform_sphere": kernels.UNIFORM_SPHERE, "gaussian": kernels.GAUSSIAN}


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_sphere_samples_are_unit_and_uniform(dim):
    x, y, teacher = _batch(dim, "uniform_sphere")
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0)
    assert np.array_equal(y, np.where(x @ teacher >= 0, 1.0, -1.0))
    # Each coordinate of a uniform point on S^(d-1) has mean 0 and variance 1/d.
    assert np.abs(x.mean(axis=0)).max() < 0.02
    assert np.allclose(x.var(axis=0), 1 / dim, rtol=0.05)
    if dim == 2:
        angles = np.arctan2(x[:, 1], x[:, 0])
        assert scipy.stats.kstest(angles, scipy.stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


@pytest.mark.parametrize("dim", [2, 5])
def test_gaussian_samples_are_standard_normal(dim):
    x, _y, _teacher = _batch(dim, "gaussian")
    assert np.abs(x.mean(axis=0)).max() < 0.03
    assert np.allclose(np.cov(x.T), np.eye(dim), atol=0.04)
    assert scipy.stats.kstest(x[:, 0], "norm").pvalue > 1e-3


def test_batches_differ_by_step_and_repeat_by_key():
    first, _, _ = _batch(2, "uniform_sphere", 100)
    again, _, _ = _batch(2, "uniform_sphere", 100)
    other = np.empty((2, 100))
    kernels.fill_batch(other, np.empty(100), np.array([0.0, 1.0]), np.uint64(12345), 4, 0)
    other = other.T
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def _collect(spec: ExperimentSpec) -> tuple[dict[str, np.ndarray], np.ndarray, engine.RunResult]:
    steps, values = [], {}

    def on_block(block):
        steps.extend(block.steps.tolist())
        for name, series in block.values.items():
            values.setdefault(name, []).extend(series.tolist())
        return True

    result = engine.run(spec, on_block)
    return {k: np.array(v) for k, v in values.items()}, np.array(steps), result


def test_step_zero_is_the_initial_state_and_log_every_keeps_the_last_step():
    values, steps, result = _collect(ExperimentSpec(depth=3, steps=25, log_every=10))
    assert steps.tolist() == [0, 10, 20, 25]
    assert values["directional_error"][0] == pytest.approx(0.632456, abs=1e-6)
    assert values["angle"][0] == pytest.approx(math.atan2(0.6, 0.8), abs=1e-6)
    assert values["norm"][0] == pytest.approx(1.0, abs=1e-6)
    assert result.completed and result.steps_done == 25
    assert result.final["directional_error"] == values["directional_error"][-1]


def test_same_spec_gives_identical_metrics_and_another_seed_differs():
    spec = ExperimentSpec(depth=2, steps=50, seed=3)
    first, _, _ = _collect(spec)
    again, _, _ = _collect(spec)
    other, _, _ = _collect(spec.model_copy(update={"seed": 4}))
    for name in first:
        assert np.array_equal(first[name], again[name])
    assert not np.array_equal(first["loss"], other["loss"])


def test_metrics_of_a_deep_run_are_consistent():
    values, _, _ = _collect(ExperimentSpec(depth=4, steps=200, log_every=50, dtype="float64"))
    assert np.allclose(2 * np.arcsin(values["directional_error"] / 2), values["angle"])
    assert np.all(np.diff(values["norm"]) > 0)
    assert np.all(np.diff(values["directional_error"]) < 0)


def test_on_block_can_stop_a_run_early():
    result = engine.run(ExperimentSpec(steps=100_000), lambda block: False)
    assert not result.completed and 0 < result.steps_done < 100_000


def test_diverging_run_raises_a_clear_error():
    with pytest.raises(EngineError, match="diverged"):
        engine.run(
            ExperimentSpec(depth=3, lr=1e30, steps=100, loss="exponential"), lambda block: True
        )


def test_cuda_request_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EngineError, match="cuda"):
        engine.run(ExperimentSpec(device="cuda", steps=5), lambda block: True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_the_cpu_kernels():
    spec = ExperimentSpec(depth=3, steps=200, log_every=20, dtype="float64")
    cpu, _, _ = _collect(spec.model_copy(update={"device": "cpu"}))
    cuda, _, _ = _collect(spec.model_copy(update={"device": "cuda"}))
    for name in cpu:
        assert np.allclose(cpu[name], cuda[name], rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resuming_from_a_snapshot_repeats_the_uninterrupted_run_exactly(dtype):
    spec = ExperimentSpec(depth=3, steps=300, log_every=7, dtype=dtype)
    whole, whole_steps, _ = _collect(spec)
    snapshots = []

    def stop_after_first_block(block):
        snapshots.append((block.step, block.snapshot(), block.steps.tolist()))
        return False

    engine.run(spec, stop_after_first_block)
    step, snapshot, first_steps = snapshots[0]
    steps, values = list(first_steps), {name: [] for name in whole}

    def on_block(block):
        steps.extend(block.steps.tolist())
        for name, series in block.values.items():
            values[name].extend(series.tolist())
        return True

    engine.run(spec, on_block, resume=snapshot)
    assert 0 < step < 300
    assert steps == whole_steps.tolist()
    for name in whole:
        assert np.array_equal(whole[name][len(first_steps) :], np.array(values[name]))


def test_vectorisable_exp_and_reciprocal_are_exact_to_an_ulp():
    for t in np.concatenate([np.linspace(0, 40, 4001), np.geomspace(1e-12, 700, 500)]):
        assert kernels.exp_neg(t) == pytest.approx(math.exp(-t), rel=4.5e-16, abs=0)
    for d in np.linspace(1.0, 2.0, 1001):
        assert kernels._reciprocal(d) == pytest.approx(1.0 / d, rel=2.3e-16, abs=0)


def test_stacked_torch_group_matches_the_kernels_member_by_member():
    base = {"steps": 30, "log_every": 6, "dtype": "float64", "dim": 3, "batch_size": 200}
    variants = [
        {"depth": 1}, {"depth": 3, "width": 4}, {"depth": 3, "width": 4, "loss": "exponential"},
        {"depth": 3, "width": 4, "seed": 7, "lr": 0.01}, {"depth": 2, "width": 2, "seed": 7},
    ]  # fmt: skip
    specs = [ExperimentSpec(**base, **variant) for variant in variants]
    kernel = Group(specs, [None] * len(specs)).advance(40)
    stacked = TorchGroup(specs, [None] * len(specs), device=torch.device("cpu"))
    assert len(stacked.stacks) == 3
    reference = stacked.advance(40)
    for ours, theirs in zip(kernel, reference, strict=True):
        assert ours.steps.tolist() == theirs.steps.tolist()
        for name, values in ours.values.items():
            assert np.allclose(values, theirs.values[name], rtol=1e-12, atol=1e-14), name


def test_blocks_fit_the_target_time_grow_at_most_twofold_and_shrink_after_an_overrun():
    assert engine.next_block_steps(1, 0.001, target_seconds=0.05) == 2
    assert engine.next_block_steps(64, 0.01, target_seconds=0.05) == 128
    assert engine.next_block_steps(100, 0.1, target_seconds=0.05) == 50
    assert engine.next_block_steps(16, 20.0, target_seconds=1.0) == 1
    assert engine.next_block_steps(4096, 0.0, target_seconds=1.0) == engine.MAX_BLOCK_STEPS


def _group_series(specs, block_seconds):
    series = [{} for _ in specs]

    def on_blocks(blocks):
        for member, block in zip(series, blocks, strict=True):
            for name, values in block.values.items() if block else ():
                member.setdefault(name, []).extend(values.tolist())
        return [True] * len(blocks)

    engine.run_group(specs, on_blocks, block_seconds=block_seconds)
    return series


def test_metrics_do_not_depend_on_block_sizes():
    specs = [ExperimentSpec(depth=depth, steps=300, batch_size=50, seed=4) for depth in (1, 3)]
    one_step_blocks = _group_series(specs, block_seconds=1e-9)
    long_blocks = _group_series(specs, block_seconds=10.0)
    assert len(one_step_blocks[1]["norm"]) == 301
    assert one_step_blocks == long_blocks


def test_a_computing_kernel_lets_other_threads_run():
    # dim 1000 x width 1000 x depth 3: the logged balancedness alone takes about a second.
    group = Group([ExperimentSpec(dim=1000, width=1000, depth=3, steps=2)], [None])
    group.advance(1)  # loading the compiled kernels lets threads run anyway: do it first
    computing = threading.Thread(target=group.advance, args=(1,))
    ticks = 0
    computing.start()
    while computing.is_alive():
        ticks += 1
        time.sleep(0.001)
    # A kernel holding the GIL lets this loop tick about once (measured: 1 tick, vs 1959).
    assert ticks > 50
