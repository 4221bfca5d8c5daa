"""``learning_rate_init="auto"``: the curvature estimate, the adaptive rule, and the estimator."""

import warnings
from dataclasses import replace

import numpy as np
import pytest

from gpumlp import MLPRegressor, load, save, step_size
from gpumlp.datasets import make_friedman1
from gpumlp.devices import get_device, to_numpy
from gpumlp.solvers import AutoGD, AutoGDState
from gpumlp.training import LossIncreasedWarning


def _standardise(X, y):
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


@pytest.fixture(scope="module")
def friedman():
    return _standardise(*make_friedman1(500, random_state=0))


@pytest.fixture(scope="module")
def diabetes():
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return _standardise(data.data, data.target)


def quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


def _quadratic(device, dtype):
    """``f(p) = 1/2 p.A p`` over two parameter arrays, and A's largest eigenvalue."""
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    eigenvalues = np.array([9.0, 4.0, 2.0, 1.0, 0.5, 0.1])
    A = Q @ np.diag(eigenvalues) @ Q.T
    xp = device.xp
    A_d = device.asarray(A, dtype=getattr(xp, dtype))

    def objective(params):
        p = xp.concat([xp.reshape(q, (-1,)) for q in params])
        g = A_d @ p
        return 0.5 * xp.sum(p * g), [xp.reshape(g[:4], (2, 2)), g[4:]]

    params = [device.asarray(rng.standard_normal((2, 2)), dtype=getattr(xp, dtype)),
              device.asarray(rng.standard_normal(2), dtype=getattr(xp, dtype))]
    return objective, params, A, eigenvalues.max()


def test_hessian_vector_product_is_exact_on_a_quadratic(backend):
    _, device = backend
    with device.context():   # JAX computes in float64 only inside its context
        objective, params, A, _ = _quadratic(device, "float64")
        v = [device.xp.ones_like(p) for p in params]
        got = step_size.hessian_vector_product(objective, params, v, 1e-3)
        flat = np.concatenate([to_numpy(g).ravel() for g in got])
    np.testing.assert_allclose(flat, A @ np.ones(6), rtol=1e-9)


def test_power_iteration_finds_the_largest_eigenvalue(backend, dtype):
    _, device = backend
    with device.context():
        objective, params, _, largest = _quadratic(device, dtype)
        _, grads = objective(params)
        estimate = step_size.largest_curvature(objective, params, grads, n_iter=40)
    assert estimate == pytest.approx(largest, rel=1e-3 if dtype == "float32" else 1e-8)


def test_zero_gradient_gives_the_fallback_rate(backend):
    _, device = backend
    with device.context():
        objective, params, _, _ = _quadratic(device, "float64")
        zeros = [device.xp.zeros_like(p) for p in params]
        curvature = step_size.largest_curvature(objective, zeros, zeros)
    assert np.isnan(curvature)
    assert step_size.initial_learning_rate(curvature) == step_size.FALLBACK
    assert step_size.initial_learning_rate(4.0) == pytest.approx(step_size.SAFETY / 4.0)


EPS64 = float(np.finfo(np.float64).eps)


@pytest.mark.parametrize("loss, ss, sy, accept, rate", [
    # From loss 1.0 with |g|^2 = 10 and rate 0.2, Armijo asks for a fall of 2e-4.
    (0.5, 4.0, 2.0, True, 2.0),                    # accepted: the rate is s.s / s.y
    (1.0 - 2e-4, 4.0, 8.0, True, 0.5),             # exactly the fall asked for
    (1.0 - 1e-4, 4.0, 8.0, False, 0.1),            # too small a fall: take back, shrink
    (1.0 - 2e-4 + 1e-15, 4.0, 8.0, True, 0.5),     # short of it by rounding noise only
    (0.5, 4.0, 0.0, True, 0.2),                    # no positive curvature: hold
    (0.5, 4.0, -1.0, True, 0.2),
    (0.5, 1.0, 1e-300, True, step_size.MAX_RATE),  # flat along the step: capped
    (0.5, 1.0, 3.0, True, 0.3333),                 # four significant digits
    (float("nan"), 4.0, 2.0, False, 0.02),         # not finite: the largest cut
    (float("inf"), 4.0, 2.0, False, 0.02),
])
def test_the_step_decisions(loss, ss, sy, accept, rate):
    got = step_size.next_learning_rate(0.2, 1.0, 10.0, loss, ss, sy, eps=EPS64)
    assert got == (accept, pytest.approx(rate, rel=1e-12))


@pytest.mark.parametrize("loss, reference, accept", [
    (1.2, 1.5, True),             # above the current loss, below the recent highest
    (1.5 - 2e-4, 1.5, True),      # exactly Armijo's fall below the reference
    (1.5 - 1e-4, 1.5, False),     # short of it
    (1.0 - 1e-4, 0.5, False),     # a lower reference is no reference: the monotone test
    (1.0 - 2e-4, 0.5, True),
])
def test_the_non_monotone_test_compares_with_the_recent_highest_loss(loss, reference, accept):
    got, _ = step_size.next_learning_rate(0.2, 1.0, 10.0, loss, 4.0, 2.0, eps=EPS64,
                                          reference_loss=reference)
    assert got is accept


@pytest.mark.parametrize("rate, want", [
    (0.3, 0.1),     # the parabola's minimiser, found exactly
    (0.15, 0.075),  # a minimiser past half the failed rate: half
    (2.0, 0.2),     # one far below a tenth: a tenth
])
def test_a_step_taken_back_is_retried_at_the_parabola_s_minimiser(rate, want):
    """On ``f(t) = 1 - 10 t + 50 t**2`` (minimum at t = 0.1) the retry lands there."""
    def f(t):
        return 1.0 - 10.0 * t + 50.0 * t * t

    assert step_size.shrunk_learning_rate(rate, f(0.0), 10.0, f(rate)) \
        == pytest.approx(want, rel=1e-12)


def test_a_training_state_written_before_the_newer_fields_continues():
    """A state saved by an earlier version (without the fields added since) loads.

    The missing fields take the fresh state's values; the next call evaluates
    where it stands and goes on at the saved rate.
    """
    from gpumlp.solvers import state_from_arrays, state_to_arrays

    objective, params, _, _ = _quadratic(get_device("cpu"), "float64")
    solver = AutoGD()
    _, state = params, solver.init_state(params)
    params, state, _ = solver.update(params, state, objective)
    arrays, description = state_to_arrays(state)
    for name in AutoGDState.ADDED_LATER:
        del description["fields"][name]
    arrays = {k: v for k, v in arrays.items()
              if not k.startswith(("flat_grads", "best_params"))}
    old = state_from_arrays(description, arrays, solver.init_state(params))
    assert np.isnan(old.grad_sq) and np.isnan(old.next_rate) and np.isnan(old.best_loss)
    assert old.recent_losses == ()
    assert old.learning_rate == state.learning_rate
    loss_before = float(objective(params)[0])
    params, resumed, loss = solver.update(params, solver.begin_fit(old), objective)
    assert float(loss) == loss_before and resumed.learning_rate == state.learning_rate
    assert float(objective(params)[0]) <= loss_before
    with pytest.raises(ValueError, match="has fields"):
        description["fields"]["bogus"] = description["fields"]["loss"]
        state_from_arrays(description, arrays, solver.init_state(params))
    # Only those fields: any other missing one is a damaged state.
    del description["fields"]["bogus"]
    del description["fields"]["loss"]
    with pytest.raises(ValueError, match="has fields"):
        state_from_arrays(description, arrays, solver.init_state(params))


@pytest.mark.parametrize("width", [8, 32])
def test_the_weights_returned_are_the_best_the_fit_measured(diabetes, width):
    """A fit may end on any epoch, in the middle of a rise the non-monotone test allowed:
    its weights are the accepted point of lowest loss, never worse than any loss recorded.

    (A tried step is judged only after it is taken; a fit must not hand back
    one that the next step would have refused, nor the top of a rise.)
    """
    X, y = diabetes
    eps = np.finfo(np.float64).eps
    restored = 0
    for max_iter in range(1, 41):
        model = quiet_fit(MLPRegressor((width,), alpha=0.0, max_iter=max_iter, tol=0,
                                       n_iter_no_change=40, random_state=0, device="cpu",
                                       dtype="float64"), X, y)
        assert model.n_iter_ == max_iter
        mse = float(np.mean((model.predict(X) - y) ** 2))
        assert mse <= min(model.loss_curve_) * (1 + 64 * eps), max_iter
        state = model._trainer.state
        if state.best_loss < state.loss:   # the search stood higher: its best returned
            restored += 1
            assert mse == pytest.approx(state.best_loss, rel=1e-12)
    assert restored > 0   # the case arose: fits that ended during a rise


def test_a_fit_that_ends_on_a_rise_returns_its_best_point():
    """The solver's own hook: the best accepted point, and only when the search is higher."""
    objective, params, _, _ = _quadratic(get_device("cpu"), "float64")
    solver = AutoGD()
    state = solver.init_state(params)
    for _ in range(4):
        params, state, _ = solver.update(params, state, objective)
    assert state.best_loss == state.loss        # a quadratic: each step lower
    same, kept = solver.end_fit(params, state)
    assert same is params and kept is state
    higher = replace(state, params=[p + 1.0 for p in params], loss=state.best_loss + 1.0)
    back, ended = solver.end_fit(higher.params, higher)
    assert ended is higher                      # the search itself stays where it was
    for got, want in zip(back, state.best_params):
        np.testing.assert_array_equal(got, want)


def test_a_call_that_continues_the_search_goes_on_from_where_it_stood(diabetes, tmp_path):
    """fit k epochs (ending in a rise, so its best point is returned), save, load,
    partial_fit m times: the epochs of one fit of k + m, and the same best point."""
    X, y = diabetes
    params = dict(hidden_layer_sizes=(32,), alpha=0.0, tol=0, n_iter_no_change=100,
                  random_state=0, device="cpu", dtype="float64")
    for k in range(5, 40):
        first = quiet_fit(MLPRegressor(max_iter=k, **params), X, y)
        state = first._trainer.state
        if state.best_loss < state.loss:
            break
    else:
        pytest.fail("no fit ended during a rise")
    save(first, tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz").set_params(device="cpu")
    for _ in range(6):
        loaded.partial_fit(X, y)
    whole = quiet_fit(MLPRegressor(max_iter=k + 6, **params), X, y)
    assert loaded.loss_curve_ == whole.loss_curve_
    assert loaded.learning_rates_ == whole.learning_rates_
    for got, want in zip(loaded.coefs_ + loaded.intercepts_, whole.coefs_ + whole.intercepts_):
        np.testing.assert_array_equal(got, want)
    # Other weights (a user's, or a warm start's fresh state) start a new search there.
    moved = load(tmp_path / "m.npz").set_params(device="cpu")
    moved.coefs_[0] = moved.coefs_[0] * 0.5
    start = float(np.mean((moved.predict(X) - y) ** 2))
    moved.partial_fit(X, y)
    assert moved.loss_curve_[-1] == pytest.approx(start, rel=1e-12)


def test_with_no_memory_the_loss_never_rises(diabetes, monkeypatch):
    """MEMORY = 0 is the monotone test; the default lets the loss rise, never above the
    highest of the last MEMORY + 1 points accepted, nor above where the fit began."""
    X, y = diabetes
    eps = 64 * np.finfo(np.float64).eps

    def curve():
        model = quiet_fit(MLPRegressor((32,), max_iter=80, tol=0, n_iter_no_change=80,
                                       random_state=0, device="cpu", dtype="float64"), X, y)
        return np.asarray(model.loss_curve_)

    loss = curve()
    # A refused step leaves the loss exactly where it was: the accepted points'
    # losses are the curve without its repeats.
    accepted = loss[np.r_[True, np.diff(loss) != 0]]
    memory = step_size.MEMORY
    for t in range(1, len(accepted)):
        window = accepted[max(0, t - memory - 1):t]
        assert accepted[t] <= window.max() * (1 + eps), t
    assert np.any(np.diff(accepted) > 0)      # it did rise
    assert np.all(loss <= loss[0] * (1 + eps))
    monkeypatch.setattr(step_size, "MEMORY", 0)
    monotone = curve()
    assert np.all(np.diff(monotone) <= eps * monotone[:-1])


def test_each_call_starts_from_the_loss_of_its_own_rows(friedman, diabetes):
    """partial_fit on new rows, and a call after early stopping restored its best weights,
    record first the loss of those rows at the weights the call starts from."""
    X, y = friedman
    model = MLPRegressor((8,), alpha=0.0, random_state=0, device="cpu", dtype="float64")
    for _ in range(3):
        model.partial_fit(X[:250], y[:250])
    start = float(np.mean((model.predict(X[250:]) - y[250:]) ** 2))
    model.partial_fit(X[250:], y[250:])
    assert model.loss_curve_[-1] == pytest.approx(start, rel=1e-12)

    stopped = quiet_fit(MLPRegressor((8,), alpha=0.0, early_stopping=True, max_iter=400,
                                     random_state=0, device="cpu", dtype="float64"), X, y)
    best = float(np.mean((stopped.predict(X) - y) ** 2))
    # partial_fit refuses early_stopping=True, as scikit-learn's does (issue 21).
    stopped.set_params(early_stopping=False).partial_fit(X, y)
    assert stopped.loss_curve_[-1] == pytest.approx(best, rel=1e-12)


def test_the_rate_is_the_inverse_curvature_along_the_step(backend):
    """On a quadratic, ``s.s / s.y`` after one step is 1 / (a Rayleigh quotient of A)."""
    _, device = backend
    with device.context():
        objective, params, A, largest = _quadratic(device, "float64")
        solver = AutoGD()
        state = solver.init_state(params)
        p0 = np.concatenate([to_numpy(p).ravel() for p in params])
        params, state, _ = solver.update(params, state, objective)
    s = np.concatenate([to_numpy(p).ravel() for p in state.params]) - p0  # the first step
    assert np.linalg.norm(s) > 0   # it was taken
    rayleigh = s @ A @ s / (s @ s)
    assert state.next_rate == pytest.approx(1 / rayleigh, rel=5e-4)  # 4 digits
    assert 1 / largest <= state.next_rate <= 1 / 0.1


def test_the_first_rate_is_the_curvature_estimate_of_issue_14(friedman):
    """Issue 14 measured L = 7.1 at width 8 and 259 at width 512 on Friedman #1."""
    X, y = friedman
    model = quiet_fit(MLPRegressor((8,), max_iter=1, random_state=0, device="cpu"), X, y)
    assert isinstance(model._trainer.solver, AutoGD)
    curvature = step_size.SAFETY / model.learning_rates_[0]
    assert 4 < curvature < 12


@pytest.mark.parametrize("dataset", ["friedman", "diabetes"])
@pytest.mark.parametrize("width", [8, 256])
def test_auto_never_diverges(request, dataset, width):
    """No loss above the start (up to rounding) at any width, and real progress."""
    X, y = request.getfixturevalue(dataset)
    model = quiet_fit(MLPRegressor((width,), max_iter=60, tol=0, n_iter_no_change=60,
                                   random_state=0, device="cpu", dtype="float64"), X, y)
    curve = np.asarray(model.loss_curve_)
    assert np.all(np.isfinite(curve)) and model.n_iter_ == 60
    assert np.all(curve <= curve[0] * (1 + 64 * np.finfo(np.float64).eps))
    assert min(curve) < 0.9 * curve[0]
    rates = np.asarray(model.learning_rates_)
    assert model.learning_rate_ == rates[-1]
    assert np.any(rates[1:] > rates[:-1])  # it grows while the loss falls


def test_auto_is_within_ten_percent_of_the_best_fixed_rate(friedman):
    """Issue 14's target, on one case (the script covers twelve)."""
    X, y = friedman

    def final_loss(rate):
        model = MLPRegressor((32,), learning_rate_init=rate, max_iter=150, tol=0,
                             random_state=0, device="cpu", dtype="float64")
        try:
            return quiet_fit(model, X, y).loss_curve_[-1]
        except ValueError:  # diverged
            return np.inf

    best = min(final_loss(rate) for rate in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0))
    assert final_loss("auto") <= 1.10 * best


def test_a_fixed_rate_that_raises_the_loss_suggests_auto(friedman):
    X, y = friedman
    model = MLPRegressor((8,), learning_rate_init=1.0, max_iter=30, tol=0, random_state=0,
                         device="cpu")
    with pytest.warns(LossIncreasedWarning, match=r'Lower learning_rate_init \(now 1\) or '
                                                  r'pass learning_rate_init="auto"'):
        model.fit(X, y)
    assert model.learning_rate_ == 1.0 and model.learning_rates_ == [1.0] * model.n_iter_


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_auto_for_minibatch_solvers_is_a_fixed_rate(friedman, solver):
    X, y = friedman
    model = quiet_fit(MLPRegressor((8,), solver=solver, max_iter=2, random_state=0,
                                   device="cpu"), X, y)
    assert model.learning_rates_ == [0.01, 0.01] and model.learning_rate_ == 0.01


def test_partial_fit_keeps_the_rate_and_warm_start_estimates_it_again(friedman):
    X, y = friedman
    params = dict(hidden_layer_sizes=(8,), max_iter=1, tol=0, random_state=0, device="cpu",
                  dtype="float64")
    stepwise = MLPRegressor(**params)
    for _ in range(6):
        stepwise.partial_fit(X, y)
    whole = quiet_fit(MLPRegressor(**{**params, "max_iter": 6}), X, y)
    assert stepwise.learning_rates_ == whole.learning_rates_
    for got, want in zip(stepwise.coefs_, whole.coefs_):
        np.testing.assert_array_equal(got, want)
    warm = quiet_fit(MLPRegressor(**{**params, "max_iter": 3}), X, y)
    quiet_fit(warm.set_params(warm_start=True), X, y)
    assert len(warm.learning_rates_) == 6
    assert warm.learning_rates_[3] != whole.learning_rates_[3]  # estimated afresh


def test_the_rates_are_saved_and_loaded(friedman, tmp_path):
    X, y = friedman
    model = quiet_fit(MLPRegressor((8,), max_iter=5, random_state=0, device="cpu"), X, y)
    save(model, tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert loaded.learning_rate_ == model.learning_rate_
    assert loaded.learning_rates_ == model.learning_rates_
    assert loaded.learning_rate_init == "auto"
    fixed = quiet_fit(MLPRegressor((8,), learning_rate_init=0.05, max_iter=2, device="cpu"),
                      X, y)
    save(fixed, tmp_path / "f.npz")
    assert load(tmp_path / "f.npz").learning_rate_ == 0.05


def test_a_bad_learning_rate_text_is_refused(friedman):
    X, y = friedman
    with pytest.raises(ValueError, match="learning_rate_init must be 'auto' or a number > 0"):
        MLPRegressor(learning_rate_init="fast").fit(X, y)


def test_the_first_plateau_goes_on_with_the_monotone_test(monkeypatch):
    solver = AutoGD()
    objective, params, _, _ = _quadratic(get_device("cpu"), "float64")
    state = replace(solver.init_state(params), recent_losses=(2.0, 1.5))
    switched, stop = solver.on_plateau(state)
    assert not stop and switched.monotone and switched.recent_losses == ()
    assert solver.on_plateau(switched)[1] is True
    begun = solver.begin_fit(switched)
    assert begun.stale and begun.monotone        # a call going on with the search keeps it
    _, fresh, _ = solver.update(params, begun, objective)   # another point: a new search
    assert not fresh.monotone and not fresh.stale
    monkeypatch.setattr(step_size, "MEMORY", 0)
    assert solver.on_plateau(state)[1] is True             # already monotone: stop


def test_after_the_first_plateau_the_loss_never_rises(friedman, capsys):
    X, y = friedman
    # Friedman #1 without noise: the loss keeps falling relative to itself, so
    # a tol of 1e-3 (a fraction of the loss, for gd) brings the plateaus.
    model = quiet_fit(MLPRegressor((32,), max_iter=3000, tol=1e-3, verbose=True,
                                   random_state=0, device="cpu", dtype="float64"), X, y)
    lines = capsys.readouterr().out.splitlines()
    switch = [i for i, line in enumerate(lines) if "Going on with the monotone test" in line]
    assert len(switch) == 1 and lines[-1].endswith("Stopping.")
    # Every line before it is one epoch's "Iteration k, loss = ...".
    first = switch[0]
    assert all(line.startswith("Iteration") for line in lines[:first])
    curve = np.asarray(model.loss_curve_)
    # curve[first] is where epoch `first`, the last under the non-monotone test, ended.
    before, after = curve[:first], curve[first:]
    assert np.any(np.diff(before) > 0)                   # it rose before
    assert np.all(np.diff(after) <= 64 * np.finfo(np.float64).eps * after[:-1])
    assert model.n_iter_ > first + model.n_iter_no_change


def test_loss_is_the_loss_at_the_weights_returned(diabetes, tmp_path):
    """``loss_`` (and the CLI's "final loss") for "auto": the returned weights' loss,
    which a fit ending during a rise has below the curve's last; kept in model files."""
    X, y = diabetes
    for max_iter in range(5, 40):
        model = quiet_fit(MLPRegressor((32,), alpha=0.0, max_iter=max_iter, tol=0,
                                       n_iter_no_change=100, random_state=0, device="cpu",
                                       dtype="float64"), X, y)
        mse = float(np.mean((model.predict(X) - y) ** 2))
        assert model.loss_ == pytest.approx(mse, rel=1e-12)
        if model.loss_ < model.loss_curve_[-1]:
            break
    else:
        pytest.fail("no fit ended during a rise")
    save(model, tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").loss_ == model.loss_
    fixed = quiet_fit(MLPRegressor((8,), learning_rate_init=0.01, max_iter=3, device="cpu"),
                      X, y)
    assert fixed.loss_ == fixed.loss_curve_[-1]
