"""The training dtype's limits, in one guard, and the parameter edges next to them.

Issue 20 §3: every number that enters the training dtype (X and y as the
network trains on them, sample_weight, alpha, the learning rate, Adam's
epsilon) is checked once before training against limits derived from the
dtype's ``finfo``, with one message that names the parameter and the limit
and suggests float64 where float64's limit holds it. §5 and §6: the
parameter edges where scikit-learn is the reference (validation_fraction,
power_t, huge integers), and the estimator's clear errors (datetime64 X,
eval_set, partial_fit, meta tensors).
"""

import math
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, StandardizedRegressor, TrainingDivergedError
from gpumlp._checks import check_dtype_limits
from gpumlp.solvers import inverse_scaling

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
Y = X @ np.array([1.0, -2.0, 0.5])


def fit(model, X=X, y=Y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y, **kwargs)


def net(**params):
    return MLPRegressor(**{"hidden_layer_sizes": (4,), "max_iter": 3, "random_state": 0,
                           "device": "cpu", **params})


def big(dtype):
    return float(np.finfo(dtype).max)


def floor(dtype):
    """A column's (or the weights') largest value must be at least tiny / eps."""
    return float(np.finfo(dtype).tiny / np.finfo(dtype).eps)


FLOAT64_ADVICE = "dtype='float64'"
# (dtype, estimator params, fit's data and weights, message, float64 helps)
CASES = {
    "weights-overflow": ("float64", {}, {"sample_weight": np.full(40, 1e308)},
                         "sample_weight adds up to", False),
    "weights-subnormal": ("float64", {}, {"sample_weight": np.full(40, 1e-310)},
                          "sample_weight holds nothing larger than 1e-310", False),
    "weights-underflow-float32": ("float32", {}, {"sample_weight": np.full(40, 1e-46)},
                                  "sample_weight holds nothing larger than 1e-46", True),
    "alpha-float32": ("float32", {"alpha": 1e39}, {}, "alpha=1e\\+39 overflows float32",
                      True),
    "rate-overflow": ("float32", {"learning_rate_init": 1e39}, {},
                      "learning_rate_init=1e\\+39 overflows float32", True),
    "rate-underflow": ("float32", {"learning_rate_init": 1e-46}, {},
                       "learning_rate_init=1e-46 is below float32's smallest normal", True),
    "rate-subnormal-float64": ("float64", {"learning_rate_init": 1e-320}, {},
                               "is below float64's smallest normal", False),
    "epsilon-underflow": ("float32", {"solver": "adam", "epsilon": 1e-46}, {},
                          "epsilon=1e-46 is below float32's smallest normal", True),
    "X-tiny-float32": ("float32", {}, {"X": X * 1e-46},
                       "column 0 of X holds nothing larger than", True),
    "X-huge": ("float64", {}, {"X": X * 1e200}, "X holds values up to .*e\\+200, beyond",
               False),
    "y-huge-float32": ("float32", {}, {"y": Y * 1e18}, "y holds values up to", True),
    "y-huge": ("float64", {}, {"y": Y * 1e160}, "y holds values up to", False),
}


@pytest.mark.parametrize("case", CASES)
def test_each_number_beyond_the_dtype_is_refused_before_training(case):
    dtype, params, data, match, float64_helps = CASES[case]
    data = dict(data)
    X_fit, y_fit = data.pop("X", X), data.pop("y", Y)
    model = net(dtype=dtype, **params)
    with pytest.raises(ValueError, match=match) as caught:
        model.fit(X_fit, y_fit, **data)
    assert (FLOAT64_ADVICE in str(caught.value)) == float64_helps
    assert not hasattr(model, "coefs_")   # refused before any epoch
    if float64_helps:   # and float64 then trains on the same numbers
        fit(net(dtype="float64", **params), X_fit, y_fit, **data)


@pytest.mark.parametrize("name", ["float32", "float64"])
def test_the_limits_are_the_dtypes_own(name):
    """At the limit derived from finfo: accepted; one float beyond: refused."""
    model = net(dtype=name)
    n, k = Y.shape[0], 1
    at_x = math.sqrt(big(name))
    at_y = math.sqrt(big(name) / (n * k)) / 2
    for what, at in (("X", at_x), ("y", at_y)):
        arrays = {"X": X, "y": Y}
        column = np.ones(n)
        column[0] = at
        arrays[what] = column[:, None] if what == "X" else column
        check_dtype_limits(model, name, **arrays)
        column[0] = np.nextafter(at, np.inf)
        with pytest.raises(ValueError, match=f"{what} holds values up to"):
            check_dtype_limits(model, name, **arrays)
    weights = np.full(n, floor(name))
    check_dtype_limits(model, name, sample_weight=weights)
    with pytest.raises(ValueError, match="sample_weight holds nothing larger"):
        check_dtype_limits(model, name, sample_weight=np.nextafter(weights, 0))
    column = np.full((n, 1), floor(name))
    check_dtype_limits(model, name, X=column)
    with pytest.raises(ValueError, match="X holds nothing larger"):
        check_dtype_limits(model, name, X=np.nextafter(column, 0))


def test_numbers_a_solver_does_not_use_are_not_checked():
    # As in scikit-learn, L-BFGS ignores the rate and only Adam uses epsilon.
    fit(net(solver="lbfgs", learning_rate_init=1e-320, epsilon=1e-320))
    fit(net(solver="sgd", epsilon=1e-320))


@pytest.mark.parametrize("scale", [1e-250, 1e250])
def test_weights_within_the_limits_train_as_unit_weights(scale):
    """A weighted mean does not change when every weight is scaled (alpha = 0)."""
    plain = fit(net(learning_rate_init=0.01, max_iter=5))
    weighted = fit(net(learning_rate_init=0.01, max_iter=5),
                   sample_weight=np.full(40, scale))
    # The weights only rescale the terms of the sums: a few roundings apart.
    np.testing.assert_allclose(weighted.predict(X), plain.predict(X), rtol=1e-12, atol=1e-12)


def test_weights_made_infinite_by_a_step_are_named_as_such():
    """A finite loss is never reported as divergence's loss: the step broke the weights."""
    model = net(dtype="float32", learning_rate_init=1e38, max_iter=5)
    with pytest.raises(TrainingDivergedError,
                       match=r"epoch 1: a step made the weights NaN or infinite \(the loss "
                             r"before it was [0-9.]+\)") as caught:
        fit(model, X.astype(np.float32), (Y * 10).astype(np.float32))
    assert "the loss became" not in str(caught.value)
    assert all(np.all(np.isfinite(W)) for W in model.coefs_)


@pytest.mark.parametrize("params", [
    {"max_iter": 10**30, "n_iter_no_change": 1, "tol": 1e9},
    {"n_iter_no_change": 10**30},
    {"solver": "sgd", "batch_size": 10**30},
    {"solver": "lbfgs", "max_fun": 10**30},
])
def test_integers_beyond_int64_are_accepted_as_in_sklearn(params):
    model = fit(net(**params))
    # Three epochs, or ("auto"'s two plateaus) the stopping rule's few.
    assert 1 <= model.n_iter_ <= 3 or params.get("tol") and model.n_iter_ < 10
    sklearn = pytest.importorskip("sklearn.neural_network")
    sklearn.MLPRegressor(**{k: v for k, v in params.items() if k != "solver" or
                            v != "gd"})._validate_params()


@pytest.mark.parametrize("name", ["alpha", "learning_rate_init", "power_t", "tol", "epsilon"])
def test_a_real_parameter_beyond_a_float_is_refused_as_not_finite(name):
    with pytest.raises(ValueError, match=rf"{name} must be a finite number >.* \(401 digits\)"):
        net(**{name: 10**400}).fit(X, Y)
    with pytest.raises(ValueError, match=rf"{name} must be a finite number >.* got inf"):
        net(**{name: math.inf}).fit(X, Y)


def test_invscaling_rate_underflows_to_zero_instead_of_raising():
    # Exactly the old expression where it is a float.
    assert inverse_scaling(0.01, 99, 0.5) == 0.01 / 100.0 ** 0.5
    assert inverse_scaling(0.01, 10**4, 100.0) == 0.0
    assert inverse_scaling(1e300, 10**4, 75.0) == pytest.approx(1e300 / 10001.0 ** 75,
                                                              rel=1e-12)
    model = net(solver="sgd", learning_rate="invscaling", power_t=1e10, max_iter=5)
    with pytest.warns(Warning, match="'invscaling' learning rate underflowed to 0, below "
                                     "float64's smallest normal number"):
        model.fit(X, Y)
    assert model.learning_rates_[1:] == [0.0] * (model.n_iter_ - 1)
    # In float32 a rate of 1e-40 is already below its smallest normal number.
    model = net(solver="sgd", learning_rate="invscaling", power_t=20.0, dtype="float32",
                max_iter=3)
    with pytest.warns(Warning, match="below float32's smallest normal number"):
        model.fit(X, Y)
    assert 0 < model.learning_rate_ < np.finfo(np.float32).tiny
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = net(solver="sgd", learning_rate="invscaling", power_t=0.5, tol=0.0)
        with pytest.warns(Warning, match="Maximum iterations") as caught:
            model.fit(X, Y)
        assert not any("underflowed" in str(w.message) for w in caught)


def test_power_t_large_trains_where_sklearn_trains():
    sklearn = pytest.importorskip("sklearn.neural_network")
    # scikit-learn trains with power_t=1e10 under the constant schedule, and
    # with power_t=100 under invscaling while (t + 1) ** 100 is a float.
    for params in ({"power_t": 1e10, "solver": "sgd"},
                   {"power_t": 100.0, "solver": "sgd", "learning_rate": "invscaling"}):
        theirs = fit(sklearn.MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0,
                                          **params))
        ours = fit(net(**params))
        assert ours.n_iter_ == theirs.n_iter_ == 3


def test_a_network_beyond_memory_is_refused_naming_its_size():
    with pytest.raises(MemoryError, match=r"hidden_layer_sizes=\(1000000, 1000000\) .*GiB"):
        net(hidden_layer_sizes=(10**6, 10**6)).fit(X, Y)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.999, 1.0, 1.5, -0.1])
def test_validation_fraction_range_is_sklearns(fraction):
    sklearn = pytest.importorskip("sklearn.neural_network")
    try:
        sklearn.MLPRegressor(validation_fraction=fraction)._validate_params()
        theirs = True
    except ValueError:
        theirs = False
    try:
        fit(net(validation_fraction=fraction))
        ours = True
    except ValueError as exc:
        assert "[0, 1)" in str(exc)
        ours = False
    assert ours == theirs


def test_validation_fraction_zero_with_early_stopping_names_the_open_interval():
    with pytest.raises(ValueError, match=r"open interval \(0, 1\) with early_stopping"):
        net(validation_fraction=0.0, early_stopping=True).fit(X, Y)
    # An eval_set replaces the held-out rows.
    fit(net(validation_fraction=0.0, early_stopping=True), eval_set=(X, Y))
    # partial_fit holds none out, and refuses early_stopping=True as scikit-learn's
    # does (issue 21); without it, validation_fraction=0 is fine there.
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        net(solver="sgd", validation_fraction=0.0, early_stopping=True).partial_fit(X, Y)
    net(solver="sgd", validation_fraction=0.0).partial_fit(X, Y)


@pytest.mark.parametrize("unit", ["datetime64[D]", "timedelta64[s]"])
def test_dates_are_refused_as_a_dataframe_date_column_is(unit):
    pd = pytest.importorskip("pandas")
    dates = np.arange(40).astype(unit).reshape(-1, 1)
    with pytest.raises(TypeError, match="Encode or drop those entries before fitting"):
        net().fit(pd.DataFrame({"d": pd.date_range("2020", periods=40)}).assign(a=1.0), Y)
    with pytest.raises(TypeError, match=r"X contains non-numeric values.*"
                                        r"Encode or drop those entries before fitting"):
        net().fit(dates, Y)
    with pytest.raises(TypeError, match="y contains non-numeric values"):
        net().fit(X, dates[:, 0])


@pytest.mark.parametrize("kind", [MLPRegressor, StandardizedRegressor])
def test_an_eval_set_that_is_not_a_pair_is_refused(kind):
    model = net() if kind is MLPRegressor else StandardizedRegressor(net())
    for bad in [(X, Y, Y), (X,), X]:
        with pytest.raises(TypeError, match="eval_set must be a pair"):
            model.fit(X, Y, eval_set=bad)


def test_partial_fit_with_other_outputs_names_partial_fit():
    model = net(solver="sgd")
    model.partial_fit(X, Y)
    with pytest.raises(ValueError, match=r"partial_fit continues the fitted network, which "
                                         r"has 1 output\(s\); this y has 2") as caught:
        model.partial_fit(X, np.column_stack([Y, -Y]))
    assert "warm_start" not in str(caught.value)


def test_a_meta_tensor_is_refused_at_the_boundary():
    torch = pytest.importorskip("torch")
    meta = torch.empty((40, 3), device="meta")
    with pytest.raises(ValueError, match="'meta' device"):
        net().fit(meta, Y)
    with pytest.raises(ValueError, match="sample_weight is a PyTorch tensor on the 'meta'"):
        net().fit(X, Y, sample_weight=torch.empty(40, device="meta"))
    model = fit(net())
    with pytest.raises(ValueError, match="'meta' device"):
        model.predict(meta)


def test_errors_say_before_fitting_never_before_training():
    """One phrase for one thing (issue 20 §6): scikit-learn's "fit"."""
    import ast
    import pathlib

    import gpumlp

    found = []
    for path in pathlib.Path(gpumlp.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise):
                for part in ast.walk(node):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) \
                            and "before training" in part.value:
                        found.append(f"{path.name}:{node.lineno}")
    assert not found
    bad = np.where(X > 1, np.nan, X)
    with pytest.raises(ValueError, match="Remove or impute them before fitting"):
        net().fit(bad, Y)
    # ... and "before predicting" or "scoring" where that is what is done.
    model = fit(net())
    with pytest.raises(ValueError, match="Remove or impute them before predicting"):
        model.predict(bad)
    with pytest.raises(ValueError, match="Remove or impute them before scoring"):
        model.score(X, np.where(Y > 1, np.nan, Y))
    with pytest.raises(ValueError, match="Remove or impute them before predicting"):
        fit(StandardizedRegressor(net())).predict(bad)


def test_a_minibatch_of_zero_weights_is_named_not_called_divergence():
    weights = np.zeros(40)
    weights[:5] = 1.0   # rows 10 to 19 make a batch of zero weights
    model = net(solver="sgd", batch_size=10, shuffle=False)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1: a minibatch of 10 rows had "
                                                    r"sample_weight 0 on every row") as caught:
        fit(model, sample_weight=weights)
    assert "learning_rate_init" not in str(caught.value)
    # Zero weights spread over every batch train.
    fit(net(solver="sgd", batch_size=10, shuffle=False), sample_weight=np.arange(40) % 2)


def test_small_weights_do_not_lift_the_limit_of_each_squared_error():
    # Weights adding up to less than 1 allow no y beyond sqrt(max) / 2: each
    # squared error is formed before it is weighted.
    model = net(dtype="float32")
    limit = math.sqrt(big("float32")) / 2
    y = np.ones(40)
    y[0] = np.nextafter(limit, np.inf)
    with pytest.raises(ValueError, match="y holds values up to"):
        check_dtype_limits(model, "float32", y=y, sample_weight=np.full(40, 1e-5))
    y[0] = limit
    check_dtype_limits(model, "float32", y=y, sample_weight=np.full(40, 1e-5))


def test_predict_refuses_x_that_overflows_a_float32_model():
    model = fit(net(dtype="float32"))
    X_big = X.copy()
    X_big[2, 1] = 1e39
    with pytest.raises(ValueError, match="X holds values beyond float32's largest number"):
        model.predict(X_big)
    assert np.all(np.isfinite(model.predict(X)))


@pytest.mark.parametrize("hidden, blamed", [((3000, 3000), "Use smaller hidden layers"),
                                            ((4,), "smaller batch_size")])
def test_out_of_memory_blames_the_larger_of_network_and_data(monkeypatch, hidden, blamed):
    from gpumlp import estimator

    def no_memory(*args, **kwargs):
        raise MemoryError("out of device memory")

    monkeypatch.setattr(estimator.ArraySource, "from_arrays", no_memory)
    with pytest.raises(MemoryError, match=blamed) as caught:
        net(hidden_layer_sizes=hidden).fit(X, Y)
    assert "GiB" in str(caught.value) and "out of device memory" in str(caught.value)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.mark.parametrize("case", ["weights-subnormal", "X-tiny-float32", "y-huge-float32",
                                  "X-huge"])
def test_dask_chunks_are_held_to_the_same_limits(dask_client, case):
    """The same figures, summarised on the workers, give the same refusal."""
    da = pytest.importorskip("dask.array")
    dtype, params, data, match, _ = CASES[case]
    data = dict(data)
    X_fit, y_fit = data.pop("X", X), data.pop("y", Y)
    weights = data.pop("sample_weight", None)
    chunked = dict(X=da.from_array(X_fit, chunks=(15, 3)), y=da.from_array(y_fit, chunks=15))
    if weights is not None:
        chunked["sample_weight"] = da.from_array(weights, chunks=15)
    with pytest.raises(ValueError, match=match):
        net(dtype=dtype, **params).fit(chunked.pop("X"), chunked.pop("y"), **chunked,
                                       client=dask_client)
    if case == "X-huge":   # an eval_set's chunks too
        with pytest.raises(ValueError, match="eval_set's X holds values up to"):
            net().fit(da.from_array(X, chunks=(15, 3)), da.from_array(Y, chunks=15),
                      eval_set=(da.from_array(X_fit, chunks=(15, 3)),
                                da.from_array(Y, chunks=15)), client=dask_client)
    # Within the limits, the same chunks train.
    fit(net(dtype=dtype), da.from_array(X, chunks=(15, 3)), da.from_array(Y, chunks=15),
        client=dask_client)



def test_dates_as_objects_are_refused_too():
    dates = np.array([[np.datetime64("2020-01-01"), 1.0]] * 40, dtype=object)
    with pytest.raises(TypeError, match="dates or durations, as objects"):
        net().fit(dates, Y)


def test_weights_beyond_any_float_are_refused_clearly():
    with pytest.raises(ValueError, match="sample_weight must be numbers"):
        net().fit(X, Y, sample_weight=[10**400] * 40)


@pytest.mark.parametrize("kind, factor", [("float64", 1e300), ("float32", 1e20)])
def test_r2_is_exact_under_power_of_two_scaling_and_never_overflows(kind, factor):
    from gpumlp.metrics import r2_score

    y_pred = Y + RNG.normal(size=40) * 0.1
    y, p = Y.astype(kind), y_pred.astype(kind)
    reference = float(r2_score(y, p))
    # Dividing by powers of two is exact: the same score to the last bit.
    assert float(r2_score(y * 2.0**60, p * 2.0**60)) == reference
    # Beyond sqrt of the largest number the squares used to overflow (NaN).
    big_score = float(r2_score((Y * factor).astype(kind), (y_pred * factor).astype(kind)))
    # Scaling by `factor` rounds y and y_pred (eps each); their difference,
    # about a twentieth of |y|, then carries about 20 eps, squared twice that.
    eps = float(np.finfo(kind).eps)
    assert big_score == pytest.approx(reference, abs=100 * eps)


def test_a_divergence_alpha_can_cause_names_alpha():
    """sgd in float64 with alpha 1e200 was told to lower learning_rate_init only
    (adversarial round 17): the penalty's own step, rate times alpha times the
    loss's scale, can overshoot, so alpha is named first."""
    from gpumlp import MLPRegressor, TrainingDivergedError

    rng = np.random.default_rng(24)
    X = rng.normal(size=(150, 3))
    y = np.tanh(X[:, 0])
    with pytest.raises(TrainingDivergedError, match=r"Lower alpha \(now 1e\+200\)"):
        MLPRegressor((4,), solver="sgd", batch_size=50, max_iter=5, alpha=1e200,
                     random_state=0, dtype="float64").fit(X, y)
    # (A divergence alpha cannot cause still begins "Lower learning_rate_init":
    # tests/test_estimator.py, test_cli_data.py.)


@pytest.mark.parametrize("alpha, precision", [(1e200, "float64"), (1e30, "float32")])
def test_adams_overflow_from_a_huge_alpha_names_alpha(alpha, precision):
    """Adam's second moment overflowed from alpha's penalty gradient, and the message
    named scaling and the rate, neither of which helps (adversarial round 18)."""
    from gpumlp import MLPRegressor, TrainingDivergedError

    rng = np.random.RandomState(0)
    X = rng.randn(100, 3)
    with pytest.raises(TrainingDivergedError, match=r"Lower alpha \(now "):
        MLPRegressor((4,), solver="adam", max_iter=10, random_state=0, alpha=alpha,
                     dtype=precision).fit(X, X @ [1.0, 2.0, -1.0])
