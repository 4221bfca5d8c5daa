"""Epochs in blocks between host reads (issue 10): the stopping rule stays exact."""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, training

CASES = {
    "gd": dict(solver="gd", learning_rate_init=0.1),
    "gd-auto": dict(solver="gd", learning_rate_init="auto"),
    "lbfgs": dict(solver="lbfgs"),
    "adam": dict(solver="adam", batch_size=50, learning_rate_init=0.01),
    "sgd-adaptive": dict(solver="sgd", batch_size=50, learning_rate_init=0.05,
                         learning_rate="adaptive"),
}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 4))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(300)
    return X, y


@pytest.fixture
def long_blocks(monkeypatch):
    # Blocks grow to MAX_BLOCK at once, so a stop falls inside a block.
    monkeypatch.setattr(training, "BLOCK_SECONDS", 1e3)


def fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPRegressor((8,), device="cpu", random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("case", ["gd", "gd-auto", "adam"])
def test_a_fit_that_stops_itself_equals_a_fit_of_exactly_that_many_epochs(data, case,
                                                                          long_blocks):
    X, y = data
    stopped = fit(X, y, tol=1e-3, n_iter_no_change=5, max_iter=3000, **CASES[case])
    n = stopped.n_iter_
    assert 10 < n < 3000 and n % training.MAX_BLOCK != 0   # it stopped inside a block
    exact = fit(X, y, tol=0.0, n_iter_no_change=10**6, max_iter=n, **CASES[case])
    assert exact.n_iter_ == n and exact.loss_curve_ == stopped.loss_curve_
    for a, b in zip(stopped.coefs_ + stopped.intercepts_, exact.coefs_ + exact.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", list(CASES))
def test_blocks_change_nothing_but_the_reads(data, case, monkeypatch):
    X, y = data
    params = dict(tol=1e-3, n_iter_no_change=5, max_iter=400, **CASES[case])
    seen = {}
    for name, seconds, most in (("one by one", 0.0, 1), ("in blocks", 1e3, 64)):
        monkeypatch.setattr(training, "BLOCK_SECONDS", seconds)
        monkeypatch.setattr(training, "MAX_BLOCK", most)
        calls = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLPRegressor((8,), device="cpu", random_state=0, **params).fit(
                X, y, callback=lambda *args: calls.append(args))
        seen[name] = (model, calls)
    (a, calls_a), (b, calls_b) = seen["one by one"], seen["in blocks"]
    assert a.n_iter_ == b.n_iter_ and a.loss_curve_ == b.loss_curve_ and calls_a == calls_b
    assert a.learning_rates_ == b.learning_rates_ and a.t_ == b.t_
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)
    # The generator is where the epoch-by-epoch run left it: a warm start goes on alike.
    assert a._rng.bit_generator.state == b._rng.bit_generator.state


def test_block_sizes_grow_while_epochs_are_quick_and_reset_after_a_replay():
    from gpumlp.solvers import SGD

    sgd = SGD(0.1)
    assert training._next_block_size(sgd, 1, 1, 1e-6) == 2        # doubles at most
    assert training._next_block_size(sgd, 64, 64, 64e-6) == training.MAX_BLOCK
    assert training._next_block_size(sgd, 8, 8, 8.0) == 1          # slow epochs: one
    assert training._next_block_size(sgd, 8, 3, 1e-6) == 1         # cut short: replay
