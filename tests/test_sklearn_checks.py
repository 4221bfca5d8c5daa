"""scikit-learn's own estimator checks, on the CPU."""

import pytest

sklearn_estimator_checks = pytest.importorskip(
    "sklearn.utils.estimator_checks", reason="scikit-learn is not installed"
)

from gpumlp import MLPRegressor  # noqa: E402

# The one check we fail on purpose, and why.
DELIBERATE = {
    "check_array_api_same_namespace": (
        "gpumlp models are portable by design: a model fitted on one array namespace "
        "(CuPy, say) predicts on another (NumPy) and answers in the input's namespace"
    ),
}


@sklearn_estimator_checks.parametrize_with_checks(
    [MLPRegressor(device="cpu")], expected_failed_checks=lambda estimator: DELIBERATE
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
