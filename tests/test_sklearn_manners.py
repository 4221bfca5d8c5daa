"""scikit-learn's manners that were missing (issue 21, item 7)."""

import warnings

import numpy as np
import pytest

from gpumlp import ConvergenceWarning, MLPRegressor, TrainingDivergedError, load, save
from gpumlp.training import Trainer


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return X, np.sin(X[:, 0]) + 0.1 * rng.normal(size=60)


def test_n_iter_no_change_may_be_infinite(data, tmp_path):
    X, y = data
    model = MLPRegressor((4,), solver="adam", tol=1e9, n_iter_no_change=np.inf, max_iter=15,
                         random_state=0, device="cpu")
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(15\)"):
        model.fit(X, y)
    assert model.n_iter_ == 15          # a huge tol, yet the rule never fired
    save(model, tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").n_iter_no_change == np.inf
    with pytest.raises((TypeError, ValueError), match="n_iter_no_change"):
        MLPRegressor(n_iter_no_change=-np.inf).fit(X, y)


def test_partial_fit_refuses_early_stopping(data):
    X, y = data
    model = MLPRegressor((4,), solver="adam", early_stopping=True, max_iter=5,
                         random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        model.partial_fit(X, y)
    model.set_params(early_stopping=False).partial_fit(X, y)   # the way out it names


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_batch_size_above_the_rows_warns_that_it_is_clipped(data, solver):
    """As scikit-learn warns (adversarial round 7, #221: clipped in silence)."""
    X, y = data
    model = MLPRegressor((4,), solver=solver, batch_size=100, max_iter=2, random_state=0,
                         device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    assert [str(w.message) for w in caught if "batch_size" in str(w.message)] == [
        "Got `batch_size` (100) larger than the 60 training rows; it is clipped to 60, one "
        "batch per epoch (as scikit-learn warns)."]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.set_params(batch_size=60).fit(X, y)
    assert not [w for w in caught if "batch_size" in str(w.message)]


def test_non_finite_weights_are_named_as_scikit_learn_does(data, monkeypatch):
    X, y = data
    real = Trainer._record

    def poisoned(self, run, epoch, values):   # the weights' check reads 0: not finite
        return real(self, run, epoch, [values[0], 0.0, *values[2:]])

    monkeypatch.setattr(Trainer, "_record", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"non-finite parameter weights, and the "
                                                    r"input data may contain large values"):
        MLPRegressor((4,), solver="adam", max_iter=3, device="cpu").fit(X, y)


def _ftol_stops(seeds, wanted=2):
    """(seed, X, y, evaluations, iterations) for the first ``wanted`` L-BFGS fits with
    tol=0 that stop on ftol."""
    rng = np.random.default_rng(1)
    found = []
    for seed in range(seeds):
        if len(found) == wanted:
            break
        n = int(rng.integers(4, 30))
        X, y = rng.normal(size=(n, 2)), rng.normal(size=n)
        model = MLPRegressor((2,), solver="lbfgs", tol=0.0, random_state=seed, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            try:
                model.fit(X, y)
            except ConvergenceWarning:
                continue
        state = model._trainer.state
        if "ftol" in state.stop:
            found.append((seed, X, y, state.n_fun, model.n_iter_))
    return found


def test_lbfgs_stopping_on_its_budget_always_warns():
    """A fit that converges (ftol) on the iteration that uses up max_fun or max_iter
    stopped on the budget, as scikit-learn's L-BFGS-B says: a ConvergenceWarning."""
    cases = _ftol_stops(12)
    assert cases
    for seed, X, y, n_fun, n_iter in cases:
        for limits in ({"max_fun": n_fun}, {"max_iter": n_iter}):
            model = MLPRegressor((2,), solver="lbfgs", tol=0.0, random_state=seed,
                                 device="cpu", **limits)
            with pytest.warns(ConvergenceWarning):
                model.fit(X, y)
            assert model.n_iter_ == n_iter


def test_lbfgs_with_early_stopping_warns_and_the_cli_does_not_say_it_stopped_early(data,
                                                                                  tmp_path):
    """L-BFGS stops on its own tests; n_iter_no_change had no effect and the CLI
    said "stopped early: the validation R^2 no longer improved" (round 9, #542)."""
    from gpumlp.cli import main

    X, y = data
    model = MLPRegressor((4,), solver="lbfgs", early_stopping=True, max_iter=30,
                         random_state=0, device="cpu")
    with pytest.warns(UserWarning, match="early_stopping does not stop solver='lbfgs'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
    np.savetxt(tmp_path / "d.csv", np.column_stack([X, y]), delimiter=",",
               header="a,b,c,t", comments="")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", "--data", str(tmp_path / "d.csv"), "--solver", "lbfgs",
                     "--early-stopping", "--epochs", "400", "--hidden", "4", "--quiet",
                     "--json", str(tmp_path / "r.json")]) == 0
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert "stopped early" not in report["stopped"]
    assert report["learning_rate"] is None   # it has none; was the unused 0.01 (#760)
    assert report["converged"] == (report["stopped"] == "converged")   # (#923)
    # --n-iter-no-change has no effect on L-BFGS: refused, as other such options (#519).
    assert main(["train", "--data", str(tmp_path / "d.csv"), "--solver", "lbfgs",
                 "--n-iter-no-change", "3", "--quiet"]) == 2


@pytest.mark.parametrize("solver, rate_taken", [("sgd", False), ("adam", True)])
def test_partial_fit_after_a_new_learning_rate_init(solver, rate_taken):
    """docs/scikit-learn.md: a kept sgd state keeps its rate; Adam's state holds no
    rate, so its next call steps at the new learning_rate_init (adversarial round 16
    found the docs saying neither takes it)."""
    rng = np.random.default_rng(25)
    X = rng.normal(size=(90, 3))
    y = np.sin(X[:, 0]) + X[:, 1]
    models = [MLPRegressor((4,), solver=solver, random_state=2, batch_size=30,
                           learning_rate_init=0.01).partial_fit(X, y) for _ in range(2)]
    models[0].set_params(learning_rate_init=0.1)
    for model in models:
        model.partial_fit(X, y)
    assert models[0].learning_rates_[-1] == (0.1 if rate_taken else 0.01)
    moved = not np.array_equal(models[0].predict(X), models[1].predict(X))
    assert moved == rate_taken


def test_a_two_output_poisson_loss_is_the_mean_over_every_entry():
    """docs/scikit-learn.md: with k outputs our Poisson loss is the mean half
    deviance over all n k entries, 1/k of scikit-learn's sum over the outputs
    (the docs said "identical"; adversarial round 18)."""
    rng = np.random.RandomState(0)
    X = rng.randn(200, 3)
    Y = np.c_[rng.poisson(np.exp(0.3 * X[:, 0])), rng.poisson(np.exp(0.2 * X[:, 1]))]
    Y = Y.astype(float)
    model = MLPRegressor((4,), loss="poisson", solver="lbfgs", max_iter=20, alpha=0.0,
                         random_state=0, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, Y)
    p = model.predict(X)
    with np.errstate(divide="ignore", invalid="ignore"):
        half_deviance = np.where(Y > 0, Y * np.log(Y / p), 0.0) - Y + p
    assert model.loss_ == pytest.approx(half_deviance.mean(), rel=1e-9)
    assert model.loss_ == pytest.approx(half_deviance.mean(0).sum() / 2, rel=1e-9)


def test_t_counts_the_samples_seen_and_is_zero_without_a_training_state(tmp_path):
    """docs/scikit-learn.md and docs/reliability.md: t_ is the samples seen (for
    L-BFGS too, where scikit-learn's stays 0), and 0 after loading a file saved
    without its training state (adversarial round 19 found both undocumented)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((3,), solver="lbfgs", max_iter=4, random_state=0).fit(X, X[:, 0])
    assert model.t_ == 50 * model.n_iter_
    save(model, tmp_path / "without.npz", training_state=False)
    save(model, tmp_path / "with.npz")
    assert load(tmp_path / "without.npz").t_ == 0
    assert load(tmp_path / "with.npz").t_ == model.t_


def test_validation_scores_are_none_without_a_training_state(tmp_path):
    """docs/reliability.md: without the training state the validation scores come
    back as None (the docs said "empty"; adversarial round 20)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((3,), solver="sgd", max_iter=4, early_stopping=True,
                             random_state=0).fit(X, X[:, 0])
    assert len(model.validation_scores_) == model.n_iter_
    save(model, tmp_path / "without.npz", training_state=False)
    assert load(tmp_path / "without.npz").validation_scores_ is None
