"""A run's summary: final values, thresholds reached, and the fitted convergence rate.

The rate model is directional_error ~ exp(-c t^p) with t = lr x step, fitted by least squares
of log(-log err) on log t over a window meant to show the asymptotic regime:
- it ends before the floor. For `flow` the floor is the integrator's precision (err < 1e-9).
  For `sgd` and `gd` it is the noise floor: the error is smoothed (a running median of
  log err over 2% of the points), the floor level is the smoothed minimum, and the window
  ends where the smoothed error first comes within FLOOR_MARGIN x that level;
- it covers the last decade of t before that end, and only errors <= 0.1 (earlier, -log err
  barely moves and the local exponent is near 0). If that leaves fewer than MIN_POINTS logged
  points, the window is instead every point before the end with err <= err(0)/2.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import median_filter

THRESHOLDS = ("1e-1", "1e-2", "1e-3")
START_ERROR = 0.1
FLOW_FLOOR = 1e-9
FLOOR_MARGIN = 3.0
MIN_POINTS = 5
MAX_FIT_POINTS = 2000


def summarize(steps: np.ndarray, errors: np.ndarray, lr: float, optimizer: str) -> dict:
    """Summary fields derived from a run's whole directional_error series."""
    finite = np.isfinite(errors)
    steps, errors = steps[finite], errors[finite]
    summary: dict = {
        "min_directional_error": float(errors.min()) if len(errors) else None,
        "steps_to": {label: _first_below(steps, errors, float(label)) for label in THRESHOLDS},
    }
    summary.update(fit_rate(steps, errors, lr, optimizer))
    return summary


def _first_below(steps: np.ndarray, errors: np.ndarray, threshold: float) -> int | None:
    below = np.flatnonzero(errors < threshold)
    return int(steps[below[0]]) if len(below) else None


def fit_rate(steps: np.ndarray, errors: np.ndarray, lr: float, optimizer: str) -> dict:
    """rate_exponent p, rate_constant c and rate_window [first, last step]; all None if the
    series has too few usable points."""
    empty = {"rate_exponent": None, "rate_constant": None, "rate_window": None}
    usable = (steps > 0) & (errors > 0) & (errors < 1)
    steps, errors = steps[usable], errors[usable]
    if len(steps) < MIN_POINTS:
        return empty
    window = np.flatnonzero(_window(steps, errors, optimizer))
    if len(window) < MIN_POINTS:
        return empty
    chosen = _thin(window)
    log_t = np.log(lr * steps[chosen])
    exponent, intercept = np.polyfit(log_t, np.log(-np.log(errors[chosen])), 1)
    return {
        "rate_exponent": float(exponent),
        "rate_constant": float(math.exp(intercept)),
        "rate_window": [int(steps[window[0]]), int(steps[window[-1]])],
    }


def _window(steps: np.ndarray, errors: np.ndarray, optimizer: str) -> np.ndarray:
    end = _floor_start(errors, optimizer)
    before_floor = np.arange(len(errors)) < end
    if end == 0:
        return before_floor
    last_decade = steps >= steps[end - 1] / 10
    window = before_floor & last_decade & (errors <= START_ERROR)
    if window.sum() < MIN_POINTS:
        window = before_floor & (errors <= errors[0] / 2)
    return window


def _floor_start(errors: np.ndarray, optimizer: str) -> int:
    """Index of the first point on the floor (len(errors) if the floor is never reached)."""
    if optimizer == "flow":
        on_floor = errors < FLOW_FLOOR
    else:
        size = 2 * max(1, len(errors) // 100) + 1
        smooth = median_filter(np.log(errors), size=size, mode="nearest")
        on_floor = smooth <= smooth.min() + math.log(FLOOR_MARGIN)
    return int(np.argmax(on_floor)) if on_floor.any() else len(errors)


def _thin(indices: np.ndarray) -> np.ndarray:
    """At most MAX_FIT_POINTS indices, spread evenly over the window."""
    if len(indices) <= MAX_FIT_POINTS:
        return indices
    return indices[np.linspace(0, len(indices) - 1, MAX_FIT_POINTS).round().astype(int)]
