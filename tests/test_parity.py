"""Trajectories against scikit-learn's MLPRegressor, from the same initial weights.

Issue 12's targets: float64, 30 epochs, the weights within 1e-9 of
scikit-learn's. Our squared-error loss is twice theirs, so SGD takes half
their learning rate; Adam is blind to the gradient's scale except through
``epsilon``, so it takes the same rate and twice their ``epsilon``; Poisson
(half the deviance, as theirs) takes the same rate. Minibatches run unshuffled
(the two libraries draw their orders differently).
"""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor
from gpumlp.initialization import glorot_uniform

sk_mlp = pytest.importorskip("sklearn.neural_network", reason="scikit-learn is not installed")

TRAJECTORY_TOL = 1e-9


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 4))
    y = np.sin(1.5 * X[:, 0]) + 0.3 * X[:, 1] + 0.05 * rng.standard_normal(90)
    weights = rng.uniform(0.0, 3.0, 90)
    return X, y, weights


def _start(n_features, hidden=(6,)):
    return glorot_uniform([n_features, *hidden, 1], np.random.default_rng(1))


def _sklearn(coefs, intercepts, **params):
    """scikit-learn's MLPRegressor whose first initialisation gives our weights."""

    class Seeded(sk_mlp.MLPRegressor):
        def _initialize(self, *args, **kwargs):
            super()._initialize(*args, **kwargs)
            self.coefs_ = [W.copy() for W in coefs]
            self.intercepts_ = [b.copy() for b in intercepts]

    return Seeded(activation="logistic", random_state=0, **params)


def _ours(coefs, intercepts, **params):
    model = MLPRegressor(activation="sigmoid", warm_start=True, device="cpu",
                         dtype="float64", random_state=0, **params)
    model.coefs_ = [W.copy() for W in coefs]
    model.intercepts_ = [b.copy() for b in intercepts]
    return model


def _quiet(call, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return call(*args, **kwargs)


def _distance(a, b):
    return max(float(np.max(np.abs(p - q)))
               for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


SGD = dict(solver="sgd", momentum=0.9, shuffle=False, tol=0.0, n_iter_no_change=1000, alpha=1e-4,
           max_iter=30, hidden_layer_sizes=(6,))
ADAM = dict(SGD, solver="adam")
ADAM.pop("momentum")

#: name -> (our parameters, scikit-learn's parameters, use sample_weight, y kind)
CASES = {
    "sgd-constant": (dict(SGD, learning_rate_init=0.05, batch_size=30),
                     dict(SGD, learning_rate_init=0.1, batch_size=30), False, "real"),
    "sgd-invscaling": (dict(SGD, learning_rate="invscaling", power_t=0.25,
                            learning_rate_init=0.1, batch_size=30),
                       dict(SGD, learning_rate="invscaling", power_t=0.25,
                            learning_rate_init=0.2, batch_size=30), False, "real"),
    # A tol this large makes the rate drop several times within 30 epochs.
    "sgd-adaptive": (dict(SGD, learning_rate="adaptive", tol=0.02, n_iter_no_change=2,
                          learning_rate_init=0.1, batch_size=90),
                     dict(SGD, learning_rate="adaptive", tol=0.02, n_iter_no_change=2,
                          learning_rate_init=0.2, batch_size=90), False, "real"),
    "full-batch-gd": (dict(SGD, momentum=0.0, learning_rate_init=0.2, batch_size=90),
                      dict(SGD, momentum=0.0, learning_rate_init=0.4, batch_size=90),
                      False, "real"),
    "adam": (dict(ADAM, learning_rate_init=0.01, epsilon=2e-8, batch_size=30),
             dict(ADAM, learning_rate_init=0.01, epsilon=1e-8, batch_size=30), False, "real"),
    "sample-weight": (dict(SGD, learning_rate_init=0.05, batch_size=30),
                      dict(SGD, learning_rate_init=0.1, batch_size=30), True, "real"),
    "alpha": (dict(SGD, alpha=0.5, learning_rate_init=0.05, batch_size=30),
              dict(SGD, alpha=0.5, learning_rate_init=0.1, batch_size=30), False, "real"),
    "alpha-sample-weight-adam": (
        dict(ADAM, alpha=0.3, learning_rate_init=0.01, epsilon=2e-8, batch_size=30),
        dict(ADAM, alpha=0.3, learning_rate_init=0.01, epsilon=1e-8, batch_size=30),
        True, "real"),
    "poisson": (dict(SGD, loss="poisson", alpha=0.2, learning_rate_init=0.02, batch_size=30),
                dict(SGD, loss="poisson", alpha=0.2, learning_rate_init=0.02, batch_size=30),
                True, "counts"),
    # The stopping rule: it must stop at the same epoch, well before 30.
    "stopping-rule": (dict(SGD, tol=0.01, n_iter_no_change=3, learning_rate_init=0.05,
                           batch_size=90),
                      dict(SGD, tol=0.01, n_iter_no_change=3, learning_rate_init=0.1,
                           batch_size=90), False, "real"),
}


def _target(y, kind):
    return np.round(np.exp(y)) if kind == "counts" else y


@pytest.mark.parametrize("case", list(CASES))
def test_same_trajectory_as_scikit_learn(data, case):
    ours_params, their_params, weighted, kind = CASES[case]
    X, y, weights = data
    y = _target(y, kind)
    sample_weight = weights if weighted else None
    coefs, intercepts = _start(X.shape[1])
    ours = _quiet(_ours(coefs, intercepts, **ours_params).fit, X, y, sample_weight)
    theirs = _quiet(_sklearn(coefs, intercepts, **their_params).fit, X, y, sample_weight)
    assert ours.n_iter_ == theirs.n_iter_
    assert _distance(ours, theirs) <= TRAJECTORY_TOL
    # The weights moved: a trajectory that went nowhere would agree trivially.
    assert _distance(ours, _ours(coefs, intercepts)) > 1e-3
    # Our loss is theirs times the loss's ratio (2 for the squared error).
    ratio = 1.0 if kind == "counts" else 2.0
    np.testing.assert_allclose(np.asarray(ours.loss_curve_) / ratio, theirs.loss_curve_,
                               rtol=1e-9)
    if case == "stopping-rule":
        assert ours.n_iter_ < 30
    if case == "sgd-adaptive":
        assert theirs._optimizer.learning_rate < 0.2 / 5  # the schedule did act


def test_the_old_alpha_was_half_as_strong(data):
    # Guards the test above: with alpha halved (the pre-issue-12 meaning),
    # the trajectories part by far more than the tolerance.
    X, y, _ = data
    ours_params, their_params, _, _ = CASES["alpha"]
    coefs, intercepts = _start(X.shape[1])
    ours = _quiet(_ours(coefs, intercepts, **dict(ours_params, alpha=0.25)).fit, X, y)
    theirs = _quiet(_sklearn(coefs, intercepts, **their_params).fit, X, y)
    assert _distance(ours, theirs) > 1e3 * TRAJECTORY_TOL


def test_warm_start_and_partial_fit_count_and_continue_as_scikit_learn(data):
    # Issue 12's table: a 3-epoch fit, a warm-start fit of 4 (n_iter_ 4, a new
    # Adam), then two partial_fit calls (n_iter_ 1 each, Adam's state kept).
    X, y, _ = data
    ours_params, their_params, _, _ = CASES["adam"]
    coefs, intercepts = _start(X.shape[1])
    ours = _ours(coefs, intercepts, **dict(ours_params, max_iter=3))
    theirs = _sklearn(coefs, intercepts, **dict(their_params, max_iter=3, warm_start=True))
    for model in (ours, theirs):
        _quiet(model.fit, X, y)
        _quiet(model.set_params(max_iter=4).fit, X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 4
    assert _distance(ours, theirs) <= TRAJECTORY_TOL
    for model in (ours, theirs):
        model.partial_fit(X, y)
        model.partial_fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 1
    assert len(ours.loss_curve_) == len(theirs.loss_curve_) == 9
    assert _distance(ours, theirs) <= TRAJECTORY_TOL


def test_partial_fit_with_sample_weight_matches(data):
    X, y, weights = data
    ours_params, their_params, _, _ = CASES["sample-weight"]
    coefs, intercepts = _start(X.shape[1])
    ours = _ours(coefs, intercepts, **ours_params)
    theirs = _sklearn(coefs, intercepts, **their_params)
    for _ in range(5):
        ours.partial_fit(X, y, sample_weight=weights)
        theirs.partial_fit(X, y, sample_weight=weights)
    assert _distance(ours, theirs) <= TRAJECTORY_TOL


def test_lbfgs_reaches_scikit_learns_training_loss():
    # The fast version of scripts/parity_lbfgs.py (issue 12's target there:
    # geometric mean ratio <= 1.10, none above 1.5).
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "scripts" / "parity_lbfgs.py"
    spec = importlib.util.spec_from_file_location("parity_lbfgs", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows, geomean = script.run(max_iter=60, quick=True)
    assert len(rows) == 5
    assert geomean <= 1.10, rows
    assert max(r["ratio"] for r in rows) <= 1.5, rows
