"""A counter-based random stream (SplitMix64), identical in numba kernels and in torch.

Every batch is a pure function of (stream key, step), so runs resume exactly from any step
without saved generator state, and members that share a key see the same data. Each step has
its own key, `step_key(key, step)`; within a step the 64-bit words are numbered 0, 1, 2, ...
and word i gives candidate point i of the square (-1, 1)^2 from its high and low 32 bits.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

U = np.uint64
GOLDEN = U(0x9E3779B97F4A7C15)
MIX_1, MIX_2 = U(0xBF58476D1CE4E5B9), U(0x94D049BB133111EB)


@njit(inline="always")
def mix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> U(30))) * MIX_1
    z = (z ^ (z >> U(27))) * MIX_2
    return z ^ (z >> U(31))


@njit(inline="always")
def step_key(key: np.uint64, step: int) -> np.uint64:
    return mix(key + U(step) * GOLDEN)


TWO_TO_MINUS_31 = 1.0 / 2147483648.0
LOW_32 = U(0xFFFFFFFF)


@njit(inline="always")
def square_point(key: np.uint64, counter: int) -> tuple[float, float]:
    """Candidate point `counter` of a step's stream, uniform on the open square (-1, 1)^2."""
    z = mix(key + U(counter) * GOLDEN)
    a = (np.int64(z >> U(32)) + 0.5) * TWO_TO_MINUS_31 - 1.0
    b = (np.int64(z & LOW_32) + 0.5) * TWO_TO_MINUS_31 - 1.0
    return a, b


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


def torch_square_points(key: int, counters: torch.Tensor) -> torch.Tensor:
    """Candidate points number `counters` (int64 tensor) of a step's stream, shape (n, 2)."""
    z = torch_mix(_as_signed(U(key)) + counters * _as_signed(GOLDEN))
    high, low = _shift(z, 32), z & 0xFFFFFFFF
    return (torch.stack([high, low], dim=1).to(torch.float64) + 0.5) * TWO_TO_MINUS_31 - 1.0
