"""Comparison helpers shared by test modules (not a test module itself)."""

import numpy as np

from gpumlp.devices import to_numpy


def assert_loss_and_grads_close(got, want, tol):
    """``(loss, coef_grads, intercept_grads)`` within ``tol`` of ``want``, normwise relative."""
    loss, coef_grads, intercept_grads = got
    ref_loss, ref_coef_grads, ref_intercept_grads = want
    assert abs(float(loss) - float(ref_loss)) <= tol * abs(float(ref_loss))
    for a, b in zip(coef_grads + intercept_grads, ref_coef_grads + ref_intercept_grads):
        a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
        assert a.shape == b.shape
        assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b)
