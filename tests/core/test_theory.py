"""The theory flow against independent quadrature, DEVELOPERS.md's numbers, and SGD."""

import numpy as np
import pytest
from scipy.integrate import quad

from core import theory as flow
from core.spec import ExperimentSpec
from worker import engine

TEACHER = np.array([0.0, 1.0])
W0 = np.array([0.6, 0.8])
# Directional error at step 2500 (t = 2.5) under the logistic flow, from DEVELOPERS.md.
FLOW_AT_2500 = {1: 0.333, 2: 0.297, 3: 0.257, 4: 0.216}


def _adaptive_gradient(w, teacher, loss):
    def component(k):
        def integrand(phi):
            x = np.array([np.cos(phi), np.sin(phi)])
            y = 1.0 if x @ teacher >= 0 else -1.0
            return flow.loss_slope(np.array(y * (x @ w)), loss) * y * x[k] / (2 * np.pi)

        start = np.arctan2(teacher[1], teacher[0]) - np.pi / 2
        return quad(
            integrand, start, start + 2 * np.pi, points=[start + np.pi], limit=200, epsabs=1e-13
        )[0]

    return np.array([component(0), component(1)])


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
@pytest.mark.parametrize(
    ("w", "teacher"),
    [
        (W0, TEACHER),
        (np.array([5.0, -2.0]), np.array([0.6, -0.8])),
        (np.array([0.0, 30.0]), TEACHER),
    ],
)
def test_population_gradient_matches_adaptive_quadrature(loss, w, teacher):
    expected = _adaptive_gradient(w, teacher, loss)
    assert flow.population_gradient(w, teacher, loss) == pytest.approx(expected, abs=1e-11)


def test_depth_one_flow_is_plain_gradient_descent_on_the_population_loss():
    velocity = flow.flow_velocity(W0, 1, TEACHER, "logistic")
    assert velocity == pytest.approx(-flow.population_gradient(W0, TEACHER, "logistic"))


@pytest.mark.parametrize(("depth", "expected"), FLOW_AT_2500.items())
def test_flow_gives_the_documented_errors_at_step_2500(depth, expected):
    w = flow.integrate_flow(W0, depth, TEACHER, "logistic", np.array([0.0, 2.5]))
    errors = flow.directional_error(w, TEACHER)
    assert errors[0] == pytest.approx(0.6325, abs=1e-4)
    assert errors[1] == pytest.approx(expected, rel=0.005)


@pytest.mark.parametrize(("depth", "expected"), FLOW_AT_2500.items())
def test_sgd_follows_the_flow_at_step_2500(depth, expected):
    spec = ExperimentSpec(depth=depth, steps=2500, log_every=2500)
    logged = []
    engine.run(spec, lambda block: logged.extend(block.values["directional_error"]) or True)
    assert logged[0] == pytest.approx(0.6325, abs=1e-4)
    assert logged[-1] == pytest.approx(expected, rel=0.03)
