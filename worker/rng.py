"""A counter-based random stream (SplitMix64), identical in numba kernels and in torch.

Every batch is a pure function of (stream key, step), so runs resume exactly from any step
without saved generator state, and members that share a key see the same data. Each step has
its own key, `step_key(key, step)`; within a step the uniforms are numbered 0, 1, 2, ...
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

U = np.uint64
GOLDEN = U(0x9E3779B97F4A7C15)
MIX_1, MIX_2 = U(0xBF58476D1CE4E5B9), U(0x94D049BB133111EB)
TWO_TO_MINUS_53 = 1.0 / 9007199254740992.0


@njit(inline="always")
def mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> U(30))) * MIX_1
    z = (z ^ (z >> U(27))) * MIX_2
    return z ^ (z >> U(31))


@njit(inline="always")
def step_key(key: np.uint64, step: int) -> np.uint64:
    return mix(key + U(step) * GOLDEN)


@njit(inline="always")
def uniform(key: np.uint64, counter: int) -> float:
    """The `counter`-th uniform of a step's stream, in the open interval (0, 1)."""
    return (float(mix(key + U(counter) * GOLDEN) >> U(11)) + 0.5) * TWO_TO_MINUS_53


# The same arithmetic on torch int64 tensors (multiplication wraps; shifts must be logical).
def _as_signed(value: np.uint64) -> int:
    return int(value) - (1 << 64) if int(value) >= 1 << 63 else int(value)


def _shift(z: torch.Tensor, bits: int) -> torch.Tensor:
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def torch_mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shift(z, 30)) * _as_signed(MIX_1)
    z = (z ^ _shift(z, 27)) * _as_signed(MIX_2)
    return z ^ _shift(z, 31)


def torch_step_key(key: int, step: int) -> int:
    return int(step_key(U(key), step))


def torch_uniform(key: int, counters: torch.Tensor) -> torch.Tensor:
    """Uniforms number `counters` (int64 tensor) of a step's stream, as float64."""
    z = torch_mix(_as_signed(U(key)) + counters * _as_signed(GOLDEN))
    return (_shift(z, 11).to(torch.float64) + 0.5) * TWO_TO_MINUS_53
