"""gd's stopping rule (a fraction of the loss) and the warning for unscaled data (issue 21)."""

import math
import warnings

import numpy as np
import pytest

from gpumlp import ConvergenceWarning, MLPRegressor, StandardizedRegressor, UnscaledDataWarning
from gpumlp.solvers import SGD, AutoGD, AutoGDState, GradientDescent
from gpumlp.step_size import remaining_decrease


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = np.sin(2 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.3 * rng.normal(size=400)
    return X, y


def _auto_state(loss, grad_sq, rate):
    return AutoGDState(rate, [], [], loss, grad_sq, None, rate)


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_gd_progress_does_not_depend_on_the_loss_scale(scale):
    # Multiplying the loss by c multiplies |g|**2 by c**2 and the curvature by
    # c (so the rate by 1/c): the measure must not move.
    auto = AutoGD().progress(_auto_state(0.5 * scale, 0.04 * scale ** 2, 0.3 / scale),
                             0.5 * scale, 0.6 * scale)
    assert auto == pytest.approx(0.5 * 0.3 * 0.04 / 0.5, rel=1e-12)
    fixed = GradientDescent(0.1).progress(None, 0.5 * scale, 0.6 * scale)
    assert fixed == pytest.approx(0.2, rel=1e-12)
    # scikit-learn's rule stays for sgd (and adam): no fraction.
    assert SGD(0.1).progress(None, 0.5 * scale, 0.6 * scale) is None


def test_remaining_decrease_is_the_quadratic_models_minimum():
    # f(t) = f - t |g|^2 + t^2 c |g|^2 / 2 is lowest at t = 1/c, |g|^2 / (2c) below f.
    c, gg = 4.0, 9.0
    t = np.linspace(0, 1, 100001)
    model = -t * gg + 0.5 * t ** 2 * c * gg
    assert remaining_decrease(1 / c, gg) == pytest.approx(-model.min(), rel=1e-9)
    assert math.isnan(remaining_decrease(math.inf, 1.0))


def test_the_first_epoch_is_progress():
    state = _auto_state(1.0, 0.0, 0.1)
    assert AutoGD().progress(state, 1.0, math.inf) == math.inf
    assert GradientDescent(0.1).progress(None, 1.0, math.inf) == math.inf


def test_a_gd_fit_that_stops_has_converged(noisy):
    """Stopped by the rule, each of the last epochs expected to gain at most tol of the
    loss; so K more epochs gain at most about K * tol of it (the gains shrink)."""
    X, y = noisy
    model = MLPRegressor((16,), max_iter=5000, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X, y)
    assert model.n_iter_ < 5000
    stopped = model.loss_
    more = 1000
    model.set_params(warm_start=True, tol=0.0, max_iter=more)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    gained = (stopped - model.loss_) / stopped
    assert -1e-12 <= gained <= more * 1e-4


def test_max_iter_still_warns(noisy):
    X, y = noisy
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\)"):
        MLPRegressor((8,), max_iter=5, random_state=0, device="cpu").fit(X, y)


# ------------------------------------------------------------ unscaled data
def _caught(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    return [w for w in caught if issubclass(w.category, UnscaledDataWarning)]


@pytest.mark.parametrize("where", ["x-scale", "x-mean", "y-mean", "y-scale"])
def test_unscaled_data_warns_once(noisy, where):
    X, y = noisy
    X, y = X.copy(), y.copy()
    if where == "x-scale":
        X[:, 1] *= 1000.0
        X[:, 2] *= 1000.0
    elif where == "x-mean":
        X[:, 0] += 2000.0
    elif where == "y-mean":
        y = y + 150.0
    else:
        y = y * 1e-4
    model = MLPRegressor((4,), max_iter=3, random_state=0, device="cpu")
    caught = _caught(lambda: model.fit(X, y))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "StandardizedRegressor" in message and "StandardScaler" in message
    assert message.startswith("y ") == where.startswith("y")
    # Not again on partial_fit, which continues the same fit.
    assert not _caught(lambda: model.partial_fit(X, y))
    # Not inside StandardizedRegressor, which standardises before its regressor sees them.
    wrapped = StandardizedRegressor(MLPRegressor((4,), max_iter=3, random_state=0,
                                                 device="cpu"))
    assert not _caught(lambda: wrapped.fit(X, y))


def test_standardised_and_one_hot_data_do_not_warn(noisy):
    X, y = noisy
    rng = np.random.default_rng(1)
    rare = (rng.random(X.shape[0]) < 0.01).astype(float)   # a rare one-hot level
    constant = np.full(X.shape[0], 1.0)
    X = np.column_stack([(X - X.mean(0)) / X.std(0), rare, constant])
    y = (y - y.mean()) / y.std()
    assert not _caught(lambda: MLPRegressor((4,), max_iter=3, device="cpu").fit(X, y))


def test_poisson_counts_are_not_judged_by_their_mean(noisy):
    X, _ = noisy
    counts = np.random.default_rng(0).poisson(40.0, size=X.shape[0]).astype(float)
    assert not _caught(lambda: MLPRegressor((4,), loss="poisson", max_iter=3,
                                            device="cpu").fit(X, counts))
