"""The population gradient flow of a balanced depth-N linear network (the paper's theory).

For balanced layers the end-to-end vector follows
    dw/dt = -|w|^(2 - 2/N) (g + (N - 1) P_w g),  g = grad_w E[l(y w.x)],  P_w = w w^T / |w|^2,
with t = lr x step.

The expectation. g lies in the plane of w and the teacher v, so only the projection of x on
that plane matters: x's coordinates there are r (cos phi, sin phi) with phi uniform and r
independent of phi. In dim 2 on the sphere r = 1; on the sphere in dim d >= 3, r has density
proportional to r (1 - r^2)^((d-4)/2) on [0, 1]; for Gaussian data r is Rayleigh. The label
y = sign(v.x) depends on phi alone, so on each half circle it is constant and the integrand is
smooth: composite Gauss-Legendre in phi, split where y flips, and in r Gauss-Jacobi (sphere,
absorbing the endpoint weights) or composite Gauss-Legendre on [0, 12] (Gaussian; the tail
beyond holds e^-72 of the mass). The ODE is integrated with DOP853 at rtol 1e-10, atol 1e-13.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import expit, roots_jacobi, roots_legendre

from core.inits import initial_end_to_end
from core.spec import filled_teacher, parse_stored_spec

PHI_PANELS_PER_HALF = 32
PHI_NODES = 16
RADIAL_NODES = 48
GAUSSIAN_RADIUS = 12.0
RTOL, ATOL = 1e-10, 1e-13
THEORY_SECONDS = 3.0
"""Most time the API spends integrating one theory curve."""
THEORY_SEGMENTS = 16
CACHED_CURVES = 256
"""Theory curves the API keeps (each at most a few MB at the largest max_points)."""

Curve = tuple[list[int], list[float]]
"""Steps and the flow's directional error at each."""
CurveKey = tuple[object, ...]
"""What a cached curve is filed under (the API's choice: problem, points, spacing)."""


def loss_value(margins: np.ndarray, loss: str) -> np.ndarray:
    value: np.ndarray = np.logaddexp(0.0, -margins) if loss == "logistic" else np.exp(-margins)
    return value


def loss_slope(margins: np.ndarray, loss: str) -> np.ndarray:
    """l'(m): -1/(1 + e^m) for logistic, -e^(-m) for exponential."""
    slope: np.ndarray = -expit(-margins) if loss == "logistic" else -np.exp(-margins)
    return slope


@lru_cache(maxsize=8)
def _angle_rule() -> tuple[np.ndarray, np.ndarray]:
    """Angles in (0, 2 pi) relative to the first label flip, and weights summing to 1."""
    nodes, weights = roots_legendre(PHI_NODES)
    edges = np.linspace(0.0, 2 * np.pi, 2 * PHI_PANELS_PER_HALF + 1)
    half = (edges[1] - edges[0]) / 2
    centres = (edges[:-1] + edges[1:]) / 2
    phi = (centres[:, None] + half * nodes[None, :]).ravel()
    return phi, np.tile(weights * half / (2 * np.pi), len(centres))


@lru_cache(maxsize=64)
def radial_rule(dim: int, distribution: str) -> tuple[np.ndarray, np.ndarray]:
    """Nodes r and weights (summing to 1) for the length of x's projection on a plane."""
    if distribution == "uniform_sphere" and dim == 2:
        return np.ones(1), np.ones(1)
    if distribution == "uniform_sphere":
        alpha = (dim - 4) / 2
        t, weights = roots_jacobi(RADIAL_NODES, alpha, 1.0)
        r = (1 + t) / 2
        weights = weights * (1 + r) ** alpha
        return r, weights / weights.sum()
    nodes, base = roots_legendre(16)
    edges = np.linspace(0.0, GAUSSIAN_RADIUS, RADIAL_NODES // 16 * 4 + 1)
    half = (edges[1] - edges[0]) / 2
    r = ((edges[:-1] + edges[1:])[:, None] / 2 + half * nodes[None, :]).ravel()
    weights = np.tile(base * half, len(edges) - 1) * r * np.exp(-(r**2) / 2)
    return r, weights / weights.sum()


def _plane(w: np.ndarray, teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Orthonormal e1 = w/|w|, e2 in span(w, v), and v's coordinates (v1, v2 >= 0)."""
    e1 = w / np.linalg.norm(w)
    v1 = float(teacher @ e1)
    rest = teacher - v1 * e1
    v2 = float(np.linalg.norm(rest))
    if v2 > 1e-15:
        e2 = rest / v2
    else:
        e2 = np.zeros_like(w)
        e2[int(np.argmin(np.abs(e1)))] = 1.0
        e2 -= (e2 @ e1) * e1
        e2 /= np.linalg.norm(e2)
    return e1, e2, v1, v2


def _samples(
    w: np.ndarray, teacher: np.ndarray, dim: int, distribution: str
) -> tuple[np.ndarray, ...]:
    """Plane coordinates (a, b) of the quadrature points, labels, weights, e1, e2."""
    e1, e2, v1, v2 = _plane(w, teacher)
    phi, phi_weights = _angle_rule()
    phi = phi + np.arctan2(v2, v1) - np.pi / 2  # the label flips at phi = 0 and pi
    y = np.where(phi - (np.arctan2(v2, v1) - np.pi / 2) < np.pi, 1.0, -1.0)
    r, r_weights = radial_rule(dim, distribution)
    a = np.outer(r, np.cos(phi))
    b = np.outer(r, np.sin(phi))
    return a, b, y[None, :], np.outer(r_weights, phi_weights), e1, e2


def population_gradient(
    w: np.ndarray, teacher: np.ndarray, loss: str, dim: int | None = None,
    distribution: str = "uniform_sphere",
) -> np.ndarray:  # fmt: skip
    """g = E[l'(y w.x) y x], y = sign(v.x), for x uniform on the sphere or standard normal."""
    a, b, y, weights, e1, e2 = _samples(w, teacher, dim or len(w), distribution)
    factor = weights * loss_slope(y * np.linalg.norm(w) * a, loss) * y
    return float((factor * a).sum()) * e1 + float((factor * b).sum()) * e2


def population_loss(
    w: np.ndarray, teacher: np.ndarray, loss: str, dim: int | None = None,
    distribution: str = "uniform_sphere",
) -> float:  # fmt: skip
    a, _b, y, weights, _e1, _e2 = _samples(w, teacher, dim or len(w), distribution)
    return float((weights * loss_value(y * np.linalg.norm(w) * a, loss)).sum())


def flow_velocity(
    w: np.ndarray, depth: int, teacher: np.ndarray, loss: str, distribution: str = "uniform_sphere"
) -> np.ndarray:
    g = population_gradient(w, teacher, loss, len(w), distribution)
    norm_sq = float(w @ w)
    projected = w * (w @ g) / norm_sq
    velocity: np.ndarray = -(norm_sq ** (1.0 - 1.0 / depth)) * (g + (depth - 1) * projected)
    return velocity


class FlowTooSlow(RuntimeError):
    """The integration ran past its deadline (the flow turned stiff, or t is enormous)."""


def integrate_flow(
    w0: np.ndarray, depth: int, teacher: np.ndarray, loss: str, times: np.ndarray,
    distribution: str = "uniform_sphere", deadline: float | None = None,
) -> np.ndarray:  # fmt: skip
    """w(t) at each of `times` (increasing, from times[0] where w = w0). Raises FlowTooSlow
    once time.monotonic() passes `deadline`."""

    def velocity(_t: float, w: np.ndarray) -> np.ndarray:
        if deadline is not None and time.monotonic() > deadline:
            raise FlowTooSlow(f"flow integration ran out of time before t = {times[-1]:g}")
        return flow_velocity(w, depth, teacher, loss, distribution)

    solution = solve_ivp(
        velocity,
        (float(times[0]), float(times[-1])),
        np.asarray(w0, dtype=np.float64),
        method="DOP853",
        t_eval=times,
        rtol=RTOL,
        atol=ATOL,
    )
    if not solution.success:
        raise RuntimeError(f"flow integration failed: {solution.message}")
    path: np.ndarray = solution.y.T
    return path


def directional_error(w: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """|w/|w| - v| row by row."""
    error: np.ndarray = np.linalg.norm(
        w / np.linalg.norm(w, axis=-1, keepdims=True) - teacher, axis=-1
    )
    return error


@dataclass(frozen=True)
class FlowProblem:
    """What a run's flow curve depends on, and nothing else: runs that differ only in name,
    tags, seed (beyond the init it draws), batch size, dtype or device share one curve."""

    depth: int
    distribution: str
    loss: str
    lr: float
    steps: int
    teacher: tuple[float, ...]
    w0: tuple[float, ...]

    @classmethod
    def of(cls, stored: dict[str, Any]) -> FlowProblem:
        """The problem of a stored spec (as the API keeps it)."""
        spec = parse_stored_spec(stored)
        return cls(
            depth=spec.depth,
            distribution=spec.distribution,
            loss=spec.loss,
            lr=spec.lr,
            steps=spec.steps,
            teacher=tuple(filled_teacher(spec)),
            w0=tuple(initial_end_to_end(spec).tolist()),
        )


class CurveCache:
    """The newest `size` curves computed, by (problem, points, spacing); safe across threads."""

    def __init__(self, size: int = CACHED_CURVES) -> None:
        self.size, self._lock = size, threading.Lock()
        self._curves: OrderedDict[CurveKey, Curve] = OrderedDict()

    def get(self, key: CurveKey) -> Curve | None:
        with self._lock:
            if key in self._curves:
                self._curves.move_to_end(key)
            return self._curves.get(key)

    def clear(self) -> None:
        with self._lock:
            self._curves.clear()

    def put(self, key: CurveKey, curve: Curve) -> None:
        with self._lock:
            self._curves[key] = curve
            while len(self._curves) > self.size:
                self._curves.popitem(last=False)


def theory_curve(problem: FlowProblem, points: int, spacing: str) -> Curve:
    """The flow's directional error at up to `points` steps of `problem`, from its initial
    end-to-end vector.

    Integrated a segment at a time within THEORY_SECONDS: if the flow turns too stiff to
    follow (huge lr x steps), the curve stops at the last step reached."""
    steps = curve_steps(problem.steps, points, spacing)
    w, teacher = np.asarray(problem.w0), np.asarray(problem.teacher)
    deadline, path = time.monotonic() + THEORY_SECONDS, [w]
    for segment in np.array_split(np.arange(1, len(steps)), THEORY_SEGMENTS):
        if not len(segment):
            continue
        times = problem.lr * steps[np.concatenate([[segment[0] - 1], segment])]
        try:
            piece = integrate_flow(path[-1], problem.depth, teacher, problem.loss, times,
                                   problem.distribution, deadline)  # fmt: skip
        except FlowTooSlow:
            break
        path.extend(piece[1:])
    return steps[: len(path)].tolist(), directional_error(np.array(path), teacher).tolist()


def curve_steps(total: int, points: int, spacing: str) -> np.ndarray:
    """Up to `points` distinct steps from 0 to `total`, evenly or log-spaced."""
    if spacing == "log":
        inner = np.geomspace(1, total, max(points - 1, 1))
        steps = np.concatenate([[0], inner])
    else:
        steps = np.linspace(0, total, points)
    return np.unique(steps.round().astype(np.int64))
