"""Bad model files: every damage is a ModelFileError, or a model that predicts as saved.

Named tests pin each kind of damage from issue 13 (items 8, 12, 14, 17); the
property tests start from a valid file, damage it at random (truncation,
flipped bytes, members replaced by wrong dtypes, shapes or non-finite
values, extra members, tampered metadata) and accept only two outcomes: a
``ModelFileError``, or a loaded model whose predictions equal the original's.
"""

import io as pyio
import json
import os
import tempfile
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpumlp import MLPRegressor, StandardizedRegressor, io
from gpumlp.io import ModelFileError

X = np.random.default_rng(0).uniform(-1, 1, (40, 3))
Y = X @ np.array([1.0, -2.0, 0.5]) + 10.0


def _trained(kind):
    """A fitted model: ``kind`` is a class name, or "adam" (a file with a solver state)."""
    # Plain gd at a fixed rate keeps no solver state (the default, "auto", does).
    solver = ({"solver": "adam", "batch_size": 10} if kind == "adam"
              else {"learning_rate_init": 0.01})
    net = MLPRegressor((4, 2), "tanh", max_iter=5, random_state=0, device="cpu", **solver)
    model = StandardizedRegressor(net) if kind == "StandardizedRegressor" else net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, Y)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """``{kind: (file bytes, predictions)}`` for a valid file of each kind."""
    folder = tmp_path_factory.mktemp("originals")
    result = {}
    for kind in ("MLPRegressor", "StandardizedRegressor", "adam"):
        model = _trained(kind)
        path = folder / f"{kind}.npz"
        io.save(model, path, feature_names=["a", "b", "c"], target_names=["t"])
        result[kind] = (path.read_bytes(), np.asarray(model.predict(X)))
    return result


def _members(raw):
    with np.load(pyio.BytesIO(raw), allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    return arrays, json.loads(str(arrays.pop("metadata")))


def _pack(arrays, metadata):
    buffer = pyio.BytesIO()
    np.savez(buffer, metadata=np.array(json.dumps(metadata)), **arrays)
    return buffer.getvalue()


def _outcome(raw, expected, folder):
    """"refused" or "same"; fails the test on any other outcome."""
    path = os.path.join(folder, "m.npz")
    with open(path, "wb") as handle:
        handle.write(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = io.load(path)
    except ModelFileError as exc:
        message = str(exc)
        assert "\n" not in message and path in message and "allow_pickle" not in message
        return "refused"
    model_net = getattr(model, "regressor_", model)
    model_net.set_params(device="cpu")
    np.testing.assert_array_equal(np.ravel(model.predict(X)), np.ravel(expected))
    return "same"


# ------------------------------------------------------------ named cases
def _tamper(raw, arrays=None, metadata=None, drop=()):
    found, meta = _members(raw)
    found.update(arrays or {})
    for name in drop:
        found.pop(name)
    if callable(metadata):
        meta = metadata(meta)
    return _pack(found, meta)


def _set(key, value):
    def change(meta):
        if value is _DELETE:
            del meta[key]
        else:
            meta[key] = value
        return meta
    return change


_DELETE = object()


TAMPERED = {
    # item 8, as the issue found it
    "int-weights": ("MLPRegressor", lambda a: {"coef_0": a["coef_0"].astype(np.int64)}, None,
                    "'coef_0' has dtype <i8, not float64"),
    "nan-weights": ("MLPRegressor", lambda a: {"coef_1": a["coef_1"] * np.nan}, None,
                    "'coef_1' holds NaN or infinite values"),
    "inf-intercept": ("MLPRegressor", lambda a: {"intercept_0": a["intercept_0"] + np.inf},
                      None, "'intercept_0' holds NaN or infinite values"),
    "kind-drops-scalers": ("StandardizedRegressor", None, _set("kind", "MLPRegressor"),
                           "holds the scalers x_mean, x_scale, y_mean, y_scale but its kind "
                           "is MLPRegressor"),
    "one-d-weight": ("MLPRegressor", lambda a: {"coef_0": a["coef_0"].ravel()}, None,
                     "'coef_0' has shape (12,), where layer_sizes implies (3, 4)"),
    "empty-layer-sizes": ("MLPRegressor", None, _set("layer_sizes", []),
                          "layer_sizes [] is not a list of at least two positive ints"),
    # more of the schema
    "one-layer-size": ("MLPRegressor", None, _set("layer_sizes", [3]), "layer_sizes [3]"),
    "zero-width": ("MLPRegressor", None, _set("layer_sizes", [3, 0, 2, 1]), "layer_sizes"),
    "bool-width": ("MLPRegressor", None, _set("layer_sizes", [3, True, 2, 1]), "layer_sizes"),
    "float-width": ("MLPRegressor", None, _set("layer_sizes", [3, 4.0, 2, 1]), "layer_sizes"),
    "layer-dropped": ("MLPRegressor", None, _set("layer_sizes", [3, 4, 1]),
                      "it holds coef_2, intercept_2, which layer_sizes [3, 4, 1] has no "
                      "place for"),
    "layer-narrowed": ("MLPRegressor", None, _set("layer_sizes", [3, 4, 3, 1]),
                       "'coef_1' has shape (4, 2), where layer_sizes implies (4, 3)"),
    "stray-layer": ("MLPRegressor", lambda a: {"coef_3": np.ones((1, 1))}, None,
                    "it holds coef_3, which layer_sizes"),
    "float16-weights": ("MLPRegressor", lambda a: {"coef_0": a["coef_0"].astype(np.float16)},
                        None, "'coef_0' has dtype <f2"),
    "mixed-dtypes": ("MLPRegressor", lambda a: {"coef_1": a["coef_1"].astype(np.float32)},
                     None, "'coef_1' has dtype <f4, not float64"),
    "byteswapped": ("MLPRegressor",
                    lambda a: {"coef_0": a["coef_0"].astype(">f8")}, None, "dtype >f8"),
    "metadata-dtype": ("MLPRegressor", None, _set("dtype", "float32"),
                       "'coef_0' has dtype <f8, not float32"),
    "unknown-dtype": ("MLPRegressor", None, _set("dtype", "int64"),
                      "dtype 'int64' is not float32 or float64"),
    "unknown-activation": ("MLPRegressor", None, _set("activation", "swish"),
                           "activation 'swish' is not one of"),
    "activation-mismatch": ("MLPRegressor", None, _set("activation", "relu"),
                            "activation 'relu' differs from the parameter's 'tanh'"),
    "unknown-kind": ("MLPRegressor", None, _set("kind", "Pipeline"),
                     "kind 'Pipeline' is not one of"),
    "missing-kind": ("MLPRegressor", None, _set("kind", _DELETE), "metadata lacks 'kind'"),
    "missing-params": ("MLPRegressor", None, _set("params", _DELETE),
                       "metadata lacks 'params'"),
    "params-not-dict": ("MLPRegressor", None, _set("params", [1, 2]),
                        "metadata 'params' is [1, 2], of the wrong type"),
    "bad-param": ("MLPRegressor", None,
                  lambda m: {**m, "params": {**m["params"], "alpha": -1.0}},
                  "a parameter is invalid (alpha must be >= 0.0"),
    "unknown-param": ("MLPRegressor", None,
                      lambda m: {**m, "params": {**m["params"], "evil": 1}},
                      "unknown parameter(s) evil"),
    "y-1d-many-outputs": ("MLPRegressor", lambda a: {
        "coef_2": np.hstack([a["coef_2"]] * 2),
        "intercept_2": np.hstack([a["intercept_2"]] * 2)},
        lambda m: {**m, "layer_sizes": [3, 4, 2, 2]}, "y_1d is true but the model has 2"),
    "feature-names-count": ("MLPRegressor", None, _set("feature_names", ["a"]),
                            "1 feature_names for 3 input(s)"),
    # issue 20 §6: names that would feed one column to two inputs, or miscount
    "feature-names-duplicate": ("MLPRegressor", None, _set("feature_names", ["a", "a", "c"]),
                                "feature_names names 'a' more than once"),
    "target-names-duplicate": ("MLPRegressor", lambda a: {
        "coef_2": np.hstack([a["coef_2"]] * 2),
        "intercept_2": np.hstack([a["intercept_2"]] * 2)},
        lambda m: {**m, "layer_sizes": [3, 4, 2, 2], "y_1d": False,
                   "target_names": ["t", "t"]}, "target_names names 't' more than once"),
    "target-names-count": ("MLPRegressor", None, _set("target_names", ["t", "u"]),
                           "2 target_names for 1 output(s)"),
    "loss-curve-text": ("MLPRegressor", None, _set("loss_curve", ["x"]),
                        "loss_curve holds something other than numbers"),
    "learning-rate-negative": ("MLPRegressor", None, _set("learning_rate", -0.1),
                               "learning_rate -0.1 is not a finite number >= 0"),
    "learning-rate-bool": ("MLPRegressor", None, _set("learning_rate", True),
                           "learning_rate True is not a finite number >= 0"),
    "loss-text": ("MLPRegressor", None, _set("loss", "low"),
                  "metadata 'loss' is 'low', of the wrong type"),
    "loss-bool": ("MLPRegressor", None, _set("loss", False),
                  "loss False is not a finite number"),
    "learning-rates-text": ("MLPRegressor", None, _set("learning_rates", ["x"]),
                            "learning_rates holds something other than numbers"),
    "learning-rate-text-param": ("MLPRegressor", None,
                                 lambda m: {**m, "params": {**m["params"],
                                                            "learning_rate_init": "big"}},
                                 "learning_rate_init must be 'auto' or a number > 0"),
    "format-version-text": ("MLPRegressor", None, _set("format_version", "1"),
                            "format_version is '1'"),
    "foreign-format": ("MLPRegressor", None, _set("format", "safetensors"),
                       "not a gpumlp model file"),
    "missing-scaler": ("StandardizedRegressor", None, None, "member(s) y_scale missing"),
    "scaler-shape": ("StandardizedRegressor", lambda a: {"x_mean": a["x_mean"][:2]}, None,
                     "'x_mean' has shape (2,), where layer_sizes implies (3,)"),
    "scaler-dtype-mismatch": ("StandardizedRegressor",
                              lambda a: {"x_mean": a["x_mean"].astype(np.float32)}, None,
                              "'x_mean' has dtype float32 but 'x_scale' has float64"),
    "zero-scale": ("StandardizedRegressor", lambda a: {"y_scale": a["y_scale"] * 0}, None,
                   "'y_scale' holds a scale that is not positive"),
    "nan-scaler": ("StandardizedRegressor", lambda a: {"x_mean": a["x_mean"] * np.nan}, None,
                   "'x_mean' holds NaN or infinite values"),
    "metadata-not-string": ("MLPRegressor", None, None, "metadata is a <f8 array"),
    # item 21: the training state
    "state-nan": ("adam", lambda a: {"state_first_0": a["state_first_0"] * np.nan}, None,
                  "'state_first_0' holds NaN or infinite values"),
    "state-dtype": ("adam", lambda a: {"state_second_2": a["state_second_2"].astype("f4")},
                    None, "'state_second_2' has dtype <f4, not float64"),
    "state-member-shape": ("adam", lambda a: {"state_first_1": np.ones((2, 4))}, None,
                           "'state_first_1' has shape (2, 4), where layer_sizes implies (4, 2)"),
    "state-missing": ("adam", None, None, "member(s) state_second_3 missing"),
    "state-negative-moment": ("adam", lambda a: {"state_second_0": -1 - a["state_second_0"]},
                              None, "Adam's second moments hold a negative value"),
    "state-swapped": ("adam", lambda a: {"state_first_0": a["state_first_1"],
                                         "state_first_1": a["state_first_0"]},
                      lambda m: _training(m, ["arrays", "first_0"], [4, 2],
                                          ["arrays", "first_1"], [3, 4]),
                      "state array 'first_0' has shape (4, 2) and dtype float64, where this "
                      "solver keeps (3, 4)"),
    "state-odd-shape": ("adam", None, lambda m: _training(m, ["arrays", "first_0"], [7, 7]),
                        "state array 'first_0' has shape [7, 7], which is not the shape"),
    "state-oversized": ("adam", None, lambda m: _training(
        m, ["arrays"], {f"a{i}": [29] for i in range(65)}), "more than 64 copies of the 29"),
    "state-bad-name": ("adam", None, lambda m: _training(m, ["arrays", "../x"], [4]),
                       "name '../x' is not a plain name"),
    "state-negative-step": ("adam", None,
                            lambda m: _training(m, ["state", "fields", "t", "value"], -3),
                            "a state count is negative (-3)"),
    "state-foreign-class": ("adam", None, lambda m: _training(m, ["state", "class"], "Popen"),
                            "holds a Popen where this solver keeps AdamState"),
    "state-unknown-array": ("adam", None, lambda m: _training(
        m, ["state", "fields", "first", "items", 0, "name"], "nope"),
        "names an array 'nope' that is not there"),
    # SGD's state became SGDState (its schedule's rate, issue 12), no longer a list.
    "state-other-solver": ("adam", None, lambda m: _training(m, ["solver"], "sgd"),
                           "holds a AdamState where this solver keeps SGDState"),
    "state-unknown-solver": ("adam", None, lambda m: _training(m, ["solver"], "lbfgs!"),
                             "training solver 'lbfgs!' is not one of"),
    "state-keys": ("adam", None, lambda m: {**m, "training": {"solver": "adam"}},
                   "its training state has the keys ['solver']"),
    "rng-bit-generator": ("adam", None, lambda m: _training(
        m, ["rng", "numpy_generator", "bit_generator"], "os.system"),
        "unknown bit generator 'os.system'"),
    "rng-state": ("adam", None, lambda m: _training(
        m, ["rng", "numpy_generator", "state"], "x"), "its training state is invalid"),
    "history-negative": ("adam", None, lambda m: _training(
        m, ["history", "no_improvement_count"], -1), "training history holds a value of"),
    "history-text": ("adam", None, lambda m: _training(
        m, ["history", "validation_losses"], ["x"]), "training history holds a value of"),
}


def _training(metadata, *changes):
    """``metadata`` with ``metadata["training"][path...] = value`` for each (path, value)."""
    for path, value in zip(changes[::2], changes[1::2]):
        node = metadata["training"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return metadata


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_model_file_is_refused_naming_the_problem(originals, tmp_path, case):
    """Issue 13, item 8: a schema check, before the estimator is built."""
    kind, arrays, metadata, message = TAMPERED[case]
    raw = originals[kind][0]
    if case == "missing-scaler":
        raw = _tamper(raw, drop=["y_scale"])
    elif case == "state-missing":
        raw = _tamper(raw, drop=["state_second_3"])
    elif case == "metadata-not-string":
        found, _ = _members(raw)
        buffer = pyio.BytesIO()
        np.savez(buffer, metadata=np.ones(3), **found)
        raw = buffer.getvalue()
    else:
        raw = _tamper(raw, arrays(_members(raw)[0]) if arrays else None, metadata)
    path = tmp_path / "m.npz"
    path.write_bytes(raw)
    with pytest.raises(ModelFileError) as caught:
        io.load(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_untampered_file_loads(originals, tmp_path):
    """The control for the table above: the files it damages are good."""
    for raw, expected in originals.values():
        assert _outcome(raw, expected, str(tmp_path)) == "same"


def _add_member(path, name, size, compression=zipfile.ZIP_DEFLATED):
    """Append ``name`` to the archive: a float64 ``.npy`` of ``size`` zero bytes."""
    with zipfile.ZipFile(path, "a", compression=compression, compresslevel=1) as archive, \
            archive.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "<f8", "fortran_order": False, "shape": (size // 8,)})
        chunk = bytes(2**22)
        for _ in range(size // len(chunk)):
            member.write(chunk)


def test_an_oversized_extra_member_is_never_read(originals, tmp_path, monkeypatch):
    """Issue 13, item 12: only the members the format names are read."""
    path = tmp_path / "m.npz"
    path.write_bytes(originals["StandardizedRegressor"][0])
    _add_member(path, "extra.npy", 2**30)
    assert path.stat().st_size < 8 * 2**20
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open",
                        lambda self, name, *a, **k: opened.append(getattr(name, "filename",
                                                                          name))
                        or real_open(self, name, *a, **k))
    tracemalloc.start()
    try:
        model = io.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "extra.npy" not in opened and "coef_0.npy" in opened
    assert peak < 16 * 2**20
    model.regressor_.set_params(device="cpu")
    np.testing.assert_array_equal(model.predict(X), originals["StandardizedRegressor"][1])


def test_an_oversized_named_member_is_refused_before_its_data_is_read(originals, tmp_path):
    """Issue 13, item 12: a member's size is bounded by what the metadata implies."""
    found, metadata = _members(originals["MLPRegressor"][0])
    del found["coef_0"]
    path = tmp_path / "m.npz"
    path.write_bytes(_pack(found, metadata))
    _add_member(path, "coef_0.npy", 2**28)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=r"member 'coef_0' holds 268435\d+ bytes, "
                                                 r"more than the 96 its metadata allows"):
            io.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20


def test_predict_reads_the_model_file_once(originals, tmp_path, monkeypatch, capsys):
    """Issue 13, item 12: the CLI's predict opens the model once."""
    from gpumlp.cli import main

    model = tmp_path / "m.npz"
    model.write_bytes(originals["StandardizedRegressor"][0])
    features = tmp_path / "x.npy"
    np.save(features, X)
    reads = []
    real_read = io._read
    monkeypatch.setattr(io, "_read", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    assert main(["predict", "--model", str(model), "--data", str(features),
                 "--device", "cpu"]) == 0
    assert len(reads) == 1
    assert len(capsys.readouterr().out.splitlines()) == 1 + len(X)


@pytest.mark.parametrize("what", ["npy", "directory", "fifo", "empty", "text"])
def test_a_model_path_that_is_not_a_model_file_is_one_clear_error(tmp_path, what):
    """Issue 13, items 14 and 17: no TypeError, no NumPy hint to unpickle."""
    path = tmp_path / "model.npz"
    if what == "npy":
        path = tmp_path / "model.npy"
        np.save(path, np.ones((3, 3)))
        message = "is a single NumPy array (.npy), not a gpumlp model file"
    elif what == "directory":
        path.mkdir()
        message = "is a directory"
    elif what == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("needs os.mkfifo")
        os.mkfifo(path)
        message = "is not a regular file"
    elif what == "empty":
        path.write_bytes(b"")
        message = "not a gpumlp model file, or damaged"
    else:
        path.write_text("coef_0,1,2\n")
        message = "not a gpumlp model file, or damaged"
    with pytest.raises(ModelFileError) as caught:
        io.load(path)
    assert message in str(caught.value) and "pickle" not in str(caught.value)


def test_a_short_member_is_called_truncated_not_pickled(originals, tmp_path):
    """Issue 13, item 17: a member shorter than its header says is reported as such."""
    found, metadata = _members(originals["MLPRegressor"][0])
    del found["coef_0"]
    path = tmp_path / "m.npz"
    path.write_bytes(_pack(found, metadata))
    with zipfile.ZipFile(path, "a") as archive, archive.open("coef_0.npy", "w") as member:
        np.lib.format.write_array_header_1_0(
            member, {"descr": "<f8", "fortran_order": False, "shape": (3, 4)})
        member.write(bytes(40))
    with pytest.raises(ModelFileError, match=r"'coef_0' is 40 bytes of data, where its "
                                             r"shape \(3, 4\) needs 96"):
        io.load(path)


# ---------------------------------------------------------- property tests
_BAD_DTYPES = [np.int8, np.int64, np.uint8, np.bool_, np.float16, np.complex128, "<U3",
               ">f8"]
_ODD_VALUES = [None, -1, 0, 1, 2.5, "x", "", [], [0], [3], [3, 1], [3, 4, 2, 1, 1],
               [1.5, 2], ["3"], {}, {"a": 1}, True, 2**70, "float16", "float32",
               "MLPRegressor", "StandardizedRegressor", "relu", "identity", "gpumlp-model"]


@st.composite
def damaged_files(draw):
    kind = draw(st.sampled_from(["MLPRegressor", "StandardizedRegressor", "adam"]))
    raw = ORIGINALS[kind][0]
    damage = draw(st.sampled_from(["truncate", "flip", "replace", "extra", "metadata",
                                   "param"] + ["training"] * (kind == "adam")))
    if damage == "truncate":
        return kind, raw[: draw(st.integers(0, len(raw) - 1))]
    if damage == "flip":
        data = bytearray(raw)
        for offset, mask in draw(st.lists(st.tuples(st.integers(0, len(raw) - 1),
                                                    st.integers(1, 255)),
                                          min_size=1, max_size=8)):
            data[offset] ^= mask
        return kind, bytes(data)
    arrays, metadata = _members(raw)
    if damage == "replace":
        name = draw(st.sampled_from(sorted(arrays)))
        array = arrays[name]
        how = draw(st.sampled_from(["dtype", "shape", "nonfinite", "empty", "scalar"]))
        if how == "dtype":
            array = array.astype(draw(st.sampled_from(_BAD_DTYPES)))
        elif how == "shape":
            shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
            if tuple(shape) == array.shape:
                shape.append(2)
            array = np.ones(shape, dtype=array.dtype)
        elif how == "nonfinite":
            array = array.copy()
            index = draw(st.integers(0, array.size - 1))
            array.flat[index] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        elif how == "empty":
            array = np.zeros((0,) * array.ndim, dtype=array.dtype)
        else:
            array = np.asarray(array.flat[0])
        arrays[name] = array
    elif damage == "extra":
        name = draw(st.sampled_from(["coef_7", "intercept_3", "x_mean", "y_scale", "extra",
                                     "X", "coef_0x", "notes"]))
        if name in arrays:
            name += "_copy"
        arrays[name] = np.ones(draw(st.integers(0, 4)))
    elif damage == "metadata":
        key = draw(st.sampled_from(sorted(metadata)))
        if draw(st.booleans()):
            del metadata[key]
        else:
            metadata[key] = draw(st.sampled_from(_ODD_VALUES))
    elif damage == "training":
        node = metadata["training"]
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            parent = node
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                       else range(len(node))))
            node = node[key]
        if node is metadata["training"]:
            parent, key = metadata, "training"
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = draw(st.sampled_from(_ODD_VALUES))
    else:
        key = draw(st.sampled_from(sorted(metadata["params"])))
        metadata["params"][key] = draw(st.sampled_from(_ODD_VALUES))
    return kind, _pack(arrays, metadata)


ORIGINALS = {}


@pytest.fixture(scope="module", autouse=True)
def _share_originals(originals):
    ORIGINALS.update(originals)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged_files())
def test_a_damaged_model_file_is_refused_or_predicts_as_saved(damaged):
    kind, raw = damaged
    with tempfile.TemporaryDirectory() as folder:
        _outcome(raw, ORIGINALS[kind][1], folder)
