"""sample_weight, feature names and Poisson targets at the public boundary (issue 12)."""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = X[:, 0] - 0.5 * X[:, 1]
    return X, y


def _fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(*args, **kwargs)


@pytest.mark.parametrize("weights, match", [
    (np.ones(79), r"one weight per row, shape \(80,\)"),
    (-np.ones(80), "negative weights"),
    (np.full(80, np.nan), "NaN or infinity"),
    (np.zeros(80), "all zero"),
    (np.ones(80) + 0j, "complex numbers"),   # was accepted, with NumPy's ComplexWarning only
])
def test_bad_sample_weights_get_clear_errors(data, weights, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        MLPRegressor((4,), device="cpu").fit(X, y, sample_weight=weights)
    with pytest.raises(ValueError, match=match):
        MLPRegressor((4,), device="cpu", solver="sgd").partial_fit(X, y, sample_weight=weights)


def test_integer_weights_equal_repeated_rows(data):
    # Full-batch descent: weight 2 on a row is that row twice.
    X, y = data
    weights = np.where(np.arange(80) < 20, 2.0, 1.0)
    params = dict(hidden_layer_sizes=(4,), max_iter=20, tol=0, random_state=0, device="cpu",
                  alpha=0.1)
    weighted = _fit(MLPRegressor(**params), X, y, sample_weight=weights)
    repeated = _fit(MLPRegressor(**params), np.vstack([X, X[:20]]),
                    np.concatenate([y, y[:20]]))
    for a, b in zip(weighted.coefs_, repeated.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
    unweighted = _fit(MLPRegressor(**params), X, y)
    assert not np.allclose(unweighted.coefs_[0], weighted.coefs_[0], rtol=1e-6)


def test_the_fast_path_declines_weights_and_poisson(data, monkeypatch):
    from gpumlp import fastpath

    X, y = data
    assert fastpath.select(X, 2, "sigmoid") is not None
    assert fastpath.select(X, 2, "sigmoid", weighted=True) is None
    assert fastpath.select(X, 2, "sigmoid", loss_kind="poisson") is None


def test_poisson_needs_non_negative_targets(data):
    X, y = data
    with pytest.raises(ValueError, match=r"negative values, and loss='poisson' needs y >= 0"):
        MLPRegressor((4,), loss="poisson", device="cpu").fit(X, y)
    counts = np.round(np.exp(0.5 * y))
    model = _fit(MLPRegressor((4,), loss="poisson", solver="lbfgs", device="cpu",
                              random_state=0), X, counts)
    assert model.out_activation_ == "exp" and np.all(model.predict(X) > 0)


def test_a_dataframe_sets_feature_names_and_predict_checks_them(data):
    X, y = data
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = _fit(MLPRegressor((4,), max_iter=5, device="cpu"), frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    model.predict(frame)
    with pytest.raises(ValueError, match="must be in the same order"):
        model.predict(frame[["b", "a", "c"]])
    with pytest.raises(ValueError, match="unseen at fit time:\n- d"):
        model.predict(frame.rename(columns={"c": "d"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X)
    _fit(model, X, y)  # a refit without names forgets them
    assert not hasattr(model, "feature_names_in_")
    with pytest.warns(UserWarning, match="X has feature names, but MLPRegressor was fitted "
                                         "without"):
        model.predict(frame)


def test_a_dataframe_with_a_repeated_column_name_is_refused(data):
    """Two columns named alike cannot be told apart by the name check: a swap
    of them would pass it, so fit (and predict) refuse them, naming them."""
    from gpumlp import StandardizedRegressor

    X, y = data
    frame = pd.DataFrame(X, columns=["a", "a", "b"])
    for model in (MLPRegressor((4,), max_iter=5, device="cpu"),
                  StandardizedRegressor(MLPRegressor((4,), max_iter=5, device="cpu"))):
        with pytest.raises(ValueError, match="more than one column named 'a'"):
            _fit(model, frame, y)
    model = _fit(MLPRegressor((4,), max_iter=5, device="cpu"),
                 pd.DataFrame(X, columns=["a", "b", "c"]), y)
    with pytest.raises(ValueError, match="more than one column named 'a'"):
        model.predict(frame)


def test_import_gpumlp_does_not_import_pandas():
    import subprocess
    import sys

    code = "import sys, gpumlp; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", ["table", "record_batch"])
def test_a_pyarrow_tables_column_names_are_its_feature_names(kind):
    """A pyarrow Table gives its names as column_names (its columns are the data):
    they were not taken, and a reordered table was predicted by position, off by
    up to 6 (adversarial round 18; scikit-learn refuses it)."""
    pa = pytest.importorskip("pyarrow")
    from gpumlp import MLPRegressor, StandardizedRegressor

    rng = np.random.RandomState(5)
    X = rng.randn(60, 3)
    y = X @ [1.0, 2.0, -1.0]
    make = pa.table if kind == "table" else pa.record_batch
    table = make({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    reordered = make({"c": X[:, 2], "a": X[:, 0], "b": X[:, 1]})
    for model in (MLPRegressor((3,), solver="lbfgs", max_iter=8, random_state=0),
                  StandardizedRegressor(MLPRegressor((3,), solver="lbfgs", max_iter=8,
                                                     random_state=0))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(table, y)
        assert list(model.feature_names_in_) == ["a", "b", "c"]
        with pytest.raises(ValueError, match="same order"):
            model.predict(reordered)
