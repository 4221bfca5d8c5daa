"""Faults planted on one backend must fail the segment they start in, wherever that is.

A fault scales W1's gradient by ``1 + size`` on array_api_strict from one
epoch on: 1e-6 in float64, 1e-3 in float32 (issue 19), starting in the first
segment, in the middle, or in the last one.
"""

import warnings

import numpy as np
import pytest
from _faults import plant_gradient_fault

from gpumlp import MLPRegressor, save
from gpumlp.certificate import certify, format_certificate

EPOCHS = 12


def _fault_from(monkeypatch, call, size, dtype):
    """Scale W1's gradient by ``1 + size`` from the ``call``-th array_api_strict backward."""
    plant_gradient_fault(monkeypatch, "array_api_strict", size, call, dtype)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((100, 4))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2]
    X, y = (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((8,), solver="gd", learning_rate_init=0.5, max_iter=EPOCHS,
                             tol=0.0, random_state=0, device="cpu", dtype="float64").fit(X, y)
    path = tmp_path_factory.mktemp("faults") / "m.npz"
    save(model, path)
    return path, X, y


def test_the_honest_file_passes_on_both_backends(model_file):
    pytest.importorskip("array_api_strict")
    path, X, y = model_file
    cert = certify(path, X, y, backends=["numpy", "array_api_strict"])
    assert cert.outcome == "PASS", format_certificate(cert)


# Full-batch gd: one backward per epoch, segments run in order; epoch 12 is the last.
@pytest.mark.parametrize("epoch", [1, 6, EPOCHS])
@pytest.mark.parametrize("precision, size", [("float64", 1e-6), ("float32", 1e-3)])
def test_a_planted_gradient_fault_fails_its_segment(model_file, monkeypatch, epoch, precision,
                                                    size):
    pytest.importorskip("array_api_strict")
    path, X, y = model_file
    _fault_from(monkeypatch, epoch, size, precision)
    cert = certify(path, X, y, backends=["numpy", "array_api_strict"], dtypes=(precision,))
    assert cert.outcome == "FAIL", format_certificate(cert)
    (bad,) = [r for r in cert.replays if not r.passed]
    assert (bad.backend, bad.dtype) == ("array_api_strict", precision)
    # The first failure is in the segment holding the faulty epoch.
    first = bad.failures[0]
    start, end = (int(v) for v in first.split(":")[0].removeprefix("epochs ").split("-"))
    assert start <= epoch <= end, first
