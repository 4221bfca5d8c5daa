"""Model files: round trips, portability across devices, refusal of bad files."""

import json
import os
import pickle
import warnings

import numpy as np
import pytest

import gpumlp
from gpumlp import MLPRegressor, io
from gpumlp.agreement import TOLERANCES
from gpumlp.devices import to_numpy
from gpumlp.io import ModelFileError
from gpumlp.scaling import StandardizedRegressor


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (150, 3)) * [1.0, 10.0, 100.0]
    y = X[:, 0] + np.sin(X[:, 1] / 5) + X[:, 2] / 50 + 300.0
    return X, y


def _fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "standardized"])
def test_save_load_predict_round_trip(tmp_path, data, wrapped, monkeypatch):
    monkeypatch.setenv("GPUMLP_DEVICE", "cpu")  # a loaded model's device is the default
    X, y = data
    net = MLPRegressor((8, 4), "tanh", solver="adam", learning_rate_init=0.01, max_iter=50,
                       random_state=0, device="cpu")
    model = _fit(StandardizedRegressor(net) if wrapped else net, X, y)
    path = tmp_path / "model.npz"
    io.save(model, path, feature_names=["a", "b", "c"], target_names=["t"])
    loaded = io.load(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    metadata = io.read_metadata(path)
    assert metadata["layer_sizes"] == [3, 8, 4, 1] and metadata["activation"] == "tanh"
    assert metadata["feature_names"] == ["a", "b", "c"]
    assert metadata["format_version"] == io.FORMAT_VERSION


def test_standardized_regressor_predicts_in_original_units(data):
    X, y = data
    model = _fit(StandardizedRegressor(MLPRegressor((16,), learning_rate_init=0.1,
                                                    max_iter=2000, device="cpu")), X, y)
    assert abs(float(np.mean(model.predict(X))) - 300.0) < 1.0
    assert model.score(X, y) > 0.9
    np.testing.assert_allclose(model.x_mean_, X.mean(axis=0))


def test_model_trained_on_any_backend_loads_and_predicts_on_the_cpu(backend, tmp_path, data):
    name, device = backend
    X, y = data
    with device.context():
        f32 = device.xp.float32
        Xd, yd = device.asarray(X, dtype=f32), device.asarray(y, dtype=f32)
    model = _fit(StandardizedRegressor(MLPRegressor((8,), max_iter=30, random_state=0)), Xd, yd)
    on_device = to_numpy(model.predict(Xd)).astype(np.float64)
    io.save(model, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    loaded.regressor_.set_params(device="cpu")
    on_cpu = loaded.predict(X.astype(np.float32)).astype(np.float64)
    rel = np.linalg.norm(on_cpu - on_device) / np.linalg.norm(on_device)
    assert rel <= TOLERANCES[("kernel", "float32")], (name, rel)


class _Exploit:
    """Unpickling this would create a file: proof that something was unpickled."""

    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_without_being_unpickled(tmp_path, data):
    marker = tmp_path / "unpickled"
    _Exploit.marker = str(marker)
    path = tmp_path / "evil.npz"
    io.save(_fit(MLPRegressor((3,), max_iter=2, device="cpu"), *data), path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    arrays["coef_0"] = np.array([_Exploit()], dtype=object)
    np.savez(path, **arrays)
    assert not marker.exists()
    with pytest.raises(ModelFileError, match="'coef_0' holds pickled objects"):
        io.load(path)
    assert not marker.exists()
    # The same file does unpickle when allowed, so the test would notice.
    with np.load(path, allow_pickle=True) as archive:
        archive["coef_0"]
    assert marker.exists()


def test_newer_format_version_is_refused(tmp_path, data):
    X, y = data
    path = tmp_path / "m.npz"
    io.save(_fit(MLPRegressor((3,), max_iter=2, device="cpu"), X, y), path)
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    metadata = json.loads(str(arrays["metadata"]))
    metadata["format_version"] = io.FORMAT_VERSION + 1
    arrays["metadata"] = np.array(json.dumps(metadata))
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="newer than this gpumlp reads"):
        io.load(path)


_FITTED = ("loss_curve_", "loss_", "n_iter_", "best_loss_", "validation_scores_",
           "best_validation_score_", "validation_loss_curve_", "t_", "learning_rates_")


@pytest.mark.parametrize("params, validated", [
    ({"solver": "adam"}, False), ({"solver": "adam"}, True),
    ({"solver": "adam", "early_stopping": True}, False), ({"solver": "sgd"}, True),
    ({"solver": "gd"}, True), ({"solver": "lbfgs"}, False)])
def test_every_fitted_attribute_comes_back_from_the_file(tmp_path, data, params, validated):
    # Before: best_loss_, validation_scores_, best_validation_score_ and
    # validation_loss_curve_ of a loaded model were None whatever the fit.
    X, y = data
    X = X / [1.0, 10.0, 100.0]
    eval_set = {"eval_set": (X[:40], y[:40])} if validated else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor(max_iter=15, random_state=0, **params).fit(X, y, **eval_set)
    io.save(model, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    for name in _FITTED:
        assert getattr(loaded, name) == getattr(model, name), name
    assert (model.validation_scores_ is not None) == (validated or "early_stopping" in params)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not-a-model", "missing-array"])
def test_damaged_files_are_refused(tmp_path, data, damage):
    X, y = data
    path = tmp_path / "m.npz"
    io.save(_fit(MLPRegressor((3,), max_iter=2, device="cpu"), X, y), path)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a zip file" * 10)
    elif damage == "not-a-model":
        np.savez(path, X=X)
    else:
        with np.load(path) as archive:
            arrays = {k: archive[k] for k in archive.files if k != "coef_1"}
        np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="damaged|not a gpumlp model"):
        io.load(path)


def test_missing_model_file():
    with pytest.raises(FileNotFoundError, match="no such model file"):
        io.load("/nonexistent/model.npz")


def test_a_failed_save_leaves_the_old_file_and_no_debris(tmp_path, data, monkeypatch):
    X, y = data
    path = tmp_path / "m.npz"
    good = _fit(MLPRegressor((3,), max_iter=2, device="cpu"), X, y)
    io.save(good, path)
    before = path.read_bytes()

    def crash(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save(_fit(MLPRegressor((5,), max_iter=2, device="cpu"), X, y), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_takes_a_path_not_a_file_object(data):
    import io as stdio

    model = _fit(MLPRegressor((3,), max_iter=2, device="cpu"), *data)
    for target in (stdio.BytesIO(), 3):
        with pytest.raises(TypeError, match="save writes to a file path"):
            io.save(model, target)
    # A text for the flag was read as True (adversarial round 6).
    with pytest.raises(TypeError, match="training_state must be True or False"):
        io.save(model, "never-written.npz", training_state="False")


def test_a_file_load_would_refuse_is_never_written(tmp_path, data):
    # Before: save returned normally and load refused the file as damaged;
    # the good model that was at the path was gone (adversarial round 4, D2).
    X, y = data
    model = _fit(StandardizedRegressor(MLPRegressor((3,), max_iter=5, device="cpu",
                                                    random_state=0)), X, y)
    path = tmp_path / "m.npz"
    io.save(model, path)
    good = path.read_bytes()
    bad = [dict(feature_names=["a", "c=a", "c=b"], columns=[("a", None), ("c", ["b", "a"])]),
           dict(columns=[("a", None), ("b", None), ("c", None)])]
    for kwargs in bad:
        with pytest.raises(ValueError, match="would not load back .*nothing was written"):
            io.save(model, path, **kwargs)
    for change in ({"hidden_layer_sizes": (7,)}, {"loss": "poisson"}):
        net = _fit(MLPRegressor((3,), max_iter=5, device="cpu", random_state=0), X, y)
        net.set_params(**change)
        with pytest.raises(ValueError, match="would not load back"):
            io.save(net, path)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["m.npz"]
    np.testing.assert_array_equal(io.load(path).predict(X), model.predict(X))


def test_feature_names_that_contradict_the_frame_are_refused(tmp_path, data):
    # Before: accepted, and `gpumlp predict` then fed each input another
    # column of the CSV (adversarial round 4, D10).
    pd = pytest.importorskip("pandas")
    X, y = data
    frame = pd.DataFrame(X, columns=["b", "a", "c"])
    model = _fit(MLPRegressor((3,), max_iter=3, device="cpu", random_state=0), frame, y)
    with pytest.raises(ValueError, match=r"are not the columns the model was fit on"):
        io.save(model, tmp_path / "m.npz", feature_names=["a", "b", "c"])
    assert not (tmp_path / "m.npz").exists()
    io.save(model, tmp_path / "m.npz", feature_names=["b", "a", "c"])
    assert io.read_metadata(tmp_path / "m.npz")["feature_names"] == ["b", "a", "c"]


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="Only a fitted model"):
        io.save(MLPRegressor(), tmp_path / "m.npz")
    with pytest.raises(TypeError, match="MLPRegressor or StandardizedRegressor"):
        io.save(pickle, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_public_names():
    assert gpumlp.save is io.save and gpumlp.load is io.load


@pytest.mark.parametrize("params", [
    {"hidden_layer_sizes": 16},
    {"hidden_layer_sizes": (np.int64(5), np.int32(3))},
    {"hidden_layer_sizes": np.array([6, 2])},
    {"random_state": np.random.default_rng(7)},
    {"random_state": np.random.Generator(np.random.MT19937(7))},
    {"random_state": np.random.RandomState(7)},
    {"random_state": np.int64(3)},
    {"dtype": np.float32},
    {"dtype": np.dtype("float64")},
    {"alpha": np.float64(1e-3), "learning_rate_init": np.float32(0.05),
     "max_iter": np.int64(4), "batch_size": np.int64(32), "solver": "adam"},
    {"device": gpumlp.get_device("cpu")},
], ids=["int-width", "numpy-int-widths", "array-widths", "generator", "mt19937-generator",
        "random-state", "numpy-int-seed", "dtype-type", "dtype-object", "numpy-scalars",
        "device-value"])
def test_every_parameter_fit_accepts_survives_save_load_and_refit(tmp_path, data, params,
                                                                  monkeypatch):
    """Issue 13, item 1: a trained model can always be loaded, and fitted again."""
    monkeypatch.setenv("GPUMLP_DEVICE", "cpu")
    X, y = data
    settings = {"max_iter": 3, "device": "cpu", **params}
    model = _fit(StandardizedRegressor(MLPRegressor(**settings)), X, y)
    path = tmp_path / "m.npz"
    io.save(model, path)
    metadata = json.loads(str(np.load(path)["metadata"]))
    assert "object at 0x" not in json.dumps(metadata) and "<class" not in json.dumps(metadata)
    loaded = io.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    _fit(loaded, X, y)
    assert loaded.regressor_.n_iter_ >= 1 and np.all(np.isfinite(loaded.predict(X)))


def test_a_saved_generator_state_refits_as_the_saved_model_would(tmp_path, data):
    X, y = data
    net = _fit(MLPRegressor((4,), max_iter=2, device="cpu",
                            random_state=np.random.default_rng(5)), X, y)
    io.save(net, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    assert isinstance(loaded.random_state, np.random.Generator)
    loaded.set_params(device="cpu")
    np.testing.assert_array_equal(_fit(loaded, X, y).coefs_[0], _fit(net, X, y).coefs_[0])


def test_a_saved_randomstate_loads_as_saved_and_refits_as_the_saved_model_would(tmp_path,
                                                                                  data):
    """Loading checked a RandomState random_state by drawing from it: the loaded model's
    generator was one draw past the saved one, and refit differently (adversarial round 5)."""
    X, y = data
    net = _fit(MLPRegressor((4,), max_iter=2, device="cpu",
                            random_state=np.random.RandomState(5)), X, y)
    io.save(net, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    assert isinstance(loaded.random_state, np.random.RandomState)
    saved, got = net.random_state.get_state(), loaded.random_state.get_state()
    assert saved[2] == got[2] and np.array_equal(saved[1], got[1])
    loaded.set_params(device="cpu")
    np.testing.assert_array_equal(_fit(loaded, X, y).coefs_[0], _fit(net, X, y).coefs_[0])


def test_a_parameter_that_cannot_be_plain_json_is_refused_at_save(tmp_path, data):
    X, y = data
    net = _fit(MLPRegressor((3,), max_iter=2, device="cpu"), X, y)
    net.set_params(batch_size=object())
    with pytest.raises(TypeError, match="Cannot save batch_size="):
        io.save(net, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()



@pytest.mark.parametrize("wrapped", [False, True], ids=["plain", "standardized"])
def test_feature_names_survive_save_and_load_and_guard_predict(tmp_path, wrapped):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((60, 3)), columns=["a", "b", "c"])
    y = frame["a"] - frame["b"]
    model = MLPRegressor((4,), max_iter=20, device="cpu", random_state=0)
    model = StandardizedRegressor(model) if wrapped else model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(frame, y)
    io.save(model, tmp_path / "m.npz")
    for fitted in (model, io.load(tmp_path / "m.npz")):
        assert list(fitted.feature_names_in_) == ["a", "b", "c"]
        np.testing.assert_allclose(fitted.predict(frame), model.predict(frame))
        with pytest.raises(ValueError, match="feature names"):
            fitted.predict(frame[["c", "a", "b"]])


# ----------------------------------------- issue 20 §6: names in model files
def test_save_refuses_names_that_load_would_refuse_or_misread(tmp_path, data):
    X, y = data
    model = _fit(MLPRegressor((4,), max_iter=3, device="cpu", random_state=0), X, y)
    path = tmp_path / "m.npz"
    for names, match in ((["a", "b"], r"feature_names has 2 name\(s\), but the model has "
                                      r"3 input\(s\)"),
                         (["a", "a", "a"], "feature_names names 'a' more than once")):
        with pytest.raises(ValueError, match=match):
            io.save(model, path, feature_names=names)
        assert not path.exists()   # nothing written
    with pytest.raises(ValueError, match=r"target_names has 2 name\(s\), but the model has "
                                         r"1 output\(s\)"):
        io.save(model, path, target_names=["u", "v"])
    io.save(model, path, feature_names=["a", "b", "c"], target_names=["t"])
    assert io.read_metadata(path)["feature_names"] == ["a", "b", "c"]


@pytest.mark.parametrize("to", ["stdout", "csv"])
def test_predict_names_each_output_by_its_target_name(tmp_path, data, capsys, to):
    from gpumlp.cli import main

    X, y = data
    model = _fit(MLPRegressor((4,), max_iter=3, device="cpu", random_state=0), X,
                 np.column_stack([y, -y]))
    io.save(model, tmp_path / "m.npz", feature_names=["a", "b", "c"], target_names=["u", "v"])
    np.savetxt(tmp_path / "new.csv", X[:5], delimiter=",", header="a,b,c", comments="")
    out = ["--out", str(tmp_path / "p.csv")] if to == "csv" else []
    assert main(["predict", "--model", str(tmp_path / "m.npz"), "--data",
                 str(tmp_path / "new.csv"), *out]) == 0
    text = (tmp_path / "p.csv").read_text() if to == "csv" else capsys.readouterr().out
    assert text.splitlines()[0] == "u,v"  # stdout is CSV too (the one writer's format)


def test_extra_with_keys_json_cannot_keep_is_refused(tmp_path, data):
    """extra={1: 2} read back as {"1": 2}, another dict (adversarial round 10)."""
    X, y = data
    model = _fit(MLPRegressor((3,), max_iter=2, random_state=0), X, y)
    with pytest.raises(TypeError, match=r"extra's keys must be strings.*\['1'\]"):
        io.save(model, tmp_path / "m.npz", extra={1: 2})
    assert not (tmp_path / "m.npz").exists()
    io.save(model, tmp_path / "m.npz", extra={"1": 2})
    assert io.read_metadata(tmp_path / "m.npz")["extra"] == {"1": 2}


def test_the_loss_increased_warning_is_public():
    from gpumlp.training import LossIncreasedWarning

    assert gpumlp.LossIncreasedWarning is LossIncreasedWarning
    assert "LossIncreasedWarning" in gpumlp.__all__


def test_a_training_state_that_no_longer_fits_is_dropped_aloud(tmp_path, data):
    """save left out a state that no longer fits the weights in silence, so a partial_fit
    of the file restarted Adam unannounced (adversarial round 12)."""
    import dataclasses

    X, y = data
    model = _fit(MLPRegressor((3,), solver="adam", max_iter=2, random_state=0), X, y)
    state = model._trainer.state     # Adam's moments, set by hand to another shape
    model._trainer.state = dataclasses.replace(state, first=[np.zeros((1, 1))] * 4)
    with pytest.warns(UserWarning, match="training state no longer fits its weights"):
        io.save(model, tmp_path / "m.npz")
    assert "training" not in io.read_metadata(tmp_path / "m.npz")


def test_a_standardized_models_template_survives_save_and_load(tmp_path, data):
    """The template's parameters set after the fit (the README's continuation recipe,
    set_params(regressor__warm_start=True, regressor__max_iter=2)) were lost by
    save/load, and the loaded model's next fit trained afresh (adversarial round 13)."""
    X, y = data
    model = _fit(StandardizedRegressor(MLPRegressor((3,), solver="adam", max_iter=3,
                                                    random_state=0)), X, y)
    model.set_params(regressor__warm_start=True, regressor__max_iter=2, regressor__alpha=0.5)
    io.save(model, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    assert loaded.regressor.get_params() == model.regressor.get_params()
    np.testing.assert_array_equal(_fit(loaded, X, y).predict(X), _fit(model, X, y).predict(X))
