"""Issue 13's estimator-level items: no silent wrong answers from score, casts or divergence."""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, StandardizedRegressor, TrainingDivergedError
from gpumlp._sklearn_compat import ConvergenceWarning
from gpumlp.training import LossIncreasedWarning


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 6))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2] + 0.1 * rng.standard_normal(2000)
    return X, y


def quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y)


def test_score_takes_y_as_a_column_or_a_vector_alike(data):
    X, y = data
    model = quiet_fit(MLPRegressor((8,), learning_rate_init=0.1, max_iter=200,
                                   device="cpu", random_state=0), X, y)
    assert model.score(X, y[:, None]) == pytest.approx(model.score(X, y), rel=1e-12)
    assert model.score(X, y) > 0.5
    with pytest.raises(ValueError, match=r"one column per output"):
        model.score(X, np.column_stack([y, y]))


def test_standardized_score_refuses_a_mismatched_target(data):
    X, y = data
    model = quiet_fit(StandardizedRegressor(MLPRegressor((8,), max_iter=20, device="cpu")),
                      X, y)
    assert model.score(X, y[:, None]) == pytest.approx(model.score(X, y), rel=1e-12)
    with pytest.raises(ValueError, match=r"one column per output"):
        model.score(X, np.column_stack([y, y]))


@pytest.mark.parametrize("where", ["X", "y"])
def test_values_beyond_float32s_limits_are_refused_before_the_cast(data, where):
    # Issue 20 §3: refused by the one guard of the dtype's limits, before the
    # cast, naming the limit and float64 (where the value is within its limit).
    X, y = data
    X, y = X.copy(), y.copy()
    (X if where == "X" else y)[3] = 1e30
    with pytest.raises(ValueError, match=rf"{where} holds values up to 1e\+30, beyond "
                                         r".* in float32.*dtype='float64'"):
        MLPRegressor((4,), max_iter=2, dtype="float32", device="cpu").fit(X, y)
    # The same data is within float64's limits.
    quiet_fit(MLPRegressor((4,), max_iter=2, dtype="float64", device="cpu"), X, y)


def test_a_rising_loss_is_never_called_convergence(data):
    X, y = data
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    model = MLPRegressor((100,), learning_rate_init=1.0, max_iter=300, device="cpu",
                         random_state=0)
    with pytest.warns(LossIncreasedWarning, match=r"Lower learning_rate_init \(now 1\)"):
        quiet_fit(model, X, y)
    assert model.loss_curve_[-1] > model.loss_curve_[0]


def test_a_healthy_fit_stays_quiet(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # gd's tol is a fraction of the loss (issue 21); this one stops well before 3000.
        model = MLPRegressor((16,), learning_rate_init=0.1, max_iter=3000, tol=1e-3,
                             device="cpu", random_state=0).fit(X, y)
    assert model.loss_curve_[-1] < model.loss_curve_[0]


def test_kept_weights_after_divergence_are_those_whose_loss_was_finite(data):
    X, y = data
    X = X.astype(np.float32)
    model = MLPRegressor((16,), "relu", learning_rate_init=10.0, max_iter=500,
                         dtype="float32", device="cpu", random_state=0)
    with pytest.raises(TrainingDivergedError, match="last epoch with a finite loss"):
        model.fit(X, (y * 1e6).astype(np.float32))
    assert all(np.all(np.isfinite(W)) for W in model.coefs_ + model.intercepts_)
    with np.errstate(over="ignore", invalid="ignore"):
        y_pred = model.predict(X)
    assert np.all(np.isfinite(y_pred))


def test_cli_refuses_a_target_beyond_float32_and_trains_it_in_float64(tmp_path, capsys):
    from gpumlp.cli import main

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    np.save(tmp_path / "big.npy", np.column_stack([X, X.sum(axis=1) * 1e300]))
    args = ["train", "--data", str(tmp_path / "big.npy"), "--epochs", "300", "--quiet",
            "--out", str(tmp_path / "m.npz")]
    assert main(args) == 2
    assert "too large for float32" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()
    assert main(args + ["--dtype", "float64"]) == 0
    report = capsys.readouterr().out
    line = next(line for line in report.splitlines() if line.startswith("test "))
    test_r2 = float(line.split("R^2")[1])
    assert test_r2 > 0.9


def test_ctrl_c_before_the_first_epoch_ends_says_so_and_writes_nothing(monkeypatch, capsys,
                                                                        tmp_path):
    from gpumlp.cli import main
    from gpumlp.scaling import StandardizedRegressor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(StandardizedRegressor, "fit", interrupted)
    out = tmp_path / "m.npz"
    assert main(["train", "--epochs", "5", "--samples", "200", "--quiet",
                 "--out", str(out)]) == 130
    assert "interrupted after 0 epochs" in capsys.readouterr().err
    assert not out.exists()


def test_a_saved_state_of_another_solver_is_not_used_after_set_params(data, tmp_path):
    from gpumlp import io

    X, y = data
    model = quiet_fit(MLPRegressor((6,), solver="adam", max_iter=3, device="cpu",
                                   random_state=0), X, y)
    model.set_params(solver="sgd", learning_rate_init=0.01)
    io.save(model, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    loaded.set_params(device="cpu").partial_fit(X, y)   # an SGD state, freshly made
    assert np.isfinite(loaded.loss_curve_[-1])


def test_a_float64_target_is_not_rounded_to_float32_features(data):
    X, y = data
    X32, y64 = X.astype(np.float32), y * 1e36
    y64[0] = 1e39   # beyond float32, fine in float64
    with pytest.raises(ValueError, match=r"too large for float32 \(up to 1e\+39"):
        StandardizedRegressor(MLPRegressor((4,), max_iter=2, dtype="float32",
                                           device="cpu")).fit(X32, y64)
    model = quiet_fit(StandardizedRegressor(MLPRegressor((4,), max_iter=20, dtype="float64",
                                                         device="cpu")), X32, y64)
    assert model.y_mean_.dtype == np.float64 and np.all(np.isfinite(model.predict(X32)))


def test_warm_start_after_early_stopping_keeps_the_best_weights(data):
    X, y = data
    model = quiet_fit(MLPRegressor((16,), solver="adam", early_stopping=True, max_iter=200,
                                   learning_rate_init=0.01, device="cpu", random_state=0),
                      X, y)
    good = model.score(X, y)
    # A rate far too large: no epoch of the new call beats the best so far.
    quiet_fit(model.set_params(warm_start=True, learning_rate_init=1.0, max_iter=5), X, y)
    assert model.score(X, y) >= good - 0.05
