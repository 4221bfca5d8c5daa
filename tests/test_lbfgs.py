"""L-BFGS: the solver on a known quadratic, and its stopping criteria in the estimator."""

import hashlib
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, training
from gpumlp._sklearn_compat import convergence_warning
from gpumlp.solvers import LBFGS

ConvergenceWarning = convergence_warning()


def _quadratic(n=12, seed=0, rounding=0):
    """``f(x) = x.A x / 2 - b.x`` with a condition number of 100, and a counter.

    ``rounding`` adds to each loss a rounding error of up to that many units
    of ``eps * |f|``, a fixed function of ``x`` (as a machine's rounding is),
    so a test sees on every CPU the noise that one CPU's summation order gives.
    """
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = Q @ np.diag(np.geomspace(1.0, 100.0, n)) @ Q.T
    b = rng.standard_normal(n)
    calls = []

    def objective(params):
        (x,) = params
        calls.append(x.copy())
        f = 0.5 * x @ A @ x - b @ x
        if rounding:
            u = int.from_bytes(hashlib.sha256(x.tobytes()).digest()[:8], "little") / 2.0**64
            f += (2 * u - 1) * rounding * np.finfo(np.float64).eps * abs(f)
        return np.asarray(f), [A @ x - b]

    return objective, np.linalg.solve(A, b), calls


# Without rounding; with the few units of it the loss has on some CPU (an
# AVX2 OpenBLAS gave +-20 units here); with ten times that.
@pytest.mark.parametrize("rounding", [0, 20, 200])
def test_lbfgs_minimises_a_quadratic_with_strong_wolfe_steps(rounding):
    objective, solution, calls = _quadratic(rounding=rounding)
    solver = LBFGS(0.0, gtol=1e-7, ftol=0.0)
    params, state = [np.zeros_like(solution)], solver.init_state(None)
    previous = float(objective(params)[0])
    iterations = longest = 0
    while not state.stop and iterations < 100:
        old = params
        params, state, _ = solver.update(params, state, objective)
        iterations += 1
        if state.stop and params is old:
            break
        # Each accepted step decreased the loss (the Wolfe sufficient decrease)
        # or, where the slope decided, rose by at most the loss's rounding band.
        band = solver.noise * np.finfo(np.float64).eps * abs(previous)
        assert float(state.loss) <= previous + band
        previous = float(state.loss)
        longest = max(longest, len(state.steps))
    assert state.converged and "gradient" in state.stop, state.stop
    np.testing.assert_allclose(params[0], solution, rtol=0, atol=1e-6)
    # SciPy's L-BFGS-B takes 51 iterations here; gradient descent with the
    # best fixed step would need about 1500 (condition number 100, to 1e-7).
    assert iterations <= 60
    assert state.n_fun == len(calls) - 1  # the test evaluated the start once itself
    assert longest == solver.memory  # the memory fills up, and no further


def test_lbfgs_honours_max_fun():
    objective, _, calls = _quadratic()
    solver = LBFGS(0.0, gtol=0.0, max_fun=7)
    params, state = [np.zeros(12)], solver.init_state(None)
    for _ in range(50):
        params, state, _ = solver.update(params, state, objective)
        if state.stop:
            break
    assert not state.converged and "max_fun (7)" in state.stop
    assert len(calls) <= 7


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((150, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]
    return X, y


def test_lbfgs_fits_better_than_gradient_descent_in_as_many_iterations(data):
    X, y = data
    common = dict(hidden_layer_sizes=(10,), max_iter=100, random_state=0, device="cpu",
                  tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lbfgs = MLPRegressor(solver="lbfgs", **common).fit(X, y)
        gd = MLPRegressor(solver="gd", learning_rate_init=0.1, **common).fit(X, y)
    assert lbfgs.score(X, y) > 0.95 > gd.score(X, y)
    assert lbfgs.loss_ == pytest.approx(np.mean((lbfgs.predict(X) - y) ** 2), rel=1e-3)


def test_lbfgs_counts_loss_evaluations_against_max_fun(data, monkeypatch):
    X, y = data
    calls = []
    # Every loss evaluation of a batch in memory goes through this function.
    real = training.rows_loss_and_grads
    monkeypatch.setattr(training, "rows_loss_and_grads",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    model = MLPRegressor((5,), solver="lbfgs", max_fun=9, max_iter=500, device="cpu",
                         random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"max_fun \(9\)"):
        model.fit(X, y)
    assert len(calls) == 9
    assert model.n_iter_ < 9


def test_lbfgs_warns_at_max_iter_and_stops_quietly_when_converged(data):
    X, y = data
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\)"):
        model = MLPRegressor((5,), solver="lbfgs", max_iter=3, device="cpu",
                             random_state=0).fit(X, y)
    assert model.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        # A tol this large is met at the start: no step is needed.
        model = MLPRegressor((5,), solver="lbfgs", tol=1e6, device="cpu",
                             random_state=0).fit(X, y)
    assert model.n_iter_ == 1


def test_lbfgs_has_no_partial_fit(data):
    X, y = data
    with pytest.raises(AttributeError, match="only available for stochastic optimizers"):
        MLPRegressor(solver="lbfgs", device="cpu").partial_fit(X, y)


@pytest.mark.parametrize("alpha", [1e170, 1e308])
def test_a_slope_beyond_the_dtype_is_no_convergence(alpha):
    """With alpha so large that |g|**2 overflows float64, the first step 1/sqrt(-slope)
    was 0, the search took it, the loss did not change, and the fit stopped as
    converged after 1 iteration with the weights never moved (adversarial round 17;
    scikit-learn warns ABNORMAL). It is no step, and no convergence."""
    from gpumlp import ConvergenceWarning, MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X[:, 0] - X[:, 1]
    model = MLPRegressor((4,), solver="lbfgs", alpha=alpha, max_iter=50, dtype="float64",
                         random_state=0)
    with pytest.warns(ConvergenceWarning, match="beyond float64's range"):
        model.fit(X, y)
    assert not model._trainer.state.converged
