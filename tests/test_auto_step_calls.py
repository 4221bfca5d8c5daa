"""The non-monotone ``learning_rate_init="auto"`` across calls and in certificates.

Cases found by an independent review of the rule: a certificate must replay
the stopping rule's plateau actions, and judge a fit whose long steps amplify
rounding by that fit's own amplification; a resumed search may rise above
where its call began without a warning.
"""

import warnings

import numpy as np
import pytest
from _faults import plant_gradient_fault

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


def _certify(tmp_path, model, X, y, backends=("numpy",), dtypes=("float64",)):
    path = tmp_path / "m.npz"
    save(model, path)
    return certify(path, X, y, backends=list(backends), dtypes=dtypes)


# Finding 1: the certificate's replay switched the stopping rule off, so it never
# took the plateau's action. For "auto" the first plateau switches to the monotone
# test; a replay must impose that switch where the recorded losses put it.
def test_certificate_reproduces_an_auto_fit_whose_first_plateau_switched_the_test(tmp_path):
    X, y = _data(150, 4, 1)
    # gd's tol is a fraction of the loss (issue 21): 1e-2 brings the plateau here.
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=400, random_state=2,
                 n_iter_no_change=5, tol=1e-2)
    assert model._trainer.state.monotone          # the first plateau fired
    cert = _certify(tmp_path, model, X, y)
    assert cert.passed, format_certificate(cert)


# The same cause, older than this change: learning_rate="adaptive" divides the
# rate at each plateau, which the replay must do at the same epochs.
@pytest.mark.parametrize("extra", [dict(solver="gd"),
                                   dict(solver="sgd", batch_size=40, momentum=0.0)])
def test_certificate_reproduces_an_adaptive_rate_fit(tmp_path, extra):
    X, y = _data(120, 4, 3)
    model = _fit(X, y, hidden_layer_sizes=(8,), learning_rate="adaptive",
                 learning_rate_init=0.05, tol=1e-2, n_iter_no_change=2, max_iter=40,
                 random_state=0, **extra)
    assert model.learning_rate_ < 0.05              # a plateau divided the rate
    cert = _certify(tmp_path, model, X, y)
    assert cert.passed, format_certificate(cert)


# Long non-monotone Barzilai-Borwein steps amplify rounding differences; a replay
# by segments, with the recorded decisions imposed, passes an honest fit on every
# backend and still fails a gradient off by 1e-6.
def test_certificate_passes_an_honest_default_float64_fit(tmp_path):
    pytest.importorskip("array_api_strict")
    X, y = _data(150, 4, 0)
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    cert = _certify(tmp_path, model, X, y, backends=("numpy", "array_api_strict"),
                    dtypes=("float32", "float64"))
    assert cert.passed, format_certificate(cert)


def test_an_auto_gradient_off_by_a_millionth_still_fails(tmp_path, monkeypatch):
    pytest.importorskip("array_api_strict")

    X, y = _data(150, 4, 0)
    model = _fit(X, y, hidden_layer_sizes=(32,), max_iter=10, random_state=0)
    save(model, tmp_path / "m.npz")
    plant_gradient_fault(monkeypatch, "array_api_strict", 1e-6)
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy", "array_api_strict"],
                   dtypes=("float64",))
    bad = [r for r in cert.replays if not r.passed]
    assert [r.backend for r in bad] == ["array_api_strict"], format_certificate(cert)
    assert bad[0].failures[0].startswith("epochs 1-"), bad[0].failures[0]


def test_a_float32_auto_fit_is_certified_over_every_epoch(tmp_path):
    """Issue 19 replaced "compared until its decisions part": with the recorded
    decisions imposed, each segment is compared, on OpenBLAS's SkylakeX and
    Haswell kernels alike (this fit failed under OPENBLAS_CORETYPE=Haswell before)."""
    X, y = _data(200, 5, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((32,), max_iter=200, random_state=0, device="cpu",
                             dtype="float32").fit(X, y)
    cert = _certify(tmp_path, model, X, y, dtypes=("float32", "float64"))
    assert cert.passed, format_certificate(cert)
    for replay in cert.replays:
        assert replay.segments[-1]["end"] == cert.epochs == model.n_iter_


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
