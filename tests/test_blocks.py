"""Epochs in blocks between host reads (issue 10): the stopping rule stays exact."""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, step_size, training

CASES = {
    "gd": dict(solver="gd", learning_rate_init=0.1),
    "gd-auto": dict(solver="gd", learning_rate_init="auto"),
    "lbfgs": dict(solver="lbfgs"),
    "adam": dict(solver="adam", batch_size=50, learning_rate_init=0.01),
    "sgd-adaptive": dict(solver="sgd", batch_size=50, learning_rate_init=0.05,
                         learning_rate="adaptive"),
}


def fit(X, y, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPRegressor((8,), device="cpu", random_state=0, **params).fit(X, y)


@pytest.mark.parametrize("case", ["gd", "gd-auto", "adam"])
def test_a_fit_that_stops_itself_equals_a_fit_of_exactly_that_many_epochs(sine_rows, case,
                                                                          long_blocks,
                                                                          monkeypatch):
    if case == "gd-auto":
        # Its first plateau changes its rule (the monotone test from there), which a
        # fit without the stopping rule never does; with the monotone test throughout,
        # the stop itself is what is compared.
        monkeypatch.setattr(step_size, "MEMORY", 0)
    X, y = sine_rows
    stopped = fit(X, y, tol=1e-3, n_iter_no_change=5, max_iter=3000, **CASES[case])
    n = stopped.n_iter_
    assert 10 < n < 3000 and n % training.MAX_BLOCK != 0   # it stopped inside a block
    exact = fit(X, y, tol=0.0, n_iter_no_change=10**6, max_iter=n, **CASES[case])
    assert exact.n_iter_ == n and exact.loss_curve_ == stopped.loss_curve_
    for a, b in zip(stopped.coefs_ + stopped.intercepts_, exact.coefs_ + exact.intercepts_):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", list(CASES))
def test_blocks_change_nothing_but_the_reads(sine_rows, case, monkeypatch):
    X, y = sine_rows
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


def test_an_interrupt_in_the_callback_keeps_the_recorded_epoch_whole(sine_rows):
    X, y = sine_rows
    params = dict(solver="sgd", batch_size=20, max_iter=50, tol=0.0, n_iter_no_change=10**6)

    def stop_at_five(epoch, loss, validation_loss):
        if epoch == 5:
            raise KeyboardInterrupt

    model = MLPRegressor((8,), device="cpu", random_state=0, **params)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, callback=stop_at_five)
    five = fit(X, y, **{**params, "max_iter": 5})
    assert len(model.loss_curve_) == 5 and model.t_ == 5 * len(X) == five.t_
    for a, b in zip(model.coefs_ + model.intercepts_, five.coefs_ + five.intercepts_):
        np.testing.assert_array_equal(a, b)
    six = fit(X, y, **{**params, "max_iter": 6})
    model.partial_fit(X, y)   # goes on from epoch 5, exactly
    assert model.loss_curve_ == six.loss_curve_


def test_a_checkpoint_taken_in_the_callback_resumes_exactly_with_a_schedule(sine_rows, tmp_path):
    from gpumlp import io

    X, y = sine_rows
    params = dict(solver="sgd", batch_size=50, learning_rate="invscaling", power_t=0.3,
                  learning_rate_init=0.2, tol=0.0, n_iter_no_change=10**6, dtype="float64")
    snapshots = []
    model = MLPRegressor((8,), device="cpu", random_state=0, max_iter=6, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, callback=lambda epoch, *_: epoch == 3
                  and snapshots.append(model._snapshot()))
    io.save(snapshots[0], tmp_path / "at3.npz")
    resumed = io.load(tmp_path / "at3.npz")
    resumed.set_params(warm_start=True, max_iter=3, device="cpu")
    with warnings.catch_warnings(), resumed._resuming():
        warnings.simplefilter("ignore")
        resumed.fit(X, y)
    assert resumed.loss_curve_ == model.loss_curve_
    assert resumed.learning_rates_ == model.learning_rates_
    for a, b in zip(resumed.coefs_ + resumed.intercepts_, model.coefs_ + model.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_after_a_divergence_weights_state_and_history_describe_one_epoch(sine_rows):
    from gpumlp import TrainingDivergedError

    X, y = sine_rows
    params = dict(solver="sgd", momentum=0.9, batch_size=50, learning_rate_init=0.005,
                  activation="identity", tol=0.0, n_iter_no_change=10**6, max_iter=500)
    model = MLPRegressor((8,), device="cpu", random_state=0, **params)
    with pytest.raises(TrainingDivergedError):
        model.fit(X, y * 100)
    n = len(model.loss_curve_)
    assert n >= 1 and model.t_ == n * len(X)
    again = fit(X, y * 100, **{**params, "max_iter": n})
    for a, b in zip(model.coefs_ + model.intercepts_, again.coefs_ + again.intercepts_):
        np.testing.assert_array_equal(a, b)
