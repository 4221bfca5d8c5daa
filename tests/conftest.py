"""Backends and dtypes as fixtures.

Tests that take the ``backend`` fixture run once per backend: ``numpy``,
``array_api_strict`` on its default device and on ``device1`` (which catches
arrays silently created on another device), and ``cupy`` when present.

Select backends with ``--backends numpy,cupy`` or the environment variable
``GPUMLP_TEST_BACKENDS``. A backend named that way must be available: asking
for one that is not is an error, not a skip, so a GPU run cannot pass with
zero GPU tests. Without a selection, every backend is listed and those that
cannot run here skip with the reason.
"""

import os

# scikit-learn's array-API estimator checks run only with this set, and it
# must be set before SciPy is imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from gpumlp.agreement import (  # noqa: E402
    BACKENDS,
    BackendUnavailableError,
    backend_device,
)

ENV = "GPUMLP_TEST_BACKENDS"

# Hypothesis profiles. ``ci`` (the default) runs a bounded number of examples,
# the same ones on every run, so that CI stays fast and a red run is
# reproducible; ``long`` explores (``pytest -m laws --hypothesis-profile long``).
# The laws (tests/test_laws.py) divide max_examples by their cost
# (tests/_laws.py: law_settings); property tests that set their own
# max_examples keep it.
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True,
                          print_blob=True)
settings.register_profile("long", max_examples=1000, deadline=None, print_blob=True)
settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption(
        "--backends",
        default=None,
        help=f"comma-separated backends to require, of {', '.join(BACKENDS)} "
        f"(default: ${ENV}, else all, skipping unavailable ones)",
    )


def _requested(config):
    text = config.getoption("--backends") or os.environ.get(ENV, "")
    return [name.strip() for name in text.split(",") if name.strip()]


def pytest_configure(config):
    requested = _requested(config)
    for name in requested:
        try:
            backend_device(name)
        except BackendUnavailableError as exc:
            raise pytest.UsageError(
                f"backend {name!r} was required but is not available: {exc}"
            ) from None
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    config._gpumlp_backends = requested


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        names = metafunc.config._gpumlp_backends or list(BACKENDS)
        metafunc.parametrize("backend", names, indirect=True)
    if "dtype" in metafunc.fixturenames:
        metafunc.parametrize("dtype", ["float32", "float64"])


@pytest.fixture
def backend(request):
    """``(name, Device)`` for one backend; skips with the reason if unavailable."""
    name = request.param
    try:
        return name, backend_device(name)
    except BackendUnavailableError as exc:
        pytest.skip(f"backend {name} unavailable: {exc}")


@pytest.fixture
def cupy_device(request):
    """The CUDA device for CuPy-only tests; skips with the reason without one."""
    selected = request.config._gpumlp_backends
    if selected and "cupy" not in selected:
        pytest.skip("the cupy backend was not selected")
    try:
        return backend_device("cupy")
    except BackendUnavailableError as exc:
        pytest.skip(f"backend cupy unavailable: {exc}")


@pytest.fixture
def sine_rows():
    """300 rows of a smooth target in 4 features, for whole-fit tests."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(300)
    return X, y


@pytest.fixture
def long_blocks(monkeypatch):
    """Blocks grow to MAX_BLOCK at once, so that a stop falls inside a block."""
    from gpumlp import training

    monkeypatch.setattr(training, "BLOCK_SECONDS", 1e3)
