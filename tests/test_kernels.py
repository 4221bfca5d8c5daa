"""Each kernel against a tiny network worked out by hand, on every backend."""

import ast
import pathlib
import warnings

import numpy as np
import pytest

from gpumlp import kernels
from gpumlp.devices import to_numpy


def _hand_case(device, dtype):
    """Two samples, two features, one hidden unit, one output.

    X = [[1, 2], [0, 0]], y = [[3], [0]]
    W1 = [[0.5], [-0.25]], b1 = [0]   ->  z1 = [0, 0], a1 = sigmoid(0) = [0.5, 0.5]
    W2 = [[2]], b2 = [1]              ->  y_pred = 2 * 0.5 + 1 = [2, 2]
    """
    dt = getattr(device.xp, dtype)

    def put(values):
        return device.asarray(np.asarray(values, dtype=np.float64), dtype=dt)

    X = put([[1.0, 2.0], [0.0, 0.0]])
    y = put([[3.0], [0.0]])
    coefs = [put([[0.5], [-0.25]]), put([[2.0]])]
    intercepts = [put([0.0]), put([1.0])]
    return X, y, coefs, intercepts


def test_hand_worked_forward_loss_backward(backend, dtype):
    _, device = backend
    X, y, coefs, intercepts = _hand_case(device, dtype)
    acts = kernels.forward(X, coefs, intercepts, "sigmoid")
    np.testing.assert_allclose(to_numpy(acts[1]), [[0.5], [0.5]])
    np.testing.assert_allclose(to_numpy(acts[2]), [[2.0], [2.0]])
    # errors y_pred - y = [-1, 2]; L = mean([1, 4]) = 2.5 (the mean, not half).
    np.testing.assert_allclose(float(kernels.squared_error(y, acts[2])), 2.5)

    coef_grads, intercept_grads = kernels.backward(y, acts, coefs, "sigmoid")
    # delta2 = (2 / (n k)) (y_pred - y) = (2/2) [-1, 2] = [-1, 2]
    # dW2 = a1^T delta2 = 0.5 * (-1) + 0.5 * 2 = 0.5;   db2 = -1 + 2 = 1
    np.testing.assert_allclose(to_numpy(coef_grads[1]), [[0.5]])
    np.testing.assert_allclose(to_numpy(intercept_grads[1]), [1.0])
    # delta1 = delta2 W2^T * a1 (1 - a1) = [-1, 2] * 2 * 0.25 = [-0.5, 1]
    # dW1 = X^T delta1 = [[1*-0.5 + 0*1], [2*-0.5 + 0*1]] = [[-0.5], [-1]]
    # db1 = -0.5 + 1 = 0.5
    np.testing.assert_allclose(to_numpy(coef_grads[0]), [[-0.5], [-1.0]])
    np.testing.assert_allclose(to_numpy(intercept_grads[0]), [0.5])


def test_hand_worked_updates(backend, dtype):
    _, device = backend
    # Computation happens within the device's context (for JAX: float64 on).
    with device.context():
        xp = device.xp
        dt = getattr(xp, dtype)
        p = [device.asarray(np.array([1.0, -2.0]), dtype=dt)]
        g = [device.asarray(np.array([0.5, 1.0]), dtype=dt)]
        # gd: p - 0.1 g = [1 - 0.05, -2 - 0.1]
        np.testing.assert_allclose(to_numpy(kernels.gd_step(p, g, 0.1)[0]), [0.95, -2.1], rtol=1e-6)
        # momentum from v = 0: v = -0.1 g = [-0.05, -0.1]
        # heavy ball: p + v = [0.95, -2.1]
        # Nesterov: p + 0.9 v - 0.1 g = [1 - 0.045 - 0.05, -2 - 0.09 - 0.1] = [0.905, -2.19]
        zero = [xp.zeros_like(p[0])]
        heavy, v = kernels.momentum_step(p, g, zero, 0.1, 0.9, False)
        np.testing.assert_allclose(to_numpy(v[0]), [-0.05, -0.1], rtol=1e-6)
        np.testing.assert_allclose(to_numpy(heavy[0]), [0.95, -2.1], rtol=1e-6)
        nesterov, _ = kernels.momentum_step(p, g, zero, 0.1, 0.9, True)
        np.testing.assert_allclose(to_numpy(nesterov[0]), [0.905, -2.19], rtol=1e-6)
        # Adam, t = 1, from zero moments: m = 0.1 g, v = 0.001 g^2; the bias
        # corrections make m_hat = g and v_hat = g^2, so the step is
        # lr * g / (|g| + eps) = lr * sign(g) (eps = 0 here).
        new, m, s = kernels.adam_step(p, g, zero, zero, 1, 0.01, 0.9, 0.999, 0.0)
        np.testing.assert_allclose(to_numpy(m[0]), [0.05, 0.1], rtol=1e-6)
        np.testing.assert_allclose(to_numpy(s[0]), [0.00025, 0.001], rtol=1e-5)
        np.testing.assert_allclose(to_numpy(new[0]), [0.99, -2.01], rtol=1e-5)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "identity"])
def test_activation_values(name):
    z = np.array([-2.0, 0.0, 3.0])
    expected = {
        "sigmoid": 1 / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
        "relu": np.array([0.0, 0.0, 3.0]),
        "identity": z,
    }[name]
    np.testing.assert_allclose(kernels.apply_activation(name, z), expected, rtol=1e-14)


def test_sigmoid_is_stable_in_float32(backend):
    _, device = backend
    z = device.asarray(np.linspace(-1e4, 1e4, 20001), dtype=device.xp.float32)
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        a = kernels.apply_activation("sigmoid", z)
        d = kernels.activation_derivative("sigmoid", a)
    a, d = to_numpy(a), to_numpy(d)
    assert a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(d))
    assert a[0] == 0.0 and a[-1] == 1.0 and a[10000] == 0.5
    assert np.all(np.diff(a) >= 0)


def test_float32_stays_float32(backend):
    _, device = backend
    xp = device.xp
    rng = np.random.default_rng(1)

    def put(shape):
        return device.asarray(rng.standard_normal(shape), dtype=xp.float32)

    X, y = put((5, 3)), put((5, 2))
    coefs, intercepts = [put((3, 4)), put((4, 2))], [put(4), put(2)]
    acts = kernels.forward(X, coefs, intercepts)
    loss = kernels.squared_error(y, acts[-1]) + kernels.l2_penalty(coefs, 0.5, 5)
    cg, ig = kernels.backward(y, acts, coefs, alpha=0.5)
    params, grads = coefs + intercepts, cg + ig
    out = [*acts, loss, *cg, *ig, *kernels.gd_step(params, grads, 0.1)]
    out += kernels.momentum_step(params, grads, grads, 0.1, 0.9, True)[0]
    squares = [g * g for g in grads]
    out += kernels.adam_step(params, grads, grads, squares, 3, 0.1, 0.9, 0.999, 1e-8)[0]
    assert all(a.dtype == xp.float32 for a in out)
    assert all(a.device == X.device for a in out)


def test_kernels_module_imports_no_array_library():
    source = pathlib.Path(kernels.__file__).read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert not imported & {"numpy", "cupy", "torch", "jax"}, imported


def test_unknown_activation_is_rejected():
    with pytest.raises(ValueError, match="Unknown activation 'swish'"):
        kernels.apply_activation("swish", np.zeros(2))
