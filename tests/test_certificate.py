"""The per-fit certificate: a replay of a saved fit on every backend, and its verdicts."""

import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, StandardizedRegressor, kernels, load, save
from gpumlp.certificate import NotReplayableError, certify, format_certificate
from gpumlp.io import ModelFileError, read_metadata

BACKENDS = ["numpy", "array_api_strict", "torch"]


def _available(names):
    from gpumlp.agreement import available_backends

    usable = available_backends()[0]
    return [n for n in names if n in usable]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 4))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def _fit_and_save(path, data, **params):
    X, y = data
    params = {"hidden_layer_sizes": (6,), "max_iter": 12, "random_state": 0,
              "learning_rate_init": 0.05, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = StandardizedRegressor(MLPRegressor(**params)).fit(X, y)
    save(model, path)
    return model


@pytest.mark.parametrize("solver", ["gd", "sgd", "adam"])
def test_an_honest_file_passes(tmp_path, data, solver):
    path = tmp_path / "model.npz"
    _fit_and_save(path, data, solver=solver, batch_size=32)
    cert = certify(path, *data, backends=_available(BACKENDS))
    assert cert.passed, format_certificate(cert)
    assert cert.stored_checked and cert.epochs == 12
    for replay in cert.replays:
        assert len(replay.weights) == 12 and len(replay.loss) == 12
    assert "PASS" in format_certificate(cert).splitlines()[-1]


def test_jax_replays_too(tmp_path, data):
    pytest.importorskip("jax")
    path = tmp_path / "model.npz"
    _fit_and_save(path, data, solver="adam", batch_size=32, backend="jax")
    cert = certify(path, *data, backends=["numpy", "jax"], dtypes=("float64",))
    assert cert.trained_on == "jax float64"
    assert cert.passed, format_certificate(cert)
    (trained,) = [r for r in cert.replays if r.stored is not None]
    assert trained.backend == "jax"


def test_a_file_with_nudged_weights_fails(tmp_path, data):
    path, nudged = tmp_path / "model.npz", tmp_path / "nudged.npz"
    _fit_and_save(path, data)
    model = load(path)
    model.regressor_.coefs_[1] = model.regressor_.coefs_[1] * (1 + 1e-3)
    save(model, nudged)
    assert certify(path, *data, backends=["numpy"]).passed
    cert = certify(nudged, *data, backends=["numpy"])
    assert not cert.passed
    (trained,) = [r for r in cert.replays if r.stored is not None]
    assert trained.first_failure is None  # the replay itself is fine ...
    assert trained.stored["W2"] > trained.tol  # ... but the file's W2 is not its result
    assert "the file weights differ" in format_certificate(cert)


def test_a_planted_gradient_error_fails_at_the_epoch_it_starts(tmp_path, data, monkeypatch):
    pytest.importorskip("array_api_strict")
    path = tmp_path / "model.npz"
    _fit_and_save(path, data)
    real_backward, calls = kernels.backward, {"n": 0}

    def perturbed(y, activations, coefs, *args, **kwargs):
        coef_grads, intercept_grads = real_backward(y, activations, coefs, *args, **kwargs)
        if type(y).__module__.startswith("array_api_strict"):
            calls["n"] += 1
            if calls["n"] >= 3:  # full-batch gd: one backward per epoch
                coef_grads[0] = coef_grads[0] * (1.0 + 1e-6)
        return coef_grads, intercept_grads

    monkeypatch.setattr(kernels, "backward", perturbed)
    cert = certify(path, *data, backends=["numpy", "array_api_strict"], dtypes=("float64",))
    assert not cert.passed
    bad = [r for r in cert.replays if not r.passed]
    assert [r.backend for r in bad] == ["array_api_strict"]
    assert bad[0].first_failure == (3, "W1")
    assert "epoch 3, W1" in format_certificate(cert)


def test_a_file_without_a_fit_record_cannot_be_replayed_and_says_so(tmp_path, data):
    path = tmp_path / "model.npz"
    model = _fit_and_save(path, data)
    model.regressor_._fit_record = None  # as an older gpumlp wrote it
    save(model, path)
    assert "fit_record" not in read_metadata(path)
    load(path)  # still loads
    with pytest.raises(NotReplayableError, match="holds no fit record.*older gpumlp"):
        certify(path, *data)


def test_a_continued_fit_keeps_no_record(data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((4,), max_iter=2).fit(X, y)
        assert model._fit_record is not None
        model.partial_fit(X, y)
    assert model._fit_record is None


def test_other_data_is_refused(tmp_path, data):
    path = tmp_path / "model.npz"
    _fit_and_save(path, data)
    X, y = data
    with pytest.raises(ValueError, match="not the data the model was fit on"):
        certify(path, X, y + 1e-9, backends=["numpy"])


@pytest.mark.parametrize("tamper, message", [
    (lambda r: r.update(n_iter="12"), "fit_record 'n_iter'"),
    (lambda r: r.pop("rng_state"), "fit_record has the keys"),
    (lambda r: r.update(rng_state={"numpy_generator": {"bit_generator": "Evil"}}),
     "rng_state is not a generator state"),
    (lambda r: r.update(data_sha256="xyz"), "data_sha256"),
    (lambda r: r.update(n_iter=3), "differs from the model's"),
])
def test_the_fit_record_is_checked_strictly(tmp_path, data, tamper, message):
    import json
    import zipfile

    path, bad = tmp_path / "model.npz", tmp_path / "bad.npz"
    _fit_and_save(path, data)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    metadata = read_metadata(path)
    tamper(metadata["fit_record"])
    with zipfile.ZipFile(bad, "w") as archive:
        for name, content in members.items():
            if name != "metadata.npy":
                archive.writestr(name, content)
        with archive.open("metadata.npy", "w") as handle:
            np.save(handle, np.array(json.dumps(metadata)))
    with pytest.raises(ModelFileError, match=message):
        load(bad)


def test_a_missing_initial_weight_member_is_refused(tmp_path, data):
    import zipfile

    path, bad = tmp_path / "model.npz", tmp_path / "bad.npz"
    _fit_and_save(path, data)
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(bad, "w") as out:
        for name in archive.namelist():
            if name != "init_coef_1.npy":
                out.writestr(name, archive.read(name))
    with pytest.raises(ModelFileError, match="init_coef_1 missing"):
        load(bad)


def test_the_validate_command_certifies_a_trained_model(tmp_path, capsys):
    from gpumlp.cli import main

    model, data_file = tmp_path / "m.npz", tmp_path / "d.csv"
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    table = np.column_stack([X, X[:, 0] - X[:, 2]])
    np.savetxt(data_file, table, delimiter=",", header="a,b,c,t", comments="")
    assert main(["train", "--data", str(data_file), "--epochs", "8", "--hidden", "4",
                 "--quiet", "--out", str(model), "--dtype", "float64"]) == 0
    args = ["validate", "--model", str(model), "--data", str(data_file),
            "--backends", "numpy", "--json", str(tmp_path / "c.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "\nPASS (every epoch compared)\nwrote" in out
    nudged = load(model)
    nudged.regressor_.intercepts_[0] = nudged.regressor_.intercepts_[0] + 1e-3
    save(nudged, model, extra=read_metadata(model)["extra"])
    assert main(args) == 1
    assert "\nFAIL (every epoch compared)\nwrote" in capsys.readouterr().out
    old = load(model)
    old.regressor_._fit_record = None
    save(old, model, extra=read_metadata(model)["extra"])
    assert main(args) == 2
    assert "cannot certify" in capsys.readouterr().err
