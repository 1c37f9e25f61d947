"""The population gradient flow of a balanced depth-N linear network (the paper's theory).

For balanced layers the end-to-end vector follows
    dw/dt = -|w|^(2 - 2/N) (g + (N - 1) P_w g),  g = grad_w E[l(y w.x)],  P_w = w w^T / |w|^2,
with t = lr x step. For x uniform on the circle (dim 2) the expectation is an integral over the
angle phi of x; on each half circle the label y is constant and the integrand is smooth, so a
composite Gauss-Legendre rule on each half is accurate to near machine precision.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import expit

PANELS_PER_HALF = 64
NODES_PER_PANEL = 16
RTOL, ATOL = 1e-10, 1e-13


def _circle_rule(teacher: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points x on the unit circle, their labels y and quadrature weights (summing to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(NODES_PER_PANEL)
    edges = np.linspace(0.0, 2 * np.pi, 2 * PANELS_PER_HALF + 1)
    half_width = (edges[1] - edges[0]) / 2
    centres = (edges[:-1] + edges[1:]) / 2
    # Start the first half circle where v.x changes sign, so no panel straddles a label flip.
    start = np.arctan2(teacher[1], teacher[0]) - np.pi / 2
    phi = (start + centres[:, None] + half_width * nodes[None, :]).ravel()
    w = np.tile(weights * half_width / (2 * np.pi), len(centres))
    x = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    y = np.where(np.arange(len(phi)) < len(phi) // 2, 1.0, -1.0)
    return x, y, w


def loss_slope(margins: np.ndarray, loss: str) -> np.ndarray:
    """l'(m): -1/(1 + e^m) for logistic, -e^(-m) for exponential."""
    return -expit(-margins) if loss == "logistic" else -np.exp(-margins)


def population_gradient(w: np.ndarray, teacher: np.ndarray, loss: str) -> np.ndarray:
    """g = E[l'(y w.x) y x] for x uniform on the unit circle, y = sign(v.x)."""
    x, y, weights = _circle_rule(teacher)
    return x.T @ (weights * loss_slope(y * (x @ w), loss) * y)


def flow_velocity(w: np.ndarray, depth: int, teacher: np.ndarray, loss: str) -> np.ndarray:
    g = population_gradient(w, teacher, loss)
    norm_sq = float(w @ w)
    projected = w * (w @ g) / norm_sq
    return -(norm_sq ** (1.0 - 1.0 / depth)) * (g + (depth - 1) * projected)


def integrate_flow(
    w0: np.ndarray, depth: int, teacher: np.ndarray, loss: str, times: np.ndarray
) -> np.ndarray:
    """w(t) at each of `times` (increasing, from 0), integrated with DOP853 to rtol 1e-10."""
    solution = solve_ivp(
        lambda _t, w: flow_velocity(w, depth, teacher, loss),
        (0.0, float(times[-1])),
        np.asarray(w0, dtype=np.float64),
        method="DOP853",
        t_eval=times,
        rtol=RTOL,
        atol=ATOL,
    )
    if not solution.success:
        raise RuntimeError(f"flow integration failed: {solution.message}")
    return solution.y.T


def directional_error(w: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """|w/|w| - v| row by row."""
    return np.linalg.norm(w / np.linalg.norm(w, axis=-1, keepdims=True) - teacher, axis=-1)
