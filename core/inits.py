"""Initial layers of a run, drawn with numpy from the run's seed.

Shared by the worker (which trains from them) and the service (whose theory curves start
from the same end-to-end vector), so both sides derive them in exactly one way.
"""

from __future__ import annotations

import numpy as np

from core.spec import ExperimentSpec, filled_width

INIT_SALT, DATA_SALT, SAMPLE_SALT = 1, 2, 3


def stream_key(seed: int, salt: int) -> int:
    """A 64-bit key for one purpose (`salt`) of one seed."""
    return int(np.random.SeedSequence([seed, salt]).generate_state(1, np.uint64)[0])


def layer_shapes(depth: int, width: int, dim: int) -> list[tuple[int, int]]:
    if depth == 1:
        return [(1, dim)]
    return [(width, dim)] + [(width, width)] * (depth - 2) + [(1, width)]


def initial_layers(spec: ExperimentSpec) -> list[np.ndarray]:
    """The layers W_1..W_N in float64, drawn from the seed's init stream."""
    rng = np.random.default_rng(stream_key(spec.seed, INIT_SALT))
    width = filled_width(spec)
    shapes = layer_shapes(spec.depth, width, spec.dim)
    if spec.init == "gaussian":
        return [spec.init_scale * rng.standard_normal(shape) for shape in shapes]
    if spec.init == "paper":
        w0 = np.asarray(spec.init_vector, dtype=np.float64)
    else:
        w0 = spec.init_scale * _unit(rng.standard_normal(spec.dim))
    return balanced_layers(w0, [_unit(rng.standard_normal(width)) for _ in shapes[1:]])


def initial_end_to_end(spec: ExperimentSpec) -> np.ndarray:
    """w_e(0) = (W_N ... W_1)^T of `initial_layers(spec)`, without building the layers (for
    the balanced inits, whose product is w0 by construction)."""
    if spec.init == "paper":
        return np.asarray(spec.init_vector, dtype=np.float64)
    if spec.init == "balanced":
        rng = np.random.default_rng(stream_key(spec.seed, INIT_SALT))
        return spec.init_scale * _unit(rng.standard_normal(spec.dim))
    return end_to_end(initial_layers(spec))


def balanced_layers(w0: np.ndarray, hidden_units: list[np.ndarray]) -> list[np.ndarray]:
    """W_N = c u_N^T, W_i = c u_(i+1) u_i^T with u_1 = w0/|w0|, c = |w0|^(1/N): balanced, with
    product exactly w0 (for |w0| = 1 and the paper's w0 this is the paper's init verbatim)."""
    units = [_unit(w0), *hidden_units]
    scale = float(np.linalg.norm(w0)) ** (1.0 / len(units))
    layers = [np.outer(units[i + 1], units[i]) for i in range(len(units) - 1)]
    layers.append(units[-1].reshape(1, -1))
    return [scale * layer for layer in layers]


def end_to_end(layers: list[np.ndarray]) -> np.ndarray:
    """w = (W_N ... W_1)^T."""
    product = layers[0].T
    for layer in layers[1:]:
        product = product @ layer.T
    return product[:, 0]


def _unit(vector: np.ndarray) -> np.ndarray:
    unit: np.ndarray = vector / np.linalg.norm(vector)
    return unit
