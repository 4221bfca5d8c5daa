"""The per-fit certificate's amplification and parted-decision rules: faults must fail.

Found by an independent review: a fault whose first effect is an "auto" rate,
and an output bias near zero that inflated the amplification of fixed-rate fits.
"""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, kernels, save
from gpumlp.certificate import certify, format_certificate


def _fault_from(monkeypatch, call, size, dtype=None):
    """Scale W1's gradient by ``1 + size`` from the ``call``-th array_api_strict backward."""
    real, count = kernels.backward, {"n": 0}

    def perturbed(y, activations, coefs, *args, **kwargs):
        coef_grads, intercept_grads = real(y, activations, coefs, *args, **kwargs)
        if type(y).__module__.startswith("array_api_strict") and (
                dtype is None or dtype in str(y.dtype)):
            count["n"] += 1
            if count["n"] >= call:
                coef_grads[0] = coef_grads[0] * (1.0 + size)
        return coef_grads, intercept_grads

    monkeypatch.setattr(kernels, "backward", perturbed)


# 1. "auto": a fault whose first effect is the next rate ends the comparison at the
# epoch before it (``parted``), so the faulty epochs are never compared: PASS.
# (Backward calls 1-21 are the power iteration, the start and epochs 1-2.)
@pytest.mark.parametrize("size", [1e-6, 1e-3])
def test_an_auto_fault_that_first_moves_a_rate_fails(tmp_path, monkeypatch, size):
    pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    y = np.sin(X @ rng.normal(size=(4, 1)))[:, 0] * 3 + X[:, 0] ** 2
    X, y = (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((32,), max_iter=10, random_state=0, device="cpu",
                             dtype="float64").fit(X, y)
    save(model, tmp_path / "m.npz")
    _fault_from(monkeypatch, 22, size)
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy", "array_api_strict"],
                   dtypes=("float64",))
    (strict,) = [r for r in cert.replays if r.backend == "array_api_strict"]
    assert strict.parted is not None and max(max(w) for w in strict.weights) > 1e-3
    assert not cert.passed, format_certificate(cert)


# 2. Fixed-rate gd on standardised targets: the output bias b2 passes near zero, so
# its own relative distance makes the fit's "amplification" 1.3e3 (the weights
# move 1.3 times). float32 replays are then compared for epochs 1-21 of 60 only,
# and a gradient off by 1% from epoch 25 (weights 1e-3 away, 10x float32's tol) passes.
def test_an_output_bias_near_zero_does_not_end_a_fixed_rate_comparison(tmp_path, monkeypatch):
    pytest.importorskip("array_api_strict")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1]
    y = (y - y.mean()) / y.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((6,), solver="gd", learning_rate_init=0.1, max_iter=60, tol=0,
                             random_state=0, device="cpu", dtype="float64").fit(X, y)
    save(model, tmp_path / "m.npz")
    honest = certify(tmp_path / "m.npz", X, y, backends=["numpy"])
    assert honest.passed, format_certificate(honest)
    assert max(honest.amplification["float64"]) < 10, format_certificate(honest)
    assert all(r.compared is None for r in honest.replays), format_certificate(honest)
    _fault_from(monkeypatch, 25, 1e-2, dtype="float32")   # one backward per epoch
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy", "array_api_strict"])
    assert not cert.passed, format_certificate(cert)
    (bad,) = [r for r in cert.replays if not r.passed]
    assert (bad.backend, bad.dtype) == ("array_api_strict", "float32")
