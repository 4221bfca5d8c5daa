"""Choosing a StandardizedRegressor's alpha by cross-validation (gpumlp.selection), and its hook."""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, StandardizedRegressor, load, save, selection
from gpumlp.scaling import DEFAULT_PARAMS

pytestmark = pytest.mark.filterwarnings("ignore:Maximum iterations")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 3)) * [1.0, 30.0, 0.1] + [0.0, 500.0, 2.0]
    y = 10.0 * np.sin(X[:, 0]) + 0.05 * X[:, 1] + rng.normal(size=80)
    return X, y


def small(**params):
    """A small, quick regressor for the search's tests."""
    return MLPRegressor(**{"hidden_layer_sizes": (5,), "solver": "adam", "max_iter": 30,
                           "random_state": 0, **params})


class Spy:
    """Records every MLPRegressor.fit: its alpha, rows and weights."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = MLPRegressor.fit
        spy = self

        def fit(model, X, y, sample_weight=None, **kwargs):
            spy.calls.append({"alpha": model.alpha, "X": np.array(X), "w": sample_weight})
            return original(model, X, y, sample_weight, **kwargs)

        monkeypatch.setattr(MLPRegressor, "fit", fit)


def test_the_choice_is_the_best_mean_held_out_score_then_a_plain_fit(data):
    X, y = data
    model = StandardizedRegressor(small(), alphas=(0.01, 1.0, 0.1)).fit(X, y)
    search = model.alpha_search_
    assert search["alphas"] == [1.0, 0.1, 0.01]   # largest first
    assert search["n_folds"] == selection.DEFAULT_FOLDS
    assert [len(s) for s in search["scores"]] == [selection.DEFAULT_FOLDS] * 3
    means = [np.mean(s) for s in search["scores"]]
    assert search["mean_scores"] == pytest.approx(means, rel=1e-12)
    assert search["alpha"] == search["alphas"][int(np.argmax(means))]
    assert model.regressor_.alpha == search["alpha"]
    # The final model is exactly the fit with that alpha given.
    plain = StandardizedRegressor(small(alpha=search["alpha"]), alphas=None).fit(X, y)
    for W, V in zip(model.regressor_.coefs_, plain.regressor_.coefs_):
        np.testing.assert_array_equal(W, V)
    assert plain.alpha_search_ is None


def test_each_row_is_held_out_once_and_the_penalty_follows_the_rows(data, monkeypatch):
    X, y = data
    spy = Spy(monkeypatch)
    StandardizedRegressor(small(), alphas=(1.0, 0.01)).fit(X, y)
    folds, final = spy.calls[:-1], spy.calls[-1]   # the search's fits, then the model's
    assert len(folds) == 2 * selection.DEFAULT_FOLDS and final["alpha"] in (1.0, 0.01)
    assert final["X"].shape[0] == X.shape[0]
    n = X.shape[0]
    # One fit per fold and alpha, alphas inner: the held-out rows partition the data.
    assert sum(n - call["X"].shape[0] for call in folds[::2]) == n
    for i, call in enumerate(folds):
        base = (1.0, 0.01)[i % 2]
        assert call["alpha"] == pytest.approx(base * call["X"].shape[0] / n, rel=1e-12)


def test_ties_go_to_the_larger_alpha(data, monkeypatch):
    X, y = data
    monkeypatch.setattr(MLPRegressor, "score", lambda self, X, y, w=None: 0.5)
    search = selection.search_alpha(small(), X, y, alphas=(0.01, 0.1, 1.0))
    assert search["alpha"] == 1.0


def test_a_diverged_fold_takes_its_alpha_out_of_the_running(data, monkeypatch):
    from gpumlp.training import TrainingDivergedError

    X, y = data
    original = MLPRegressor.fit

    def fit(model, X, y, sample_weight=None, **kwargs):
        if model.alpha < 0.05:
            raise TrainingDivergedError("Training diverged (test)")
        return original(model, X, y, sample_weight, **kwargs)

    monkeypatch.setattr(MLPRegressor, "fit", fit)
    search = selection.search_alpha(small(), X, y, alphas=(1.0, 0.01))
    assert search["scores"][1] == [None] * selection.DEFAULT_FOLDS
    assert search["mean_scores"][1] is None and search["alpha"] == 1.0


def test_no_alphas_no_search(data, monkeypatch):
    X, y = data
    spy = Spy(monkeypatch)
    model = StandardizedRegressor(small(alpha=0.3)).fit(X, y)
    assert model.alpha_search_ is None and len(spy.calls) == 1
    assert model.regressor_.alpha == 0.3
    assert StandardizedRegressor().alphas is None   # the default does not search
    monkeypatch.setattr("gpumlp.scaling.default_regressor",
                        lambda: MLPRegressor(**{**DEFAULT_PARAMS, "max_iter": 20}))
    spy.calls.clear()
    grid = StandardizedRegressor(alphas=selection.DEFAULT_ALPHAS).fit(X, y)
    assert len(spy.calls) == 1 + len(selection.DEFAULT_ALPHAS) * selection.DEFAULT_FOLDS
    assert grid.regressor_.alpha == grid.alpha_search_["alpha"]


def test_sample_weights_reach_every_fold_fit(data, monkeypatch):
    X, y = data
    spy = Spy(monkeypatch)
    w = np.linspace(0.5, 2.0, X.shape[0])
    StandardizedRegressor(small(), alphas=(1.0, 0.1)).fit(X, y, sample_weight=w)
    n_rows = [call["X"].shape[0] for call in spy.calls]
    assert all(call["w"] is not None and len(call["w"]) == m
               for call, m in zip(spy.calls, n_rows))
    # A fold's weights are its rows' weights: they sum, over the folds' held-out
    # complements, to the whole.
    fold_sums = [float(np.sum(call["w"])) for call in spy.calls[:-1:2]]
    assert sum(fold_sums) == pytest.approx((selection.DEFAULT_FOLDS - 1) * w.sum())


def test_a_fold_without_two_weighted_rows_is_refused_naming_it(data, monkeypatch):
    """Weights of 0 on most rows left a held-out fold weightless: the refusal
    said "sample_weight is all zero", false of the weights given (adversarial
    round 8, #600). Now it names the fold, before any fit."""
    X, y = data
    spy = Spy(monkeypatch)
    w = np.zeros(X.shape[0])
    w[:4] = 1.0
    with pytest.raises(ValueError, match=r"held-out fold \d holds [01] row\(s\) of "
                                         r"sample_weight above 0"):
        StandardizedRegressor(small(), alphas=(1.0, 0.1)).fit(X, y, sample_weight=w)
    # Weights of 1e-30 count as rows but not as weight (round 8, #654).
    w[4:] = 1e-30
    with pytest.raises(ValueError, match=r"as many as 1 by their weights"):
        StandardizedRegressor(small(), alphas=(1.0, 0.1)).fit(X, y, sample_weight=w)
    assert spy.calls == []


def test_a_refused_fold_fit_says_it_was_a_folds():
    """A fold's own early-stopping split drew a constant y: the refusal spoke
    of "early stopping's validation split" as if it were the user's fit
    (adversarial round 8, #648)."""
    rng = np.random.RandomState(0)
    X = rng.randn(30, 3)
    y = np.full(30, 0.5)
    y[::6] = [1.0, 2.0, 3.0, 4.0, 5.0]
    template = MLPRegressor((3,), solver="adam", max_iter=5, random_state=2, early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        StandardizedRegressor(template).fit(X, y)   # the user's own split varies
    with pytest.raises(ValueError, match=r"the fit of fold \d \(alpha 1, 24 of the 30 rows\) "
                                         r"was refused: early stopping's validation split"):
        StandardizedRegressor(template, alphas=(1.0, 0.1)).fit(X, y)


@pytest.mark.parametrize("alphas, words", [
    ("auto", "None or a sequence"), ([], "empty"), ([0.1, -1.0], "-1.0"),
    ([float("nan")], "nan"), ([True], "True"), (0.1, "None or a sequence"),
])
def test_bad_alphas_are_refused_before_any_fit(data, alphas, words):
    X, y = data
    model = StandardizedRegressor(small(), alphas=alphas)
    with pytest.raises(ValueError, match="alphas") as caught:
        model.fit(X, y)
    assert words in str(caught.value)
    assert not hasattr(model, "regressor_")


def test_the_search_is_saved_with_the_model(data, tmp_path):
    X, y = data
    model = StandardizedRegressor(small(), alphas=(1.0, 0.01)).fit(X, y)
    save(model, tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert loaded.alpha_search_ == model.alpha_search_
    assert loaded.regressor_.alpha == model.alpha_search_["alpha"]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # The parameter too: a refit of the loaded model chooses again (it was
    # None after loading, so a refit kept one alpha: adversarial round 8, #464).
    assert loaded.alphas == (1.0, 0.01)
    plain = StandardizedRegressor(small(), alphas=None).fit(X, y)
    save(plain, tmp_path / "p.npz")
    assert load(tmp_path / "p.npz").alpha_search_ is None
    assert load(tmp_path / "p.npz").alphas is None


def test_a_file_whose_search_disagrees_with_its_alpha_is_refused(data, tmp_path):
    import json
    import zipfile

    from gpumlp.io import ModelFileError, read_metadata

    X, y = data
    path = tmp_path / "m.npz"
    save(StandardizedRegressor(small(), alphas=(1.0, 0.01)).fit(X, y), path)
    metadata = read_metadata(path)
    metadata["alpha_search"]["alpha"] = 0.5
    forged = tmp_path / "f.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as out:
        for name in src.namelist():
            if name != "metadata.npy":
                out.writestr(name, src.read(name))
        with out.open("metadata.npy", "w") as handle:
            np.save(handle, np.array(json.dumps(metadata)))
    with pytest.raises(ModelFileError, match="alpha_search"):
        load(forged)


def test_dask_data_with_an_explicit_grid_is_refused(data):
    da = pytest.importorskip("dask.array")
    X, y = data
    model = StandardizedRegressor(small(), alphas=(1.0, 0.1))
    with pytest.raises(ValueError, match="in-memory"):
        model.fit(da.from_array(X, chunks=40), da.from_array(y, chunks=40))


def test_the_certificate_covers_the_final_fit_and_says_the_choice_was_not_checked(
        data, tmp_path):
    from gpumlp.certificate import certify

    X, y = data
    model = StandardizedRegressor(small(max_iter=8), alphas=(1.0, 0.01)).fit(X, y)
    save(model, tmp_path / "m.npz")
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy"], dtypes=["float64"])
    assert cert.outcome == "PASS", cert.to_json()
    assert any("cross-validation" in note and "not the choice" in note
               for note in cert.notes)


def test_too_few_rows_for_the_folds_are_refused_with_what_to_do(data):
    X, y = data
    model = StandardizedRegressor(small(), alphas=(1.0, 0.1))
    with pytest.raises(ValueError, match=r"at least 10 rows .* there are 9\. Pass alphas=None"):
        model.fit(X[:9], y[:9])
    with pytest.raises(ValueError, match="n_folds must be an int >= 2"):
        selection.search_alpha(small(), X, y, n_folds=1)


def test_the_search_runs_on_every_backend_and_agrees_with_numpy(backend, data):
    from gpumlp._checks import resolve_dtype
    from gpumlp.agreement import TOLERANCES

    name, device = backend
    X, y = data
    with device.context():
        Xd, yd = device.asarray(X), device.asarray(y)   # float64
    search = dict(alphas=(1.0, 0.01), n_folds=2)   # the rows taken on the device
    on_numpy = selection.search_alpha(small(max_iter=10), X, y, **search)
    on_device = selection.search_alpha(small(max_iter=10), Xd, yd, **search)
    # Each score is an R² of a training run, which may differ from NumPy's
    # float64 one by the order of its sums, or by its dtype where the backend
    # trains this input in float32: training's tolerance for the dtype the
    # estimator trains this input in.
    dtype = resolve_dtype(None, Xd)
    np.testing.assert_allclose(on_device["scores"], on_numpy["scores"],
                               rtol=0, atol=TOLERANCES[("training", dtype)], err_msg=name)
    assert on_device["alpha"] == on_numpy["alpha"]


def test_eval_set_and_callback_belong_to_the_final_fit_alone(data):
    X, y = data
    epochs = []
    model = StandardizedRegressor(small(), alphas=(1.0, 0.01)).fit(
        X[:60], y[:60], eval_set=(X[60:], y[60:]),
        callback=lambda epoch, loss, validation: epochs.append(epoch))
    net = model.regressor_
    assert len(epochs) == net.n_iter_ == len(net.validation_loss_curve_)
