"""Central finite differences in float64 against every analytic gradient."""

import numpy as np
import pytest

from gpumlp import kernels
from gpumlp.initialization import glorot_uniform


def _loss(X, y, coefs, intercepts, activation, alpha):
    y_pred = kernels.predict(X, coefs, intercepts, activation)
    return float(kernels.squared_error(y, y_pred) + kernels.l2_penalty(coefs, alpha, X.shape[0]))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("hidden", [(5,), (4, 3)], ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_gradients_match_finite_differences(activation, hidden, n_outputs, alpha):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((11, 4))
    y = rng.standard_normal((11, n_outputs))
    coefs, intercepts = glorot_uniform([4, *hidden, n_outputs], rng)
    acts = kernels.forward(X, coefs, intercepts, activation)
    coef_grads, intercept_grads = kernels.backward(y, acts, coefs, activation, alpha)

    eps = 1e-6
    for param, grad in zip(coefs + intercepts, coef_grads + intercept_grads):
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            up = _loss(X, y, coefs, intercepts, activation, alpha)
            param[index] = saved - eps
            down = _loss(X, y, coefs, intercepts, activation, alpha)
            param[index] = saved
            numeric[index] = (up - down) / (2 * eps)
        scale = max(np.linalg.norm(numeric), np.linalg.norm(grad))
        assert scale > 0
        assert np.linalg.norm(numeric - grad) / scale <= 1e-6


def test_loss_is_the_mean_not_half_of_it():
    # A network that outputs its bias only: y_pred = b2 everywhere. With one
    # output, L(b2) = mean((y - b2)^2) and dL/db2 = 2 (b2 - mean(y)).
    X = np.zeros((4, 1))
    y = np.array([[1.0], [2.0], [3.0], [6.0]])
    coefs, intercepts = [np.zeros((1, 1)), np.zeros((1, 1))], [np.zeros(1), np.zeros(1)]
    acts = kernels.forward(X, coefs, intercepts)
    assert float(kernels.squared_error(y, acts[-1])) == pytest.approx((1 + 4 + 9 + 36) / 4)
    _, intercept_grads = kernels.backward(y, acts, coefs)
    assert intercept_grads[1][0] == pytest.approx(2 * (0.0 - 3.0))
