"""The non-monotone ``learning_rate_init="auto"`` across calls and in certificates.

Cases found by an independent review of the rule: a certificate must replay
the stopping rule's plateau actions, and judge a fit whose long steps amplify
rounding by that fit's own amplification; a resumed search may rise above
where its call began without a warning.
"""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, save
from gpumlp.certificate import certify, format_certificate
from gpumlp.training import LossIncreasedWarning


def _data(n, d, seed):
    """Standardised ``X, y``: a sine of a random projection plus a square."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X @ rng.normal(size=(d, 1)))[:, 0] * 3 + X[:, 0] ** 2
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def _fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPRegressor(device="cpu", dtype="float64", **params).fit(X, y)


def _certify_numpy64(tmp_path, model, X, y):
    path = tmp_path / "m.npz"
    save(model, path)
    cert = certify(path, X, y, backends=["numpy"], dtypes=("float64",))
    (replay,) = cert.replays
    return cert, replay


# Finding 1: the certificate's replay switches the stopping rule off
# (n_iter_no_change=10**9), so it never takes the plateau's action. For "auto"
# the first plateau switches to the monotone test; the replay keeps the
# non-monotone one, and an honest default fit fails "the file weights differ".
def test_certificate_reproduces_an_auto_fit_whose_first_plateau_switched_the_test(tmp_path):
    X, y = _data(150, 4, 1)
    # gd's tol is a fraction of the loss (issue 21): 1e-2 brings the plateau here.
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=400, random_state=2,
                 n_iter_no_change=5, tol=1e-2)
    assert model._trainer.state.monotone          # the first plateau fired
    cert, replay = _certify_numpy64(tmp_path, model, X, y)
    assert max(replay.stored.values()) <= replay.tol, format_certificate(cert)
    assert cert.passed, format_certificate(cert)


# The same cause, older than this change: learning_rate="adaptive" divides the
# rate at each plateau, which the replay never does.
@pytest.mark.parametrize("extra", [dict(solver="gd"),
                                   dict(solver="sgd", batch_size=40, momentum=0.0)])
def test_certificate_reproduces_an_adaptive_rate_fit(tmp_path, extra):
    X, y = _data(120, 4, 3)
    model = _fit(X, y, hidden_layer_sizes=(8,), learning_rate="adaptive",
                 learning_rate_init=0.05, tol=1e-2, n_iter_no_change=2, max_iter=40,
                 random_state=0, **extra)
    assert model.learning_rate_ < 0.05              # a plateau divided the rate
    cert, replay = _certify_numpy64(tmp_path, model, X, y)
    assert cert.passed, format_certificate(cert)


# Long non-monotone Barzilai-Borwein steps amplify rounding differences (NumPy's
# fast path against the generic oracle) past the float64 training tolerance of
# 1e-10, transiently; with the tolerance scaled by the fit's own amplification
# an honest fit passes, and a gradient off by 1e-6 still fails.
def test_certificate_passes_an_honest_default_float64_fit(tmp_path):
    X, y = _data(150, 4, 0)
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    cert, replay = _certify_numpy64(tmp_path, model, X, y)
    assert replay.first_failure is None, format_certificate(cert)
    assert max(cert.amplification["float64"]) > 1.0   # the case: it does amplify
    assert replay.compared is None and cert.passed


def test_an_auto_gradient_off_by_a_millionth_still_fails(tmp_path, monkeypatch):
    pytest.importorskip("array_api_strict")
    from gpumlp import kernels

    X, y = _data(150, 4, 0)
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    save(model, tmp_path / "m.npz")
    real_backward = kernels.backward

    def perturbed(y, activations, coefs, *args, **kwargs):
        coef_grads, intercept_grads = real_backward(y, activations, coefs, *args, **kwargs)
        if type(y).__module__.startswith("array_api_strict"):
            coef_grads[0] = coef_grads[0] * (1.0 + 1e-6)
        return coef_grads, intercept_grads

    monkeypatch.setattr(kernels, "backward", perturbed)
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy", "array_api_strict"],
                   dtypes=("float64",))
    bad = [r for r in cert.replays if not r.passed]
    assert [r.backend for r in bad] == ["array_api_strict"], format_certificate(cert)
    assert bad[0].first_failure is not None and bad[0].first_failure[0] <= 2


def test_a_float32_auto_fit_is_compared_until_its_decisions_part(tmp_path):
    """float32 decisions are float32's: replays are compared with the float32 oracle,
    up to the first epoch whose rate differs (a loss within rounding of a threshold)."""
    X, y = _data(200, 5, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((32,), max_iter=200, random_state=0, device="cpu",
                             dtype="float32").fit(X, y)
    save(model, tmp_path / "m.npz")
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy"], dtypes=("float32",))
    (replay,) = cert.replays
    assert replay.oracle == "numpy float32" and set(cert.amplification) == {"float32",
                                                                            "float64"}
    text = format_certificate(cert)
    assert cert.passed, text
    assert max(replay.stored.values()) == 0.0            # the file, reproduced exactly
    if replay.compared is not None:                      # said, with the reason
        assert f"compared for epochs 1-{replay.compared} of" in text
        assert 0 < replay.compared < cert.epochs


# Finding 3: a call that continues the search keeps its memory, so its loss may
# rise above where the call began (the docs say it never does), and a resumed
# fit (``gpumlp train --resume``: a warm start under ``_resuming``) then warns
# LossIncreasedWarning "the step is too large" for a healthy run.
def test_a_resumed_auto_fit_does_not_warn_that_the_loss_rose():
    X, y = _data(150, 4, 0)
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=4, tol=0.0,
                 n_iter_no_change=1000, random_state=0)
    with warnings.catch_warnings(record=True) as caught, model._resuming():
        warnings.simplefilter("always")
        model.set_params(warm_start=True, max_iter=3).fit(X, y)
    assert not [w for w in caught if issubclass(w.category, LossIncreasedWarning)]
