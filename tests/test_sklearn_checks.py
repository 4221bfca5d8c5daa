"""scikit-learn's own estimator checks, on the CPU."""

import pytest

sklearn_estimator_checks = pytest.importorskip(
    "sklearn.utils.estimator_checks", reason="scikit-learn is not installed"
)

from gpumlp import MLPRegressor  # noqa: E402


@sklearn_estimator_checks.parametrize_with_checks([MLPRegressor(device="cpu")])
def test_sklearn_compatible(estimator, check):
    check(estimator)
