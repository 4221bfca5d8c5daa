"""Central finite differences in float64 against every analytic gradient."""

import numpy as np
import pytest

from gpumlp import kernels
from gpumlp.initialization import glorot_uniform
from gpumlp.losses import get_loss


def _loss(X, y, coefs, intercepts, activation, alpha, sample_weight=None,
          loss_kind="squared_error"):
    out = get_loss(loss_kind).out_activation
    y_pred = kernels.predict(X, coefs, intercepts, activation, out)
    total = X.shape[0] if sample_weight is None else sample_weight.sum()
    return float(kernels.loss_value(y, y_pred, sample_weight, loss_kind)
                 + kernels.l2_penalty(coefs, alpha, total, y.shape[1], loss_kind))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("hidden", [(5,), (4, 3)], ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("loss_kind", ["squared_error", "poisson"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_gradients_match_finite_differences(activation, hidden, n_outputs, alpha, loss_kind,
                                            weighted):
    rng = np.random.default_rng(42)
    X = rng.standard_normal((11, 4))
    y = rng.standard_normal((11, n_outputs))
    if loss_kind == "poisson":
        y = rng.poisson(2.0, size=(11, n_outputs)).astype(float)  # zeros included
    # Weights include a zero, so a row that must not count does not.
    w = np.concatenate([[0.0], rng.uniform(0.1, 3.0, 10)]) if weighted else None
    coefs, intercepts = glorot_uniform([4, *hidden, n_outputs], rng)
    out = get_loss(loss_kind).out_activation
    acts = kernels.forward(X, coefs, intercepts, activation, out)
    coef_grads, intercept_grads = kernels.backward(y, acts, coefs, activation, alpha,
                                                   sample_weight=w, loss_kind=loss_kind)

    eps = 1e-6
    for param, grad in zip(coefs + intercepts, coef_grads + intercept_grads):
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            up = _loss(X, y, coefs, intercepts, activation, alpha, w, loss_kind)
            param[index] = saved - eps
            down = _loss(X, y, coefs, intercepts, activation, alpha, w, loss_kind)
            param[index] = saved
            numeric[index] = (up - down) / (2 * eps)
        scale = max(np.linalg.norm(numeric), np.linalg.norm(grad))
        assert scale > 0
        assert np.linalg.norm(numeric - grad) / scale <= 1e-6


def test_half_poisson_deviance_by_hand():
    # y = [0, 2], y_pred = [1, 2]: y log(y / mu) - y + mu is 1 for the first
    # row (0 log 0 = 0) and 0 for the second; the loss is their mean.
    y = np.array([[0.0], [2.0]])
    y_pred = np.array([[1.0], [2.0]])
    assert float(kernels.loss_value(y, y_pred, loss_kind="poisson")) == pytest.approx(0.5)
    weights = np.array([3.0, 1.0])
    assert float(kernels.loss_value(y, y_pred, weights, "poisson")) == pytest.approx(0.75)


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
