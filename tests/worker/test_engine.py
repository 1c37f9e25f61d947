import itertools
import math

import numpy as np
import pytest
import torch

from service.spec import ExperimentSpec
from worker import engine
from worker.engine import EngineError, Problem, Trainer


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
    shapes = [(width, dim)] + [(width, width)] * (depth - 2) + [(1, width)]
    if depth == 1:
        shapes = [(1, dim)]
    layers = [torch.randn(*s, generator=generator, dtype=torch.float64) * 0.7 for s in shapes]
    teacher = torch.nn.functional.normalize(
        torch.randn(dim, generator=generator, dtype=torch.float64), dim=0
    )
    problem = Problem(teacher, distribution, loss, batch_size=64)
    x, y = engine.sample_batch(problem, dim, generator, dtype=torch.float64)
    value, grads, w = engine.loss_and_gradients(layers, x, y, loss)
    expected_value, expected_grads = _autograd_loss_and_grads(layers, x, y, loss)
    assert torch.allclose(value, expected_value, rtol=1e-12, atol=0)
    for grad, expected in zip(grads, expected_grads, strict=True):
        scale = expected.abs().max()
        assert (grad - expected).abs().max() <= 1e-6 * scale
    product = layers[0].T
    for layer in layers[1:]:
        product = product @ layer.T
    assert torch.allclose(w, product.squeeze(1), rtol=1e-12)


@pytest.mark.parametrize("depth", [1, 2, 4, 7])
@pytest.mark.parametrize("init_vector", [[0.6, 0.8], [3.0, -1.0]])
def test_paper_init_is_balanced_with_the_requested_product(depth, init_vector):
    spec = ExperimentSpec(depth=depth, width=5, init_vector=init_vector)
    layers = engine.paper_init(spec, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert engine.end_to_end(layers).tolist() == pytest.approx(init_vector, rel=1e-12)
    assert [tuple(layer.shape) for layer in layers][:1] == [(1 if depth == 1 else 5, 2)]
    assert tuple(layers[-1].shape) == ((1, 2) if depth == 1 else (1, 5))
    for lower, upper in itertools.pairwise(layers):
        assert torch.allclose(upper.T @ upper, lower @ lower.T, atol=1e-12)


def test_uniform_sphere_samples_are_unit_and_labels_follow_the_teacher():
    problem = Problem(torch.tensor([0.6, 0.8]), "uniform_sphere", "logistic", batch_size=4000)
    x, y = engine.sample_batch(problem, 2, torch.Generator().manual_seed(0))
    assert torch.allclose(x.norm(dim=1), torch.ones(4000))
    assert torch.equal(y, torch.where(x @ problem.teacher >= 0, 1.0, -1.0))
    assert abs(float(y.mean())) < 0.05
    angles = torch.atan2(x[:, 1], x[:, 0])
    counts = torch.histc(angles, bins=8, min=-math.pi, max=math.pi)
    assert counts.min() > 400


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


def test_one_step_matches_a_hand_computed_update():
    spec = ExperimentSpec(depth=1, steps=1, dtype="float64", batch_size=10, lr=0.5)
    trainer = Trainer(spec)
    replay = torch.Generator().manual_seed(engine.stream_seeds(spec.seed)[1])
    x, y = engine.sample_batch(trainer.problem, 2, replay, dtype=torch.float64)
    w = torch.tensor([0.6, 0.8], dtype=torch.float64)
    g = (x * (-torch.sigmoid(-y * (x @ w)) * y)[:, None]).mean(0)
    trainer.advance(1)
    assert torch.allclose(engine.end_to_end(trainer.layers), w - 0.5 * g, rtol=1e-14)


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
        Trainer(ExperimentSpec(device="cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_run_starts_from_the_cpu_state():
    spec = ExperimentSpec(depth=3, steps=20, dtype="float64", batch_size=100)
    cpu, _, _ = _collect(spec.model_copy(update={"device": "cpu"}))
    cuda, _, _ = _collect(spec.model_copy(update={"device": "cuda"}))
    assert cpu["directional_error"][0] == pytest.approx(cuda["directional_error"][0])


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
