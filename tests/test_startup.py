"""No start-up tax: gpumlp loads optional libraries only for the features that use them."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

HEAVY = {"sklearn", "scipy", "pandas", "matplotlib", "dask", "torch", "jax", "cupy", "pyarrow"}

SCRIPT = """
import sys, warnings
import numpy as np
import gpumlp
from gpumlp.cli import main
X = np.random.default_rng(0).random((40, 3)); y = X.sum(axis=1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    gpumlp.MLPRegressor((4,), max_iter=2, device="cpu").fit(X, y)
assert any(issubclass(w.category, gpumlp.ConvergenceWarning) for w in caught), caught
assert main(["train", "--epochs", "3", "--samples", "200", "--quiet"]) == 0
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


def test_import_fit_and_cli_load_no_optional_library():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split("\n")[-2].split())
    assert "gpumlp" in loaded and not (loaded & HEAVY), sorted(loaded & HEAVY)


def test_the_warning_is_also_scikit_learns_once_it_is_imported():
    exceptions = pytest.importorskip("sklearn.exceptions")
    from gpumlp import ConvergenceWarning, MLPRegressor
    from gpumlp._sklearn_compat import not_fitted_error

    X = np.random.default_rng(0).random((40, 3))
    for category in (exceptions.ConvergenceWarning, ConvergenceWarning):
        with pytest.warns(category):
            MLPRegressor((4,), max_iter=2, device="cpu").fit(X, X.sum(axis=1))
    assert issubclass(not_fitted_error(), exceptions.NotFittedError)
    with warnings.catch_warnings():
        warnings.simplefilter("error", exceptions.ConvergenceWarning)
        with pytest.raises(exceptions.ConvergenceWarning):
            MLPRegressor((4,), max_iter=2, device="cpu").fit(X, X.sum(axis=1))
