"""No honest fit fails: configurations drawn from the whole parameter space all PASS.

CI draws a handful (:data:`CI_EXAMPLES`); ``pytest --hypothesis-profile long``
draws :data:`LONG_EXAMPLES`, 200 (issue 19's bar, to run natively and under
OPENBLAS_CORETYPE=Haswell).
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from gpumlp import MLPRegressor, StandardizedRegressor, save
from gpumlp.certificate import certify, format_certificate
from gpumlp.splitting import train_test_split
from gpumlp.training import TrainingDivergedError

CI_EXAMPLES = 6
#: Issue 19's bar under ``--hypothesis-profile long`` (tests/conftest.py).
LONG_EXAMPLES = 200
LONG = settings.get_current_profile_name() == "long"


@st.composite
def configurations(draw):
    solver = draw(st.sampled_from(["gd", "sgd", "adam", "lbfgs"]))
    params = {
        "solver": solver,
        "hidden_layer_sizes": tuple(draw(st.lists(st.integers(2, 8), min_size=1,
                                                  max_size=2))),
        "activation": draw(st.sampled_from(["sigmoid", "tanh", "relu", "identity"])),
        "dtype": draw(st.sampled_from(["float32", "float64"])),
        "alpha": draw(st.sampled_from([0.0, 1e-3, 0.1])),
        "loss": draw(st.sampled_from(["squared_error", "squared_error", "poisson"])),
        "max_iter": draw(st.integers(1, 25)),
        "random_state": draw(st.one_of(st.none(), st.integers(0, 2**31 - 1))),
        "batch_size": draw(st.sampled_from(["auto", 16, 50])),
        "tol": draw(st.sampled_from([1e-4, 1e-2])),
        "n_iter_no_change": draw(st.integers(1, 5)),
        "device": "cpu",
    }
    if solver in ("gd", "sgd"):
        params["learning_rate"] = draw(st.sampled_from(["constant", "invscaling",
                                                        "adaptive"]))
    if solver != "lbfgs":
        params["learning_rate_init"] = draw(st.sampled_from(["auto", 0.01, 0.1]))
    if solver == "sgd":
        params["momentum"] = draw(st.sampled_from([0.0, 0.9]))
    validation = draw(st.sampled_from([None, "early_stopping", "eval_set"]))
    if validation == "early_stopping" and solver != "lbfgs":
        params["early_stopping"] = True
        params["validation_fraction"] = 0.2
    return {
        "params": params,
        "n_outputs": draw(st.integers(1, 2)),
        "weights": draw(st.booleans()),
        "eval_set": validation == "eval_set",
        "scaled": draw(st.booleans()),
        "split": draw(st.booleans()),
        "warm_start": draw(st.booleans()) and solver != "lbfgs",
        "seed": draw(st.integers(0, 1000)),
    }


def _installed(names):
    found = []
    for name in names:
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return found


def _data(config):
    rng = np.random.default_rng(config["seed"])
    X = rng.standard_normal((90, 3))
    y = np.column_stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], np.cos(X[:, 1])])
    y = y[:, :config["n_outputs"]]
    if config["params"]["loss"] == "poisson":
        y = np.exp(y / 2)
    if config["split"]:   # as gpumlp train splits its data
        X, _, y, _ = train_test_split(X, y, 0.2, config["seed"])
    return X, y


@settings(max_examples=LONG_EXAMPLES if LONG else CI_EXAMPLES,
          deadline=None, derandomize=not LONG,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(config=configurations())
def test_every_honest_fit_passes(tmp_path_factory, config):
    # The long draw replays on every other backend installed too (issue 19: no
    # honest fit fails on any backend): PyTorch's and JAX's sums round otherwise.
    backends = ["numpy", "array_api_strict"] + (_installed(["torch", "jax"]) if LONG else [])
    pytest.importorskip("array_api_strict")
    X, y = _data(config)
    w = np.random.default_rng(1).uniform(0.2, 2.0, X.shape[0]) if config["weights"] else None
    eval_set = (X[:20], y[:20]) if config["eval_set"] else None
    net = MLPRegressor(**config["params"])
    model = StandardizedRegressor(net) if config["scaled"] else net
    tmp = tmp_path_factory.mktemp("honest")
    parents = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A fit that diverges (the first or its warm-started continuation) leaves
        # no model to certify: a training failure, not a fit.
        try:
            model.fit(X, y, w, eval_set=eval_set)
            if config["warm_start"]:
                save(model, tmp / "parent.npz")
                parents.append(tmp / "parent.npz")
                net.set_params(warm_start=True, max_iter=3)
                model.fit(X, y, w, eval_set=eval_set)
        except TrainingDivergedError:
            reject()
    save(model, tmp / "m.npz")
    cert = certify(tmp / "m.npz", X, y, sample_weight=w, eval_set=eval_set,
                   backends=backends, parents=parents)
    assert cert.outcome == "PASS", f"{config}\n{format_certificate(cert)}"
    # Fit and certified here: NumPy's replay in the fit's dtype computes as the fit
    # did, and held every epoch and decision bit for bit.
    assert [(r.backend, r.exact) for r in cert.replays if r.exact] == [("numpy", True)], \
        format_certificate(cert)
