"""The per-fit certificate by segments: honest fits pass, each forgery fails, gaps are named."""

import contextlib
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

from gpumlp import MLPRegressor, StandardizedRegressor, load, save
from gpumlp.certificate import NotReplayableError, certify, format_certificate
from gpumlp.io import ModelFileError, _plain, read_metadata


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((120, 4))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def _fit(data, scaled=True, sample_weight=None, **params):
    X, y = data
    params = {"hidden_layer_sizes": (6,), "max_iter": 12, "random_state": 0,
              "learning_rate_init": 0.05, **params}
    net = MLPRegressor(**params)
    model = StandardizedRegressor(net) if scaled else net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, sample_weight)
    return model


def _saved(tmp_path, model, name="model.npz", **kwargs):
    path = tmp_path / name
    save(model, path, **kwargs)
    return path


def _rewrite(path, out, edit_metadata=None, edit_arrays=None, drop=""):
    """Copy a model file, changing its metadata or members as a forger would
    (and leaving out the members whose names start with ``drop``, if given)."""
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    metadata = read_metadata(path)
    if edit_metadata is not None:
        edit_metadata(metadata)
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            if name == "metadata.npy" or (drop and name.startswith(drop)):
                continue
            if edit_arrays is not None and name[:-4] in edit_arrays:
                with archive.open(name, "w") as handle:
                    array = np.load(path)[name[:-4]]
                    np.save(handle, edit_arrays[name[:-4]](array.copy()))
            else:
                archive.writestr(name, content)
        with archive.open("metadata.npy", "w") as handle:
            np.save(handle, np.array(json.dumps(metadata)))
    return out


def _outcome(path, data, **kwargs):
    kwargs.setdefault("backends", ["numpy"])
    cert = certify(path, *data, **kwargs)
    return cert.outcome, cert


@pytest.mark.parametrize("params", [
    dict(solver="gd"), dict(solver="gd", learning_rate_init="auto"),
    dict(solver="sgd", batch_size=32), dict(solver="adam", batch_size=32),
    dict(solver="lbfgs"), dict(solver="gd", learning_rate_init="auto", dtype="float32"),
])
def test_an_honest_fit_passes_every_epoch(tmp_path, data, params):
    path = _saved(tmp_path, _fit(data, **params))
    outcome, cert = _outcome(path, data)
    assert outcome == "PASS", format_certificate(cert)
    assert cert.exit_code == 0
    covered = [r for r in cert.replays if r.error is None]
    assert {(r.backend, r.dtype) for r in covered} == {("numpy", "float32"),
                                                      ("numpy", "float64")}
    # The segments cover every epoch, from 0 to the last, with no gap.
    for replay in covered:
        bounds = [(s["start"], s["end"]) for s in replay.segments]
        assert bounds[0][0] == 0 and bounds[-1][1] == cert.epochs
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert format_certificate(cert).splitlines()[-1].startswith("PASS")


def test_other_backends_replay_too(tmp_path, data):
    pytest.importorskip("array_api_strict")
    path = _saved(tmp_path, _fit(data, solver="adam", batch_size=40))
    outcome, cert = _outcome(path, data, backends=["numpy", "array_api_strict"])
    assert outcome == "PASS", format_certificate(cert)
    assert {r.backend for r in cert.replays} == {"numpy", "array_api_strict"}


def test_a_jax_trained_model_replays(tmp_path, data):
    pytest.importorskip("jax")
    path = _saved(tmp_path, _fit(data, backend="jax", max_iter=6))
    outcome, cert = _outcome(path, data, backends=["numpy", "jax"], dtypes=("float64",))
    assert cert.trained_on == "jax float64"
    assert outcome == "PASS", format_certificate(cert)


def test_sample_weights_and_eval_set_are_bound(tmp_path, data):
    X, y = data
    w = np.linspace(0.5, 2.0, X.shape[0])
    model = MLPRegressor((5,), max_iter=8, random_state=0, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, w, eval_set=(X[:30], y[:30]))
    path = _saved(tmp_path, model)
    ok = certify(path, X, y, sample_weight=w, eval_set=(X[:30], y[:30]), backends=["numpy"])
    assert ok.outcome == "PASS", format_certificate(ok)
    missing = certify(path, X, y, sample_weight=w, backends=["numpy"])
    assert missing.outcome == "CANNOT" and "eval_set" in missing.missing[0]
    w2 = w.copy()
    w2[7] *= 1.001
    bad = certify(path, X, y, sample_weight=w2, eval_set=(X[:30], y[:30]), backends=["numpy"])
    assert bad.outcome == "FAIL"
    assert "not the data the model was fit on" in format_certificate(bad)


def test_y_as_a_column_is_the_same_data(tmp_path, data):
    X, y = data
    path = _saved(tmp_path, _fit(data, max_iter=3))
    assert certify(path, X, y[:, None], backends=["numpy"]).outcome == "PASS"


def test_one_changed_data_value_fails(tmp_path, data):
    X, y = data
    path = _saved(tmp_path, _fit(data, max_iter=3))
    X2 = X.copy()
    X2[5, 2] += 1e-9
    cert = certify(path, X2, y, backends=["numpy"])
    assert cert.outcome == "FAIL" and cert.exit_code == 1
    assert "not the data the model was fit on" in format_certificate(cert)


def test_a_tampered_scaler_is_named_not_taken_for_other_data(tmp_path, data):
    path = _saved(tmp_path, _fit(data, max_iter=3))
    bad = _rewrite(path, tmp_path / "bad.npz", edit_arrays={"y_mean": lambda a: a + 0.1})
    cert = certify(bad, *data, backends=["numpy"])
    text = format_certificate(cert)
    assert cert.outcome == "FAIL"
    assert "FAIL the scaler y_mean, recomputed from the data" in text
    assert "not the data the model was fit on" not in text


def test_the_initial_weights_must_be_the_seeds_draw(tmp_path, data):
    """Pre-trained "initial" weights, saved with random_state=0, fail."""
    X, y = data
    poisoned = y + 3.0 * (X[:, 0] > 1)
    pre = MLPRegressor((6,), max_iter=30, random_state=0, learning_rate_init=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre.fit(X, poisoned)
        pre.set_params(warm_start=True, max_iter=10).fit(X, y)   # honest epochs after it
    path = _saved(tmp_path, pre)
    assert certify(path, X, y, backends=["numpy"]).outcome == "CANNOT"   # parent unknown

    def claim_seed(metadata):
        metadata["fit_record"]["start"] = {"kind": "seed", "seed": {"kind": "int", "value": 0}}

    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=claim_seed)
    cert = certify(forged, X, y, backends=["numpy"])
    assert cert.outcome == "FAIL"
    assert "FAIL the initial weights are the draw of the recorded seed" in \
        format_certificate(cert)


def test_the_tiny_rate_one_epoch_trick_fails(tmp_path, data):
    """Arbitrary weights as the start, learning_rate_init=1e-300, one epoch."""
    X, y = data
    target = _fit(data, scaled=False, max_iter=40)
    model = _fit(data, scaled=False, max_iter=1, learning_rate_init=1e-300)
    path = _saved(tmp_path, model)
    goal = [*target.coefs_, *target.intercepts_]

    def as_target(a):
        flat = np.concatenate([g.ravel() for g in goal])
        return np.concatenate([flat, a[flat.size:]])

    members = {f"coef_{i}": (lambda a, i=i: target.coefs_[i]) for i in range(2)}
    members.update({f"intercept_{i}": (lambda a, i=i: target.intercepts_[i]) for i in range(2)})
    members.update({"ckpt_0": as_target, "ckpt_1": as_target})
    forged = _rewrite(path, tmp_path / "forged.npz", edit_arrays=members)
    cert = certify(forged, X, y, backends=["numpy"])
    assert cert.outcome == "FAIL", format_certificate(cert)
    assert "FAIL the initial weights are the draw" in format_certificate(cert)


@pytest.mark.parametrize("edit, what", [
    (lambda m: m.update(loss_curve=[v / 1000 for v in m["loss_curve"]]), "loss epoch"),
    (lambda m: m.update(loss=m["loss"] / 1000), "loss_"),
    (lambda m: m.update(learning_rates=[v * 2 for v in m["learning_rates"]]), "rate"),
    (lambda m: m.update(trained_on="torch:cpu"), "trained_on"),
    # learning_rate_ (loaded from "learning_rate"): the last epoch's rate (round 4, D6).
    (lambda m: m.update(learning_rate=123.0), "learning_rate_ is the last epoch's rate"),
])
def test_the_files_claims_are_bound(tmp_path, data, edit, what):
    path = _saved(tmp_path, _fit(data, max_iter=6))
    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=edit)
    cert = certify(forged, *data, backends=["numpy"])
    assert cert.outcome == "FAIL", format_certificate(cert)
    assert what in format_certificate(cert)


def test_a_hidden_layer_sizes_lie_fails(tmp_path, data):
    path = _saved(tmp_path, _fit(data, max_iter=3))

    def lie(metadata):
        metadata["params"]["hidden_layer_sizes"] = [5]

    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=lie)
    with pytest.raises(ModelFileError, match="hidden_layer_sizes"):
        load(forged)
    cert = certify(forged, *data, backends=["numpy"])
    assert cert.outcome == "FAIL" and "hidden_layer_sizes" in format_certificate(cert)


@pytest.mark.parametrize("solver", ["gd", "adam"])
@pytest.mark.parametrize("where", ["weights", "state", "stored"])
def test_one_changed_value_in_a_checkpoint_fails(tmp_path, data, solver, where):
    path = _saved(tmp_path, _fit(data, scaled=False, solver=solver, max_iter=40,
                                 batch_size=40))
    n_weights = 4 * 6 + 6 + 6 + 1
    if where == "stored":
        edit = {"coef_1": lambda a: a + np.eye(*a.shape)[0] * 1e-6}
    else:
        index = 3 if where == "weights" else -1   # the last value: the solver state's
        if solver == "gd" and where == "state":
            index = n_weights - 1                   # plain gd keeps no state: a bias
        edit = {"ckpt_3": lambda a: np.where(np.arange(a.size) == index % a.size,
                                             a * (1 + 1e-6) + 1e-9, a)}
    forged = _rewrite(path, tmp_path / "forged.npz", edit_arrays=edit)
    cert = certify(forged, *data, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL", format_certificate(cert)


def test_swapped_feature_names_fail_against_the_header(tmp_path, data):
    path = _saved(tmp_path, _fit(data, max_iter=3), feature_names=["a", "b", "c", "d"],
                  target_names=["t"])
    ok = certify(path, *data, backends=["numpy"], feature_names=["a", "b", "c", "d"],
                 target_names=["t"])
    assert ok.outcome == "PASS"
    cert = certify(path, *data, backends=["numpy"], feature_names=["b", "a", "c", "d"],
                   target_names=["t"])
    assert cert.outcome == "FAIL" and "feature_names are the data's header" in \
        format_certificate(cert)


def test_target_names_are_checked_against_a_dataframe_y(tmp_path, data):
    """A y given as a dataframe is a header: swapped target names in the file
    fail against its columns (before, the note said the data had no header)."""
    pd = pytest.importorskip("pandas")
    X, y = data
    Y = pd.DataFrame({"u": y, "v": 2 - y})
    path = _saved(tmp_path, _fit((X, Y.to_numpy()), max_iter=3), target_names=["u", "v"])
    assert certify(path, X, Y, backends=["numpy"]).outcome == "PASS"
    forged = _saved(tmp_path, _fit((X, Y.to_numpy()), max_iter=3), "forged.npz",
                    target_names=["v", "u"])
    cert = certify(forged, X, Y, backends=["numpy"])
    assert cert.outcome == "FAIL" and "target_names are the data's header" in \
        format_certificate(cert)


@pytest.mark.parametrize("change", [{"solver": "adam"}, {"dtype": "float32"}])
@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_a_chain_whose_solver_or_dtype_changed_between_links_certifies(tmp_path, data, change,
                                                                      how):
    """partial_fit after set_params(solver=...) starts a fresh solver state, and
    after set_params(dtype=...) the parent's weights and state cast: honest
    starts, which failed (adversarial round 8, #36, #39, #42)."""
    model = _fit(data, scaled=False, solver="sgd", max_iter=5, dtype="float64")
    parent = _saved(tmp_path, model, "parent.npz")
    model.set_params(**change)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if how == "partial_fit":
            model.partial_fit(*data)
        else:
            model.set_params(warm_start=True, max_iter=3).fit(*data)
    child = _saved(tmp_path, model, "child.npz")
    cert = certify(child, *data, backends=["numpy"], parents=(parent,))
    assert cert.outcome == "PASS", format_certificate(cert)


def test_a_partial_fit_from_a_parent_saved_without_its_state_cannot_be_certified(tmp_path,
                                                                                  data):
    """The parent file keeps no training state, the child went on from the state
    kept in memory: nothing can check that state, so CANNOT, saying why; it
    was FAIL (adversarial round 8, #345)."""
    model = _fit(data, scaled=False, solver="sgd", max_iter=5)
    parent = tmp_path / "parent.npz"
    save(model, parent, training_state=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(*data)
    child = _saved(tmp_path, model, "child.npz")
    cert = certify(child, *data, backends=["numpy"], parents=(parent,))
    assert cert.outcome == "CANNOT", format_certificate(cert)
    assert any("keeps no training state" in m for m in cert.missing)
    fresh = load(parent)   # loaded without a state, partial_fit starts afresh: checkable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh.partial_fit(*data)
    cert = certify(_saved(tmp_path, fresh, "fresh.npz"), *data, backends=["numpy"],
                   parents=(parent,))
    assert cert.outcome == "PASS", format_certificate(cert)


def test_a_flipped_y_1d_fails(tmp_path, data):
    """y_1d decides predict's shape, (n,) or (n, 1): flipped, the loaded model
    answered (n, 1), and the certificate said PASS (adversarial round 9)."""
    X, y = data
    path = _saved(tmp_path, _fit(data, scaled=False, solver="sgd", max_iter=4))
    assert certify(path, X, y, backends=["numpy"], dtypes=("float64",)).outcome == "PASS"
    forged = _rewrite(path, tmp_path / "forged.npz",
                      edit_metadata=lambda m: m.update(y_1d=False))
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL" and "y_1d (the shape predict answers in)" in \
        format_certificate(cert)


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("one_d", [True, False])
def test_y_1d_flipped_in_the_file_and_its_record_fails(tmp_path, data, scaled, one_d):
    """Flipped in the metadata and in the fit record alike, y_1d changed predict's
    shape and the certificate said PASS (adversarial round 16): the data's
    fingerprint now binds it. The fit's y given either way is the same data."""
    X, y = data
    y = y if one_d else y[:, None]
    model = _fit((X, y), scaled=scaled, solver="sgd", max_iter=4)
    path = _saved(tmp_path, model)
    for given in (y, np.reshape(y, (-1, 1)), np.ravel(y)):
        assert certify(path, X, given, backends=["numpy"], dtypes=("float64",)).outcome == \
            "PASS"

    def flip(metadata):
        metadata["y_1d"] = not one_d
        metadata["fit_record"]["y_1d"] = not one_d

    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=flip)
    assert load(forged).predict(X).ndim != model.predict(X).ndim
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL", format_certificate(cert)
    assert "as its data's fingerprint binds it" in format_certificate(cert)


def test_a_parameter_no_replay_can_confirm_is_named_as_not_certified(tmp_path, data):
    """warm_start changes no number of a fit, so a file edited to warm_start=True
    (a later fit of the loaded model then continues) replays as the honest one
    did: the report must say that warm_start is not certified, not imply it was
    (adversarial round 9 saw such a file PASS with nothing said)."""
    X, y = data
    path = _saved(tmp_path, _fit(data, scaled=False, solver="sgd", max_iter=4))
    forged = _rewrite(path, tmp_path / "forged.npz",
                      edit_metadata=lambda m: m["params"].update(warm_start=True))
    assert load(forged).warm_start is True
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    text = format_certificate(cert)
    assert any(note.startswith("not certified: warm_start and verbose")
               for note in cert.notes), text
    assert "note: not certified: warm_start" in text


def test_a_float64_fit_cast_to_float32_fails_where_its_record_says_float64(tmp_path, data):
    """Every array of a float64 fit cast to float32 and the file called float32 replayed
    within float32's rounding and PASSed (adversarial round 11). The record of what the
    fit ran with says dtype float64 (or None on float64 data): that contradiction fails.
    (Called a float32 fit in the record too, it lands within the rounding that no
    tolerance can refute: docs/certificate.md, "What is not certified".)"""
    for dtype in ("float64", None):
        path = _saved(tmp_path, _fit(data, scaled=False, solver="sgd", batch_size=32,
                                     max_iter=4, dtype=dtype), f"{dtype}.npz")
        with np.load(path) as archive:
            floats = [n for n in archive.files if archive[n].dtype == np.float64]

        def cast(m):
            m["dtype"] = "float32"
            m["params"]["dtype"] = "float32"

        forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=cast, edit_arrays={
            name: (lambda a: a.astype(np.float32)) for name in floats})
        assert load(forged).coefs_[0].dtype == np.float32     # it loads as float32
        outcome, cert = _outcome(forged, data)
        assert outcome == "FAIL", format_certificate(cert)
        assert "FAIL the dtype the fit ran in is its dtype parameter's" in \
            format_certificate(cert)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_file_whose_solver_contradicts_its_record_fails_without_a_traceback(tmp_path, data,
                                                                              solver):
    """params.solver edited from sgd, in the file and in the record of what the fit
    ran with: the replay met an SGD state it could not build or read and crashed
    with a TypeError or AttributeError (adversarial round 8, #558-#560); now a
    FAIL that says why. Edited in the file alone, it is what set_params(solver=...)
    before save gives, a later fit's setting: named in a note. A caller's
    mistake still raises."""
    X, y = data
    path = _saved(tmp_path, _fit(data, scaled=False, solver="sgd", max_iter=4))
    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=lambda m: [
        d.update(solver=solver) for d in (m["params"], m["fit_record"]["params"])])
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL", format_certificate(cert)
    assert "the file's parts agree with each other" in format_certificate(cert)
    later = _rewrite(path, tmp_path / "later.npz",
                     edit_metadata=lambda m: m["params"].update(solver=solver))
    cert = certify(later, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    assert f"solver {solver!r} (the fit's 'sgd')" in format_certificate(cert)
    with pytest.raises(TypeError, match="backends takes a list of names"):
        certify(forged, X, y, backends="numpy")


def test_a_warm_start_chain_certifies_link_by_link(tmp_path, data):
    model = _fit(data, max_iter=5)
    parent = _saved(tmp_path, model, "parent.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.regressor_.set_params(warm_start=True, max_iter=4)
        model.fit(*data)
    child = _saved(tmp_path, model, "child.npz")
    alone = certify(child, *data, backends=["numpy"])
    assert alone.outcome == "CANNOT" and "parent" in alone.missing[0]
    chained = certify(child, *data, backends=["numpy"], parents=[parent])
    assert chained.outcome == "PASS", format_certificate(chained)
    assert chained.parents[0].outcome == "PASS"


@pytest.mark.parametrize("scaled", [True, False])
def test_a_loaded_model_saved_again_keeps_its_provenance_and_certifies(tmp_path, data,
                                                                       scaled):
    """save(load(f)) is f again, ``trained_on`` included (it was written as ''), so the
    fit record and the file's word on where it ran still agree: PASS, not FAIL."""
    first = _saved(tmp_path, _fit(data, scaled=scaled), "first.npz")
    again = _saved(tmp_path, load(first), "again.npz")
    before, after = read_metadata(first), read_metadata(again)
    assert after["trained_on"] == before["trained_on"] == "cpu"
    assert {k: v for k, v in after.items() if k != "created"} == \
        {k: v for k, v in before.items() if k != "created"}
    with np.load(first) as a, np.load(again) as b:
        assert sorted(a.files) == sorted(b.files)
        for name in set(a.files) - {"metadata"}:     # compared above, but for "created"
            assert np.array_equal(a[name], b[name]), name
    outcome, cert = _outcome(again, data)
    assert outcome == "PASS", format_certificate(cert)


def test_saved_again_the_file_differs_only_in_backend_and_device(tmp_path, data):
    """README: a loaded model saved again is the same file but for its backend and
    device parameters, which load resets (adversarial round 16: the README named
    only the device)."""
    model = _fit(data, scaled=False, solver="sgd", max_iter=4, backend="numpy", device="cpu")
    first = _saved(tmp_path, model, "first.npz")
    again = _saved(tmp_path, load(first), "again.npz")
    before, after = read_metadata(first), read_metadata(again)
    assert (before["params"]["backend"], before["params"]["device"]) == ("numpy", "cpu")
    assert (after["params"]["backend"], after["params"]["device"]) == (None, None)
    for meta in (before, after):
        meta.pop("created")
        meta["params"].pop("backend")
        meta["params"].pop("device")
    assert after == before


def test_a_file_saved_with_names_and_extra_is_the_same_file_saved_again(tmp_path, data):
    """The names and extra (the CLI's settings, split and data digest) a file was saved
    with are written again by save(load(f)): they were dropped, so a `gpumlp train` model
    saved again from Python FAILed `validate --data` on its own CSV and `predict` wanted
    columns x0, x1, ... (adversarial round 10). Trained again, the model's new weights
    take no old names."""
    model = _fit(data, scaled=False, solver="sgd", max_iter=4)
    first = _saved(tmp_path, model, "first.npz", feature_names=["p", "q", "r", "s"],
                   target_names=["t"], extra={"note": "kept", "n": 3})
    loaded = load(first)
    again = _saved(tmp_path, loaded, "again.npz")
    before, after = read_metadata(first), read_metadata(again)
    assert {k: v for k, v in after.items() if k != "created"} == \
        {k: v for k, v in before.items() if k != "created"}
    renamed = read_metadata(_saved(tmp_path, loaded, "renamed.npz", target_names=["u"]))
    assert renamed["target_names"] == ["u"] and renamed["feature_names"] == ["p", "q", "r", "s"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded.partial_fit(*data)
    trained = read_metadata(_saved(tmp_path, loaded, "trained.npz"))
    assert trained["feature_names"] is None and trained["extra"] == {}


def test_parameters_set_after_the_fit_are_noted_and_the_replay_uses_the_fits(tmp_path, data):
    """set_params between fit and save (the next call's warm_start and max_iter, say)
    changed the file's parameters, and the replay judged the fit by them: an honest fit
    FAILed ("the rule ends it at 4"; adversarial round 10). The record keeps the
    parameters the fit ran with; those it replays; the others are a later fit's."""
    model = _fit(data, scaled=False, solver="adam", max_iter=10, batch_size=32, alpha=1e-4)
    # dtype too: predict computes in the weights' dtype; and the same activation and
    # width in their other spellings (adversarial round 11 saw each FAIL).
    model.set_params(warm_start=True, max_iter=4, alpha=0.5, tol=0.5, dtype="float32",
                     activation="logistic", hidden_layer_sizes=6)
    path = _saved(tmp_path, model)
    outcome, cert = _outcome(path, data)
    assert outcome == "PASS", format_certificate(cert)
    note = next(n for n in cert.notes if n.startswith("the file's parameters differ"))
    assert "max_iter 4 (the fit's 10)" in note and "alpha 0.5 (the fit's 0.0001)" in note
    # What predict reads must be the fit's; a forged record's parameters replay as forged.
    for forge, said in (
            (lambda m: m.update(activation="tanh") or m["params"].update(activation="tanh"),
             "activation is 'tanh' in the file, 'sigmoid' in the fit"),
            (lambda m: m["fit_record"]["params"].update(alpha=0.3), None),
            (lambda m: [d.update(alpha=0.3) for d in (m["params"],
                                                       m["fit_record"]["params"])], None)):
        forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=forge)
        outcome, cert = _outcome(forged, data)
        assert outcome == "FAIL", format_certificate(cert)
        if said is not None:
            assert said in format_certificate(cert)


def test_a_parent_that_is_no_path_is_the_callers_mistake(tmp_path, data):
    """parents=[(path, X, y)] gave a FAIL blaming the honest file (adversarial round 14)."""
    model = _fit(data, scaled=False, solver="adam", max_iter=3)
    parent = _saved(tmp_path, model, "parent.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(*data)
    child = _saved(tmp_path, model, "child.npz")
    with pytest.raises(TypeError, match="parents takes model file paths"):
        certify(child, *data, backends=["numpy"], parents=[(parent, *data)])
    with pytest.raises(TypeError, match="parents takes a list of model file paths"):
        certify(child, *data, backends=["numpy"], parents=str(parent))
    assert certify(child, *data, backends=["numpy"], parents=[parent]).outcome == "PASS"


def test_a_one_epoch_fit_formats_and_passes(tmp_path, data):
    path = _saved(tmp_path, _fit(data, max_iter=1))
    outcome, cert = _outcome(path, data)
    assert outcome == "PASS"
    assert "1 epochs" in format_certificate(cert)


def test_a_missing_training_backend_cannot_certify(tmp_path, data, monkeypatch):
    from gpumlp import agreement
    from gpumlp.devices import BackendUnavailableError

    path = _saved(tmp_path, _fit(data, max_iter=3))
    real = agreement.backend_device

    def without_numpy_name(name):
        if name == "numpy":
            raise BackendUnavailableError("not installed here (simulated)")
        return real(name)

    pytest.importorskip("array_api_strict")
    monkeypatch.setattr(agreement, "backend_device", without_numpy_name)
    cert = certify(path, *data, backends=["array_api_strict"])
    assert cert.outcome == "CANNOT" and cert.exit_code == 2
    assert any("trained on, numpy" in m for m in cert.missing)


@pytest.mark.parametrize("argument", [dict(dtypes=()), dict(backends=[])])
def test_no_dtype_or_no_backend_is_refused(tmp_path, data, argument):
    """backends=[] replayed on NumPy all the same, where dtypes=() was refused
    (adversarial round 16): both are refused."""
    path = _saved(tmp_path, _fit(data, max_iter=2))
    with pytest.raises(ValueError, match="certify nothing"):
        certify(path, *data, **argument)


def test_an_eval_set_the_fit_did_not_have_is_named_unused(tmp_path, data):
    """An eval_set given for a fit that had none was ignored without a word
    (adversarial round 16)."""
    X, y = data
    path = _saved(tmp_path, _fit(data, max_iter=2))
    cert = certify(path, X, y, eval_set=(X[:5], y[:5]), backends=["numpy"])
    assert cert.outcome == "PASS", format_certificate(cert)
    assert any("eval_set given was not used" in n for n in cert.notes), cert.notes


def test_a_file_without_a_record_cannot_be_certified_and_says_what_it_can(tmp_path, data):
    model = _fit(data, max_iter=3)
    model.regressor_._fit_record = None  # as an older gpumlp wrote it
    path = _saved(tmp_path, model)
    assert "fit_record" not in read_metadata(path)
    load(path)  # still loads
    with pytest.raises(NotReplayableError, match="no fit record.*it loads"):
        certify(path, *data)


@pytest.mark.parametrize("tamper, message", [
    (lambda r: r.update(n_iter="12"), "fit_record 'n_iter'"),
    (lambda r: r.pop("start"), "fit_record has the keys"),
    (lambda r: r["checkpoints"][0].update(rng={"numpy_generator": {"bit_generator": "Evil"}}),
     "rng is not a generator state"),
    (lambda r: r.update(data_sha256="xyz"), "data_sha256"),
    (lambda r: r.update(n_iter=3), "differs from the model's"),
    (lambda r: r["checkpoints"].reverse(), "do not run from 0"),
    (lambda r: r.update(start={"kind": "seed", "seed": {"kind": "int", "value": "0"}}),
     "is not a seed"),
    (lambda r: r.update(accepted=[True]), "accepted"),
])
def test_the_fit_record_is_checked_strictly(tmp_path, data, tamper, message):
    path = _saved(tmp_path, _fit(data, learning_rate_init="auto"))
    bad = _rewrite(path, tmp_path / "bad.npz",
                   edit_metadata=lambda m: tamper(m["fit_record"]))
    with pytest.raises(ModelFileError, match=message):
        load(bad)


def test_a_missing_checkpoint_member_is_refused(tmp_path, data):
    path = _saved(tmp_path, _fit(data))
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(bad, "w") as out:
        for name in archive.namelist():
            if name != "ckpt_1.npy":
                out.writestr(name, archive.read(name))
    with pytest.raises(ModelFileError, match="ckpt_1 missing"):
        load(bad)


def test_the_record_stays_bounded(data):
    """At most MAX_CHECKPOINTS + 2 checkpoints, whatever max_iter."""
    from gpumlp._fitrecord import MAX_CHECKPOINTS

    model = _fit(data, scaled=False, max_iter=300, tol=0.0, n_iter_no_change=10**6)
    record = model._fit_record
    assert record["n_iter"] == 300
    assert len(record["checkpoints"]) <= MAX_CHECKPOINTS + 2
    assert [c["epoch"] for c in record["checkpoints"]][-1] == 300


@pytest.mark.parametrize("n_iter", [33, 66])
def test_a_fit_ending_where_the_checkpoints_thin_keeps_its_last_epoch(tmp_path, data, n_iter):
    """The 33rd checkpoint doubles the spacing, and thinning dropped that very epoch
    when it was the fit's last: the record then ended at epoch 32, its file would
    not load back, and save refused it, so `gpumlp train` lost the trained model
    (adversarial round 10: a --resume that converged after 33 epochs)."""
    from gpumlp._fitrecord import MAX_CHECKPOINTS

    assert n_iter in (MAX_CHECKPOINTS + 1, 2 * (MAX_CHECKPOINTS + 1))
    model = _fit(data, scaled=False, solver="sgd", batch_size=64, max_iter=n_iter, tol=0.0,
                 n_iter_no_change=10**6)
    assert [c["epoch"] for c in model._fit_record["checkpoints"]][-1] == n_iter
    outcome, cert = _outcome(_saved(tmp_path, model), data, dtypes=("float64",))
    assert outcome == "PASS", format_certificate(cert)


def test_a_resumed_early_stopping_chain_certifies_link_by_link(tmp_path, capsys):
    """`train --resume` of an --early-stopping run goes on from its last weights; its
    parent file holds its best. The certificate compared the start with the best only,
    and FAILed the honest link; and as the links of such a chain share their best
    weights (the best epoch stayed the first), a link was taken as its own parent and
    certified itself until the recursion ran out, reported as a damaged file
    (adversarial round 10, #721)."""
    from gpumlp.cli import main

    rows = np.random.default_rng(8)
    table = rows.normal(size=(150, 3))
    target = table @ [1, -2, 0.5] + 0.1 * rows.normal(size=150)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[table, target], delimiter=",", header="a,b,c,y", comments="")
    links = [str(tmp_path / f"c{i}.npz") for i in range(3)]
    assert main(["train", "--data", str(data), "--hidden", "4", "--device", "cpu", "--quiet",
                 "--epochs", "7", "--out", links[0], "--early-stopping",
                 "--n-iter-no-change", "50"]) == 0
    for parent, child, epochs in ((links[0], links[1], "6"), (links[1], links[2], "5")):
        assert main(["train", "--resume", parent, "--data", str(data), "--epochs", epochs,
                     "--quiet", "--out", child]) == 0
    scores = load(links[0]).regressor_.validation_scores_
    assert scores.index(max(scores)) < len(scores) - 1     # the best is not the last epoch
    capsys.readouterr()
    check = ["validate", "--data", str(data), "--backends", "numpy", "--dtypes", "float32"]
    assert main([*check, "--model", links[1], "--parent", links[0]]) == 0
    assert "(its last weights: an early-stopping run resumed)" in capsys.readouterr().out
    assert main([*check, "--model", links[2], "--parent", links[1], "--parent", links[0]]) == 0
    assert "PASS" in capsys.readouterr().out
    # A model given as its own parent is no parent; the real one still missing: exit 2.
    assert main([*check, "--model", links[1], "--parent", links[1]]) == 2


def test_the_validate_command_certifies_with_three_exit_codes(tmp_path, capsys):
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
    assert "\nPASS" in out and "feature_names are the data's header" in out
    assert json.loads((tmp_path / "c.json").read_text())["outcome"] == "PASS"
    assert main(args[:-2] + ["--dtypes", ""]) == 2
    assert "names no dtype" in capsys.readouterr().err
    # An empty --backends checked nothing and passed; --parent without
    # --model was ignored (adversarial round 6).
    for argv, said in ((args[:-2] + ["--backends", ","], "names no backend"),
                       (args + ["--configs", "gd"], "--configs chooses the agreement"),
                       (["validate", "--backends", ""], "names no backend"),
                       # ran none of the training checks and passed (adversarial round 10)
                       (["validate", "--backends", "numpy", "--configs", ""],
                        "--configs names no training run"),
                       (["validate", "--parent", str(model), "--backends", "numpy"],
                        "--parent goes with --model")):
        assert main(argv) == 2
        assert said in capsys.readouterr().err
    swapped = tmp_path / "swapped.npz"
    _rewrite(model, swapped, edit_metadata=lambda m: m.update(feature_names=["b", "a", "c"]))
    assert main(["validate", "--model", str(swapped), "--data", str(data_file),
                 "--backends", "numpy"]) == 1
    nudged = load(model)
    nudged.regressor_.intercepts_[0] = nudged.regressor_.intercepts_[0] + 1e-3
    save(nudged, model, extra=read_metadata(model)["extra"])
    assert main(args) == 1
    assert "\nFAIL" in capsys.readouterr().out
    old = load(model)
    old.regressor_._fit_record = None
    save(old, model, extra=read_metadata(model)["extra"])
    assert main(args) == 2
    assert "cannot certify" in capsys.readouterr().err


def test_the_fingerprint_hashes_the_datas_own_bytes():
    """Issue 23 section 3: no float64 copy; equal data, equal digests, in any layout."""
    import tracemalloc

    from gpumlp._fitrecord import PendingFingerprint, fingerprint

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200_000, 4)).astype(np.float32)   # 3.2 MB
    y = rng.standard_normal(200_000)
    digest = fingerprint(X, y)
    assert fingerprint(np.asfortranarray(X), y[:, None]) == digest
    assert fingerprint(X.astype(">f4"), y) == digest
    assert fingerprint(X.astype(np.float64), y) != digest     # another dtype: other data
    changed = X.copy()
    changed[123, 1] = np.nextafter(changed[123, 1], np.float32(1))
    assert fingerprint(changed, y) != digest
    assert fingerprint(X, y, np.ones(200_000)) != digest
    big = np.concatenate([X, X])                                # 6.4 MB: hashed in a thread
    assert PendingFingerprint(big, np.concatenate([y, y])).result() == \
        fingerprint(big, np.concatenate([y, y]))
    tracemalloc.start()
    fingerprint(X, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < X.nbytes / 10, peak    # the arrays' own bytes: no copy


def test_a_fit_whose_auto_decisions_are_not_the_rules_fails(tmp_path, data, monkeypatch):
    """A self-consistent file whose "auto" rates were not the rule's: each decision is checked."""
    from gpumlp import solvers

    real = solvers.AutoGD.decide

    def bolder(self, *args):
        accept, rate = real(self, *args)
        return accept, float(f"{rate * 1.3:.4g}")

    monkeypatch.setattr(solvers.AutoGD, "decide", bolder)
    forged = _fit(data, learning_rate_init="auto", max_iter=10)
    monkeypatch.setattr(solvers.AutoGD, "decide", real)
    cert = certify(_saved(tmp_path, forged), *data, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL"
    assert "where the rule gives" in format_certificate(cert)


def forging_longer_steps(monkeypatch, factor=2.5, wolfe_only=False):
    """Make L-BFGS take steps ``factor`` times its line search's (with ``wolfe_only``,
    only where that is still a strong-Wolfe step, the search's evaluation count kept);
    returns the undo and the list of the steps changed."""
    import dataclasses

    from gpumlp import solvers

    real = solvers.LBFGS._line_search
    changed = []

    def other(self, objective, params, direction, f0, slope, step, state, eps):
        found, after = real(self, objective, params, direction, f0, slope, step, state, eps)
        if found is None:
            return found, after
        a = factor * found[0]
        loss, grads, (f, largest, d), moved = self._evaluate(
            objective, solvers._lbfgs_ops(params)["axpy"](a, direction, params), after,
            direction)
        if not wolfe_only:
            return (a, loss, grads, f, largest, 0.0), moved
        if f <= f0 + self.c1 * a * slope and abs(d) <= -self.c2 * slope:
            changed.append(a)
            return (a, loss, grads, f, largest, 0.0), dataclasses.replace(
                moved, n_fun=after.n_fun)
        return found, after

    monkeypatch.setattr(solvers.LBFGS, "_line_search", other)
    return lambda: monkeypatch.setattr(solvers.LBFGS, "_line_search", real), changed


def test_a_fit_whose_lbfgs_steps_are_not_the_searchs_fails(tmp_path, data, monkeypatch):
    """A self-consistent file whose L-BFGS steps are twice the search's: not strong-Wolfe."""
    undo, _ = forging_longer_steps(monkeypatch)
    forged = _fit(data, solver="lbfgs", max_iter=6)
    undo()
    cert = certify(_saved(tmp_path, forged), *data, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL"
    assert "nor a strong-Wolfe step" in format_certificate(cert)


def test_a_fit_choosing_other_strong_wolfe_steps_fails_bit_for_bit(tmp_path, data,
                                                                   monkeypatch):
    """L-BFGS steps 0.7 times the search's, each still a strong-Wolfe step (the rule's
    evaluation count kept): within rounding on any backend, so only the replay that
    computes as the fit did tells (found by review)."""
    undo, changed = forging_longer_steps(monkeypatch, 0.7, wolfe_only=True)
    forged = _fit(data, solver="lbfgs", max_iter=20, scaled=False)
    undo()
    assert len(changed) >= 10
    path = _saved(tmp_path, forged)
    outcome, cert = _outcome(path, data, dtypes=("float64",))
    assert outcome == "FAIL" and cert.replays[0].exact
    assert "is not the line search's" in format_certificate(cert)
    # Claimed from another machine, no replay computes as the fit did: each step is
    # then only checked to be a strong-Wolfe one, and the report says what that costs.
    elsewhere = _rewrite(path, tmp_path / "elsewhere.npz", edit_metadata=lambda m: m[
        "fit_record"]["computation"].update(cpu="another CPU"))
    outcome, cert = _outcome(elsewhere, data, dtypes=("float64",))
    assert not cert.replays[0].exact
    assert "no replay here computes as the fit did" in format_certificate(cert)


def test_a_float32_weight_changed_within_rounding_fails_bit_for_bit(tmp_path, data,
                                                                   monkeypatch):
    """One float32 weight moved by 5e-3 after the last of many minibatch steps: in a long
    enough segment within its rounding allowance (k eps |W|: 480 steps passed on every
    other backend in review), never within the fit's own numbers."""
    from gpumlp import _fitrecord, training

    real = _fitrecord.Recorder.on_epoch

    def nudged(self):
        t = self.trainer
        if len(t.loss_curve) - t.call_start == 64:
            W1 = np.array(t.params[0])
            W1[0, 0] *= np.float32(1.005)
            t.params = [W1, *t.params[1:]]
        real(self)

    monkeypatch.setattr(_fitrecord.Recorder, "on_epoch", nudged)
    monkeypatch.setattr(training, "_next_block_size", lambda *a: 1)
    forged = _fit(data, solver="sgd", batch_size=1, max_iter=64, n_iter_no_change=10**6,
                  dtype="float32", scaled=False)
    monkeypatch.undo()
    outcome, cert = _outcome(_saved(tmp_path, forged), data, dtypes=("float32", "float64"))
    assert outcome == "FAIL"
    exact = [r for r in cert.replays if r.exact]
    assert [(r.dtype, r.passed) for r in exact] == [("float32", False)]
    assert any("W1 differs from the record" in f for f in exact[0].failures)


@pytest.mark.parametrize("fit_fast", [True, False])
def test_the_fast_path_claim_is_replayed_as_claimed(tmp_path, data, fit_fast):
    """A fit made with the fast paths off replays with the generic kernels, bit for bit;
    a fast-path fit whose file claims they were off fails (found by review)."""
    from gpumlp import fastpath

    with contextlib.nullcontext() if fit_fast else fastpath.disabled():
        model = _fit(data, solver="gd", max_iter=30, scaled=False)
    path = _saved(tmp_path, model)
    outcome, cert = _outcome(path, data, dtypes=("float64",))
    assert outcome == "PASS" and cert.replays[0].exact
    if fit_fast:
        flipped = _rewrite(path, tmp_path / "flipped.npz", edit_metadata=lambda m: m[
            "fit_record"].update(fastpath=False, computation=_computation(False)))
        outcome, cert = _outcome(flipped, data, dtypes=("float64",))
        assert outcome == "FAIL" and cert.replays[0].exact, format_certificate(cert)


def test_a_fast_path_fit_certified_with_the_fast_path_off_passes(tmp_path):
    """NumPy's generic kernels cannot compute as the fast path did (its sigmoid is a
    tanh form): their replay is judged over rounding samples, as another backend's.
    Judged over float32's spread alone, an honest default gd fit of 500 rows failed
    by 10 times its tolerance under GPUMLP_FASTPATH=0 (found by review)."""
    from gpumlp import fastpath

    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 5))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 - X[:, 2] + 0.1 * rng.standard_normal(500)
    model = MLPRegressor(solver="gd", max_iter=100, random_state=0, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    assert model._fit_record["fastpath"]
    path = _saved(tmp_path, model)
    with fastpath.disabled():
        outcome, cert = _outcome(path, (X, y))
    assert outcome == "PASS", format_certificate(cert)
    assert not any(r.exact for r in cert.replays)
    assert "the fit ran with the fast path, which is off here" in format_certificate(cert)


def test_numpys_instruction_sets_are_in_the_computation_key(tmp_path, data):
    """NPY_DISABLE_CPU_FEATURES moves NumPy's exp and tanh by an ulp: a fit made so is
    no longer declared bit for bit here (it failed so, in review), and passes within
    rounding, the note naming the difference."""
    import subprocess
    import sys

    from gpumlp._fitrecord import _numpy_simd

    targets = _numpy_simd()
    if not targets:
        pytest.skip("NumPy dispatches to no instruction set beyond its baseline here")
    np.savez(tmp_path / "data.npz", X=data[0], y=data[1])
    script = (
        "import sys, warnings, numpy as np\n"
        "from gpumlp import MLPRegressor, save\n"
        "d = np.load(sys.argv[1])\n"
        "warnings.simplefilter('ignore')\n"
        "m = MLPRegressor((6,), solver='adam', activation='tanh', max_iter=12, "
        "random_state=0, learning_rate_init=0.05).fit(d['X'], d['y'])\n"
        "save(m, sys.argv[2])\n")
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=",".join(targets))
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "data.npz"),
                    str(tmp_path / "m.npz")], env=env, check=True, capture_output=True)
    assert load(tmp_path / "m.npz")._fit_record["computation"]["numpy_simd"] == []
    outcome, cert = _outcome(tmp_path / "m.npz", data, dtypes=("float64",))
    assert outcome == "PASS" and not cert.replays[0].exact, format_certificate(cert)
    assert "the fit's numpy_simd []" in format_certificate(cert)


def _computation(fast):
    from gpumlp._fitrecord import computation

    return computation("numpy", fast)


def test_an_old_record_without_its_computation_is_judged_within_rounding(tmp_path, data):
    path = _saved(tmp_path, _fit(data, solver="adam", scaled=False))
    old = _rewrite(path, tmp_path / "old.npz",
                   edit_metadata=lambda m: m["fit_record"].pop("computation"))
    outcome, cert = _outcome(old, data, dtypes=("float64",))
    assert outcome == "PASS" and not cert.replays[0].exact
    assert "its record names none" in format_certificate(cert)
    # (and where the key matches but the fit's dtype is not replayed, that is the reason)
    outcome, cert = _outcome(path, data, dtypes=("float32",))
    assert outcome == "PASS" and "the fit's dtype, float64, was not among those replayed" \
        in format_certificate(cert)


@pytest.mark.parametrize("count", ["max_fun", "plausible"])
def test_a_failed_search_faked_by_its_count_fails(tmp_path, data, monkeypatch, count):
    """The 8th L-BFGS search made to "fail" (the fit then stops, 12 iterations early):
    with a count that reaches max_fun, more than an iteration's searches can take; with
    a plausible count, the search run as the fit ran it finds a step (found by review)."""
    import dataclasses

    from gpumlp import solvers

    real_search, real_update = solvers.LBFGS._line_search, solvers.LBFGS.update
    calls = []

    def update(self, params, state, objective):
        calls.append(None)
        return real_update(self, params, state, objective)

    def failing(self, objective, params, direction, f0, slope, step, state, eps):
        if len(calls) == 8:
            n = self.max_fun if count == "max_fun" else state.n_fun + 5
            return None, dataclasses.replace(state, n_fun=n)
        return real_search(self, objective, params, direction, f0, slope, step, state, eps)

    monkeypatch.setattr(solvers.LBFGS, "update", update)
    monkeypatch.setattr(solvers.LBFGS, "_line_search", failing)
    forged = _fit(data, solver="lbfgs", max_iter=20, scaled=False)
    monkeypatch.undo()
    assert forged.n_iter_ == 8
    outcome, cert = _outcome(_saved(tmp_path, forged), data, dtypes=("float64",))
    assert outcome == "FAIL"
    text = format_certificate(cert)
    if count == "max_fun":
        assert "FAIL each L-BFGS iteration's loss evaluations" in text
    else:
        assert "the file says the line search found no step; run as the fit ran it" in text


def test_the_fits_blas_threads_are_taken_on(tmp_path):
    """A fit whose BLAS ran on one thread (OPENBLAS_NUM_THREADS=1, a joblib worker),
    certified with more: a product's bits depend on its threads, so the bit-for-bit
    replay takes the fit's (it failed by 5.6e-17 with the default two, in review)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 50))
    y = np.sin(X[:, 0]) + 0.1 * X[:, 1:].sum(1)
    model = MLPRegressor((30, 20), solver="adam", batch_size=5000, max_iter=4,
                         random_state=0, learning_rate_init=0.01)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    assert set(model._fit_record["computation"]["blas_threads"]) == {1}
    path = _saved(tmp_path, model)
    outcome, cert = _outcome(path, (X, y), dtypes=("float64",))
    assert outcome == "PASS" and cert.replays[0].exact, format_certificate(cert)


def test_a_generator_swapped_at_a_checkpoint_fails(tmp_path, data, monkeypatch):
    """A file whose batch-order generator was reseeded mid-fit: its later batches are a
    forger's choice, each segment an honest run from its checkpoint (found by review)."""
    from gpumlp import _fitrecord, training

    real = _fitrecord.Recorder.on_epoch

    def reseeding(self):
        if len(self.trainer.loss_curve) - self.trainer.call_start == 4:
            self.rng.bit_generator.state = np.random.default_rng(12345).bit_generator.state
        real(self)

    monkeypatch.setattr(_fitrecord.Recorder, "on_epoch", reseeding)
    monkeypatch.setattr(training, "_next_block_size", lambda *a: 1)
    forged = _fit(data, solver="sgd", batch_size=16, scaled=False)
    monkeypatch.undo()
    honest = _fit(data, solver="sgd", batch_size=16, scaled=False)
    assert not np.array_equal(forged.coefs_[0], honest.coefs_[0])
    outcome, cert = _outcome(_saved(tmp_path, forged), data, dtypes=("float64",))
    assert outcome == "FAIL"
    assert "the batch-order generator after epoch 4" in format_certificate(cert)
    assert _outcome(_saved(tmp_path, honest, "honest.npz"), data,
                    dtypes=("float64",))[0] == "PASS"


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_partial_fit_link_certifies_against_its_parent(tmp_path, data, solver):
    model = _fit(data, scaled=False, solver=solver, max_iter=4, batch_size=40)
    parent = _saved(tmp_path, model, "parent.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(*data)
    child = _saved(tmp_path, model, "child.npz")
    cert = certify(child, *data, backends=["numpy"], parents=[parent])
    assert cert.outcome == "PASS", format_certificate(cert)
    assert "ok   the continued fit starts from the parent's solver state, kept" in \
        format_certificate(cert)
    # Adam's moments (sgd's velocities) changed at the link's start: the link fails.
    bad = _rewrite(child, tmp_path / "bad.npz", edit_arrays={"ckpt_0": lambda a: np.where(
        np.arange(a.size) == a.size - 1, a + 1e-3, a)})
    assert certify(bad, *data, backends=["numpy"], parents=[parent]).outcome == "FAIL"


def test_validation_scores_are_bound(tmp_path, data):
    X, y = data
    model = MLPRegressor((5,), solver="adam", batch_size=40, max_iter=6, random_state=0,
                         early_stopping=True, validation_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    path = _saved(tmp_path, model)
    assert certify(path, X, y, backends=["numpy"]).outcome == "PASS"

    def better(metadata):
        scores = metadata["training"]["history"]["validation_scores"]
        scores[-1] = scores[-1] + 0.01

    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=better)
    cert = certify(forged, X, y, backends=["numpy"])
    assert cert.outcome == "FAIL" and "validation score epoch" in format_certificate(cert)


def test_a_fit_float32_cannot_replay_cannot_be_certified(tmp_path):
    """A float64 Poisson fit of unscaled X whose float32 replay overflows: the
    segments' sensitivity cannot be measured, so the answer is "cannot
    certify", never a crash (it raised TrainingDivergedError) and never PASS."""
    from gpumlp import io
    from gpumlp.certificate import certify

    X = np.array([[125.73022109], [-132.10486329], [640.42265044], [104.90011715],
                  [-535.66937316], [361.59505491]])
    y = np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    model = MLPRegressor((1,), activation="relu", loss="poisson", solver="gd", max_iter=1,
                         tol=0.0, dtype="float64", device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    io.save(model, tmp_path / "m.npz")
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "CANNOT", str(cert)
    assert any("sensitivity to rounding" in m for m in cert.missing)


def test_a_parent_no_fit_of_the_chain_continued_is_refused(tmp_path):
    """``validate --parent`` on a fresh fit printed PASS and ignored the parent
    (adversarial round 3): a claimed parent is never dropped in silence."""
    from gpumlp.certificate import certify

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5]
    for name in ("a", "b"):
        save(MLPRegressor((4,), solver="sgd", max_iter=3, dtype="float64", device="cpu",
                          random_state=0).fit(X, y), tmp_path / f"{name}.npz")
    kwargs = dict(backends=["numpy"], dtypes=("float64",))
    assert certify(tmp_path / "a.npz", X, y, **kwargs).outcome == "PASS"
    for parent, said in (("b.npz", "no link of the chain"),     # another model
                         ("a.npz", "never its own parent")):    # the model itself
        with pytest.raises(ValueError, match=said):
            certify(tmp_path / "a.npz", X, y, parents=(tmp_path / parent,), **kwargs)


def test_a_grandparent_without_the_parent_names_the_missing_link(tmp_path):
    """c <- b <- a, certified with a alone: the refusal said a was "no link of the
    chain" and to drop it, where the missing model is b (adversarial round 16)."""
    from gpumlp.certificate import certify

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = X @ [1.0, -2.0, 0.5]
    model = MLPRegressor((4,), solver="sgd", max_iter=3, dtype="float64", device="cpu",
                         random_state=0)
    for name in ("a", "b", "c"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(X, y)
        save(model, tmp_path / f"{name}.npz")
    kwargs = dict(backends=["numpy"], dtypes=("float64",))
    chain = (tmp_path / "b.npz", tmp_path / "a.npz")
    assert certify(tmp_path / "c.npz", X, y, parents=chain, **kwargs).outcome == "PASS"
    with pytest.raises(ValueError, match=r"a.npz was not reached \(a model further up the "
                                         r"chain, perhaps\): the parent of .*c.npz"):
        certify(tmp_path / "c.npz", X, y, parents=(tmp_path / "a.npz",), **kwargs)


def test_validate_reads_a_frame_models_csv_by_its_column_names(tmp_path, capsys):
    """A model fit in Python on a frame (columns b, a, c), validated with its data
    as a CSV in another column order: predict reads such a CSV by name, validate
    read it by position and failed the honest fit (adversarial round 8, #180)."""
    pd = pytest.importorskip("pandas")
    from gpumlp.cli import main

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((60, 3)), columns=["b", "a", "c"])
    y = frame["a"] - frame["c"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((3,), solver="sgd", max_iter=4, random_state=0).fit(frame, y)
    save(model, tmp_path / "m.npz")
    frame[["a", "b", "c"]].assign(y=y).to_csv(tmp_path / "d.csv", index=False)
    argv = ["validate", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.csv"),
            "--backends", "numpy"]
    assert main(argv) == 0, capsys.readouterr().out
    assert "feature_names_in are the data's header" in capsys.readouterr().out
    shuffled = frame[["a", "b", "c"]].assign(y=y).sample(frac=1, random_state=0)
    shuffled.to_csv(tmp_path / "d.csv", index=False)   # other rows: not its data
    assert main(argv) == 1


def test_a_cli_resume_link_certifies_against_its_parent(tmp_path):
    """`gpumlp train --resume` keeps the parent's solver state without being a
    partial_fit: validate failed the honest link (adversarial round 3)."""
    from gpumlp.cli import main

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[X, y], delimiter=",", header="a,b,c,y", comments="", fmt="%.6g")
    common = ["--device", "cpu", "--quiet", "--data", str(data)]
    assert main(["train", *common, "--hidden", "4", "--epochs", "3", "--dtype", "float64",
                 "--out", str(tmp_path / "half.npz")]) == 0
    assert main(["train", *common, "--resume", str(tmp_path / "half.npz"), "--epochs", "3",
                 "--out", str(tmp_path / "res.npz")]) == 0
    assert main(["validate", "--model", str(tmp_path / "res.npz"), "--data", str(data),
                 "--parent", str(tmp_path / "half.npz"), "--backends", "numpy",
                 "--dtypes", "float64"]) == 0
    # --json naming the parent (or a link to it) would replace the parent by
    # the report (adversarial round 4): refused before anything is written.
    before = (tmp_path / "half.npz").read_bytes()
    (tmp_path / "link.json").symlink_to(tmp_path / "half.npz")
    for report in ("half.npz", "link.json"):
        assert main(["validate", "--model", str(tmp_path / "res.npz"), "--data", str(data),
                     "--parent", str(tmp_path / "half.npz"), "--backends", "numpy",
                     "--dtypes", "float64", "--json", str(tmp_path / report)]) == 2
    assert (tmp_path / "half.npz").read_bytes() == before


@pytest.mark.parametrize("replay", ["float32", "float64"])
def test_an_honest_fit_whose_gradient_overflows_float32_certifies(tmp_path, replay):
    # Found by the laws' long run: a float32 Poisson fit of unscaled X holds
    # |g|**2 = inf in its state; its replay does too. It was a FAIL ("not
    # finite in the replay"), and under pytest a RuntimeWarning.
    X = np.array([[154.27], [-394.22], [-181.38], [-615.72], [-1029.07], [-771.56]])
    y = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    model = MLPRegressor((1, 3), activation="relu", loss="poisson", solver="gd", max_iter=2,
                         dtype="float32", random_state=0, tol=0.0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    assert model.loss_ > 1e18          # far beyond what float32 squares
    save(model, tmp_path / "m.npz")
    cert = certify(tmp_path / "m.npz", X, y, backends=["numpy"], dtypes=(replay,))
    assert cert.passed, format_certificate(cert)
    # The same file with its last weights changed still fails.
    model.coefs_[0] = model.coefs_[0] * np.float32(1.001)
    save(model, tmp_path / "t.npz")
    assert not certify(tmp_path / "t.npz", X, y, backends=["numpy"], dtypes=(replay,)).passed


# ----------------------------------------------- adversarial round 4: claims and layouts
def _cli_run(tmp_path, solver="gd"):
    """A small `gpumlp train --out` run: (model file, data CSV, the data's numbers)."""
    from gpumlp.cli import main

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3))
    table = np.column_stack([X, X.sum(1) + 0.1 * rng.normal(size=40)])
    data, model = tmp_path / "f.csv", tmp_path / "a.npz"
    np.savetxt(data, table, delimiter=",", header="a,b,c,y", comments="")
    assert main(["train", "--data", str(data), "--hidden", "3", "--solver", solver,
                 "--epochs", "4", "--out", str(model), "--quiet", "--device", "cpu"]) == 0
    return model, data, table


@pytest.mark.parametrize("setting, value", [
    ("alpha", 0.5), ("hidden", [5]), ("lr", 0.5), ("test_size", 0.3), ("seed", 1),
    ("no_standardize", True)])
def test_edited_train_settings_fail_and_are_never_resumed(tmp_path, setting, value):
    """The CLI's saved settings are what --resume restores and --json reports: an edited
    one gave PASS, and a resume reported it while training with the model's (D5)."""
    from gpumlp.cli import main

    model, data, _ = _cli_run(tmp_path)
    validate = ["validate", "--data", str(data), "--backends", "numpy", "--dtypes", "float64"]
    assert main([*validate, "--model", str(model)]) == 0
    forged = _rewrite(model, tmp_path / "t.npz",
                      edit_metadata=lambda m: m["extra"]["settings"].update({setting: value}))
    cert = certify(forged, *_cli_split(model, data), backends=["numpy"], dtypes=("float64",))
    text = format_certificate(cert)
    assert cert.outcome == "FAIL" and "FAIL the saved train settings" in text, text
    assert f"{setting} {value!r}" in text
    assert main([*validate, "--model", str(forged)]) == 1
    report = tmp_path / "t2.json"
    assert main(["train", "--resume", str(forged), "--epochs", "2", "--out",
                 str(tmp_path / "t2.npz"), "--json", str(report), "--quiet",
                 "--device", "cpu"]) != 0
    assert not report.exists() and not (tmp_path / "t2.npz").exists()


def _cli_split(model, data):
    """The training split `gpumlp validate` redoes for a CLI model."""
    from gpumlp.splitting import train_test_split

    extra = read_metadata(model)["extra"]
    table = np.loadtxt(data, delimiter=",", skiprows=1)
    X_train, _, y_train, _ = train_test_split(table[:, :-1], table[:, -1], extra["test_size"],
                                              extra["split_seed"])
    return X_train, y_train


def _cli_whole(data):
    """The data as `gpumlp train` read it, before its split (its digest is in the file)."""
    table = np.loadtxt(data, delimiter=",", skiprows=1)
    return table[:, :-1], table[:, -1]


def test_an_honest_resume_still_passes_its_settings_check(tmp_path):
    from gpumlp.cli import main

    model, data, _ = _cli_run(tmp_path, solver="adam")
    resumed = tmp_path / "r.npz"
    assert main(["train", "--resume", str(model), "--epochs", "2", "--out", str(resumed),
                 "--quiet", "--device", "cpu"]) == 0
    cert = certify(resumed, *_cli_split(model, data), backends=["numpy"], dtypes=("float64",),
                   parents=(model,), whole_data=_cli_whole(data))
    assert cert.outcome == "PASS", format_certificate(cert)
    assert "ok   the saved train settings" in format_certificate(cert)


def test_a_frames_column_names_are_bound(tmp_path, data):
    """feature_names_in (a frame's columns, by which predict orders a frame and the CLI a
    CSV) edited gave PASS (D7); and they must be the feature_names where both are kept."""
    pd = pytest.importorskip("pandas")
    X, y = data
    frame = pd.DataFrame(X, columns=["b", "a", "c", "d"])
    model = StandardizedRegressor(MLPRegressor((4,), max_iter=5, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(frame, y)
    path = _saved(tmp_path, model)
    assert certify(path, frame, y, backends=["numpy"]).outcome == "PASS"
    forged = _rewrite(path, tmp_path / "forged.npz",
                      edit_metadata=lambda m: m.update(feature_names_in=["a", "b", "c", "d"]))
    cert = certify(forged, frame, y, backends=["numpy"])
    assert cert.outcome == "FAIL"
    assert "FAIL feature_names_in are the data's header" in format_certificate(cert)
    # feature_names that contradict the frame's columns: a CSV would be read in the other
    # order. save refuses them; in a file, the contradiction alone fails, header or not.
    with pytest.raises(ValueError, match="not the columns the model was fit on"):
        save(model, tmp_path / "named.npz", feature_names=["a", "b", "c", "d"])
    assert not (tmp_path / "named.npz").exists()
    named = _rewrite(path, tmp_path / "named.npz",
                     edit_metadata=lambda m: m.update(feature_names=["a", "b", "c", "d"]))
    cert = certify(named, X, y, backends=["numpy"])
    assert cert.outcome == "FAIL"
    assert "FAIL feature_names (read from a CSV) are feature_names_in" in \
        format_certificate(cert)


@pytest.mark.parametrize("fit_layout, certify_layout", [
    ("frame", "C"), ("F", "C"), ("C", "F"), ("C", "frame")])
def test_an_honest_fit_certifies_whatever_the_memory_order(tmp_path, data, fit_layout,
                                                             certify_layout):
    """The scalers' column means depend, in the last bit, on the memory order NumPy sums
    in: an honest fit on a frame or a Fortran array failed with the C-ordered numbers (D8)."""
    pd = pytest.importorskip("pandas")
    X, y = data
    # The premise: these numbers' means differ in the last bit between the two orders.
    assert not np.array_equal(X.mean(0), np.asfortranarray(X).mean(0))

    def layout(kind):
        return {"C": np.ascontiguousarray(X), "F": np.asfortranarray(X),
                "frame": pd.DataFrame(X)}[kind]

    model = _fit((layout(fit_layout), y), max_iter=3)
    path = _saved(tmp_path, model)
    cert = certify(path, layout(certify_layout), y, backends=["numpy"])
    assert cert.outcome == "PASS", format_certificate(cert)
    # A scaler changed by one ulp still fails.
    bad = _rewrite(path, tmp_path / "bad.npz",
                   edit_arrays={"x_mean": lambda a: np.nextafter(a, np.inf)})
    assert certify(bad, layout(certify_layout), y, backends=["numpy"]).outcome == "FAIL"


def test_validate_on_an_npy_of_the_same_numbers_skips_the_names(tmp_path, capsys):
    """An .npy has no header: its made-up names x0, x1, ... failed an honest fit (D9)."""
    from gpumlp.cli import main

    model, data, table = _cli_run(tmp_path, solver="sgd")
    npy = tmp_path / "f.npy"
    np.save(npy, table)
    capsys.readouterr()
    assert main(["validate", "--model", str(model), "--data", str(npy), "--backends", "numpy",
                 "--dtypes", "float64"]) == 0
    out = capsys.readouterr().out
    assert "note: feature_names were not checked: the data given has no header" in out
    assert "feature_names are the data's header" not in out
    # A CSV's header is still compared.
    swapped = _rewrite(model, tmp_path / "swapped.npz",
                       edit_metadata=lambda m: m.update(feature_names=["b", "a", "c"]))
    assert main(["validate", "--model", str(swapped), "--data", str(data), "--backends",
                 "numpy", "--dtypes", "float64"]) == 1


def test_every_resume_setting_is_bound_and_old_defaults_are_honoured():
    """Each setting --resume restores is bound to the model, its split record or the data's
    digest; a file from before issue 21 (sgd's --lr left out meant 0.1) is no forgery."""
    from gpumlp._settings import (
        SETTING_OTHER,
        SETTING_PARAMS,
        SETTING_SPLIT,
        settings_disagreements,
    )
    from gpumlp.cli import _RESUME_SETTINGS

    assert set(_RESUME_SETTINGS) == set(SETTING_PARAMS) | set(SETTING_SPLIT) | set(SETTING_OTHER)
    net = MLPRegressor((3,), solver="sgd", learning_rate_init=0.1, random_state=0)
    settings = {"solver": "sgd", "lr": None, "hidden": [3], "seed": 0}
    assert settings_disagreements(settings, net, {}) == []
    assert settings_disagreements(dict(settings, solver="gd"), net.set_params(solver="gd"),
                                  {}) == ["lr 'auto', the model's learning_rate_init 0.1"]


# ----------------------------------------------- adversarial round 5: D6, D7, D8
def test_a_randomstate_fit_certifies_and_a_seed_it_did_not_draw_fails(tmp_path, data):
    """fit draws its seed from a RandomState, which the file keeps after that draw: an honest
    fit with random_state=RandomState(3) failed "the seed is the model's random_state" (D8)."""
    X, y = data
    model = _fit(data, random_state=np.random.RandomState(3), max_iter=4)
    path = _saved(tmp_path, model)
    cert = certify(path, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    assert any("drawn 1 output(s) before its saved state" in c.detail for c in cert.checks)
    # A second fit of the same model draws a second seed, and is traced to it too.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    again = _saved(tmp_path, model, "again.npz")
    assert certify(again, X, y, backends=["numpy"], dtypes=("float64",)).outcome == "PASS"
    # An honest fit from another seed, claimed for a RandomState it was not drawn from.
    other = _fit(data, random_state=12345, max_iter=4)
    claimed = np.random.RandomState(3)
    claimed.randint(np.iinfo(np.int32).max)
    forged = _rewrite(_saved(tmp_path, other, "other.npz"), tmp_path / "forged.npz",
                      edit_metadata=lambda m: [m["params"].update(
                          random_state=_plain("random_state", claimed)),
                          m["fit_record"]["params"].pop("random_state")])
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL"
    assert "FAIL the seed is the draw of the model's random_state (a RandomState)" in \
        format_certificate(cert)
    # Set after the fit (for a later one), the file's RandomState is named, not judged.
    other.regressor_.random_state = claimed
    later = certify(_saved(tmp_path, other, "later.npz"), X, y, backends=["numpy"],
                    dtypes=("float64",))
    assert later.outcome == "PASS", format_certificate(later)
    assert "random_state" in next(n for n in later.notes if "differ from those" in n)



@pytest.mark.parametrize("edit, field", [
    ({"edit_arrays": {"state_first_0": lambda a: a * 100}}, "training state.first.0"),
    ({"edit_arrays": {"state_second_0": lambda a: a * 100}}, "training state.second.0"),
    ({"edit_metadata": lambda m: m["training"]["state"]["fields"]["t"].update(value=2)},
     "training state.t"),
    ({"edit_metadata": lambda m: m["training"]["history"].update(samples_seen=50)},
     "training history samples_seen 50"),
    ({"edit_metadata": lambda m: m["training"]["history"].update(no_improvement_count=7)},
     "training history no_improvement_count 7"),
    ({"edit_metadata": lambda m: m["training"]["rng"]["numpy_generator"]["state"].update(
        state=12345)}, "training rng"),
    ({"edit_metadata": lambda m: m["training"]["history"].update(validation_losses=[
        2 * v for v in m["training"]["history"]["validation_losses"]])},
     "training history validation_losses"),
    ({"edit_metadata": lambda m: m["training"]["split"]["numpy_generator"]["state"].update(
        state=1)}, "training split"),
    ({"edit_arrays": {"state_last_coef_0": lambda a: np.nextafter(a, np.inf)}},
     "training last_params"),
], ids=["first-moment", "second-moment", "adam-t", "samples-seen", "no-improvement",
        "batch-order-rng", "validation-losses", "split", "last-params"])
def test_a_tampered_training_state_fails_naming_the_field(tmp_path, data, edit, field):
    """What partial_fit after loading and train --resume continue from was not bound: Adam's
    moments x100, its step t, samples_seen (t_), the batch-order generator, the validation
    losses, all PASSed, and the continuation then differed from the honest one (D7)."""
    X, y = data
    model = _fit(data, solver="adam", batch_size=32, early_stopping=True, max_iter=6)
    path = _saved(tmp_path, model)
    cert = certify(path, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    forged = _rewrite(path, tmp_path / "forged.npz", **edit)
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    text = format_certificate(cert)
    assert cert.outcome == "FAIL", text
    assert "FAIL the training state (what partial_fit and --resume continue from)" in text
    assert field in text


def test_early_stoppings_last_weights_dropped_from_a_file_fail(tmp_path, data):
    """A file whose weights are early stopping's best must keep the last ones,
    which a continuation goes on from: without them --resume went on from the
    best, and the certificate said PASS (adversarial round 8, #73)."""
    X, y = data
    model = _fit(data, scaled=False, solver="sgd", learning_rate_init=0.5, batch_size=32,
                 early_stopping=True, n_iter_no_change=100, max_iter=12)
    assert model.n_iter_ > np.argmax(model.validation_scores_) + 1   # best is not last
    path = _saved(tmp_path, model)
    assert certify(path, X, y, backends=["numpy"], dtypes=("float64",)).outcome == "PASS"

    def no_last(metadata):
        metadata["training"]["last_params"] = False

    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=no_last, drop="state_last")
    cert = certify(forged, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL" and "training last_params (missing" in \
        format_certificate(cert)


@pytest.mark.parametrize("params", [
    dict(solver="sgd", batch_size=32), dict(solver="gd", learning_rate_init="auto"),
    dict(solver="gd", learning_rate_init="auto", early_stopping=True), dict(solver="lbfgs")])
def test_the_training_state_of_other_solvers_is_bound(tmp_path, data, params):
    """Momenta, the "auto" search's state (and, with early stopping, the search's best point
    as the last weights), L-BFGS's generator and history: honest passes, a change fails."""
    X, y = data
    model = _fit(data, max_iter=5, **params)
    path = _saved(tmp_path, model)
    cert = certify(path, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=lambda m: m["training"][
        "history"].update(samples_seen=m["training"]["history"]["samples_seen"] + 1))
    assert "FAIL the training state" in format_certificate(
        certify(forged, X, y, backends=["numpy"], dtypes=("float64",)))
    # Without a training state there is nothing to bind, and the certificate says so.
    bare = _saved(tmp_path, model, "bare.npz", training_state=False)
    cert = certify(bare, X, y, backends=["numpy"], dtypes=("float64",))
    # (early stopping's validation scores are kept with the state: without it, CANNOT)
    expected = "CANNOT" if params.get("early_stopping") else "PASS"
    assert cert.outcome == expected and any("no training state" in n for n in cert.notes)


@pytest.mark.parametrize("claim", ["zeros", "other data"])
def test_a_false_data_digest_fails_and_is_needed(tmp_path, claim):
    """extra.data_sha256 (by which train --resume accepts data) set to zeros, or to another
    CSV's digest, PASSed; then --resume took the other data and refused the real (D6)."""
    from gpumlp.cli import main

    model, data, table = _cli_run(tmp_path)
    other = tmp_path / "other.csv"
    np.savetxt(other, table[::-1], delimiter=",", header="a,b,c,y", comments="")
    from gpumlp._settings import data_digest

    digest = "0" * 64 if claim == "zeros" else data_digest(table[::-1, :-1], table[::-1, -1])
    forged = _rewrite(model, tmp_path / "forged.npz",
                      edit_metadata=lambda m: m["extra"].update(data_sha256=digest))
    validate = ["validate", "--data", str(data), "--backends", "numpy", "--dtypes", "float64"]
    assert main([*validate, "--model", str(model)]) == 0
    assert main([*validate, "--model", str(forged)]) == 1
    cert = certify(forged, *_cli_split(model, data), backends=["numpy"], dtypes=("float64",),
                   whole_data=_cli_whole(data))
    assert cert.outcome == "FAIL"
    assert "FAIL extra.data_sha256 (what train --resume checks the data against)" in \
        format_certificate(cert)
    # Without the data as train read it, the claim cannot be checked: never a PASS.
    cert = certify(model, *_cli_split(model, data), backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "CANNOT" and any("data_sha256" in m for m in cert.missing)


def test_a_cli_run_with_a_tampered_training_state_fails_and_so_does_its_chain(tmp_path):
    """A CLI adam run's moments x100 (and its resume, validated with --parent) PASSed; the
    chain's model then differed from the honest resume's (D7)."""
    from gpumlp.cli import main

    model, data, _ = _cli_run(tmp_path, solver="adam")
    forged = _rewrite(model, tmp_path / "forged.npz",
                      edit_arrays={"state_first_0": lambda a: a * 100})
    validate = ["validate", "--data", str(data), "--backends", "numpy", "--dtypes", "float64"]
    assert main([*validate, "--model", str(forged)]) == 1
    child = tmp_path / "child.npz"
    assert main(["train", "--resume", str(forged), "--epochs", "2", "--out", str(child),
                 "--quiet", "--device", "cpu"]) == 0
    assert main([*validate, "--model", str(child), "--parent", str(forged)]) == 1


def test_a_generator_drawn_from_after_the_fit_cannot_be_certified_never_fails(tmp_path, data):
    """A random_state Generator is the batch-order generator: drawn from between fit and save,
    the file's generator is not the fit's last, though nothing was forged (CANNOT, named)."""
    X, y = data
    # A StandardizedRegressor trains a copy of its template (issue 20, S2): drawing
    # from the template's generator after its fit changes nothing that was saved.
    template_generator = np.random.default_rng(3)
    scaled = _fit(data, random_state=template_generator, solver="adam", batch_size=32,
                  max_iter=4)
    template_generator.random(3)
    assert certify(_saved(tmp_path, scaled, "scaled.npz"), X, y, backends=["numpy"],
                   dtypes=("float64",)).outcome == "PASS"
    generator = np.random.default_rng(3)
    model = _fit(data, scaled=False, random_state=generator, solver="adam", batch_size=32,
                 max_iter=4)
    assert certify(_saved(tmp_path, model), X, y, backends=["numpy"],
                   dtypes=("float64",)).outcome == "PASS"
    generator.random(3)
    cert = certify(_saved(tmp_path, model, "drawn.npz"), X, y, backends=["numpy"],
                   dtypes=("float64",))
    assert cert.outcome == "CANNOT" and any("batch-order generator" in m for m in cert.missing)
    # The training generator edited alone (no longer the random_state's) is a forgery.
    forged = _rewrite(tmp_path / "model.npz", tmp_path / "forged.npz", edit_metadata=lambda m: m[
        "training"]["rng"]["numpy_generator"]["state"].update(state=12345))
    assert "FAIL the training state" in format_certificate(
        certify(forged, X, y, backends=["numpy"], dtypes=("float64",)))


def test_an_early_stopping_resume_certifies_against_its_parent(tmp_path):
    """A resumed early-stopping run draws its parent's validation rows again (from the split
    generator the file keeps), not from its batch-order generator: the replay drew them from
    the latter and failed the honest link by 1e6 tolerances (found while fixing D7)."""
    from gpumlp.cli import main

    model, data, _ = _cli_run(tmp_path, solver="adam")
    es, child = tmp_path / "es.npz", tmp_path / "es2.npz"
    assert main(["train", "--data", str(data), "--hidden", "3", "--solver", "adam",
                 "--epochs", "4", "--early-stopping", "--out", str(es), "--quiet",
                 "--device", "cpu"]) == 0
    assert main(["train", "--resume", str(es), "--epochs", "2", "--out", str(child),
                 "--quiet", "--device", "cpu"]) == 0
    validate = ["validate", "--data", str(data), "--backends", "numpy", "--dtypes", "float64"]
    assert main([*validate, "--model", str(child), "--parent", str(es)]) == 0
    forged = _rewrite(child, tmp_path / "forged.npz", edit_metadata=lambda m: m["training"][
        "split"]["numpy_generator"]["state"].update(state=1))
    assert main([*validate, "--model", str(forged), "--parent", str(es)]) == 1


@pytest.mark.parametrize("bit_generator", [np.random.MT19937, np.random.Philox])
def test_a_generator_random_state_certifies_and_its_state_is_bound(tmp_path, data,
                                                                   bit_generator):
    """MT19937's and Philox's states hold arrays, which ``==`` compared elementwise: an
    honest fit raised a raw ValueError (adversarial round 5, attempts 307, 308)."""
    model = _fit(data, scaled=False, max_iter=3, solver="adam", batch_size=40,
                 early_stopping=True,   # the generator draws the split too
                 random_state=np.random.Generator(bit_generator(3)))
    path = _saved(tmp_path, model)
    kwargs = dict(backends=["numpy"], dtypes=("float64",))
    cert = certify(path, *data, **kwargs)
    assert cert.outcome == "PASS", format_certificate(cert)
    assert "ok   the generator is where that draw left it" in format_certificate(cert)

    def shift_key(metadata):   # one bit of the generator's key at checkpoint 0
        state = metadata["fit_record"]["checkpoints"][0]["rng"]["numpy_generator"]["state"]
        state["key"][0] ^= 1

    forged = _rewrite(path, tmp_path / "forged.npz", edit_metadata=shift_key)
    cert = certify(forged, *data, **kwargs)
    assert cert.outcome == "FAIL"
    assert "FAIL the generator is where that draw left it" in format_certificate(cert)


def _chain(tmp_path, batches, how):
    """Models saved after each call of an honest chain on ``batches``: partial_fit
    (sgd) or warm-started fits (adam), each on its own batch."""
    net = MLPRegressor((5,), solver="sgd" if how == "partial_fit" else "adam",
                       max_iter=3, batch_size=20, random_state=0, learning_rate_init=0.05,
                       warm_start=how == "warm_start")
    paths = []
    for i, (X, y) in enumerate(batches):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net.partial_fit(X, y) if how == "partial_fit" else net.fit(X, y)
        paths.append(_saved(tmp_path, net, f"link{i}.npz"))
    return paths


@pytest.mark.parametrize("how, n_links", [("partial_fit", 3), ("warm_start", 2)])
def test_a_parent_fit_on_other_data_cannot_be_certified_with_its_childs(tmp_path, data,
                                                                        how, n_links):
    """A parent certified with its child's data failed, as if forged (adversarial round 5,
    attempts 360, 361, D9): other data is no evidence against it, and no PASS either."""
    X, y = data
    batches = [(X[i::n_links], y[i::n_links]) for i in range(n_links)]
    paths = _chain(tmp_path, batches, how)
    kwargs = dict(backends=["numpy"], dtypes=("float64",))
    cert = certify(paths[-1], *batches[-1], parents=paths[:-1][::-1], **kwargs)
    text = format_certificate(cert)
    assert cert.outcome == "CANNOT" and cert.exit_code == 2, text
    assert "FAIL" not in text
    assert all(r.passed for r in cert.replays) and cert.replays   # the child's own link
    link = cert
    for _ in range(n_links - 1):
        (link,) = link.parents
        assert link.outcome == "CANNOT"
        assert any("was fit on other data than the data given" in m and
                   "certify it separately, with its own data" in m for m in link.missing)
    # Each link checks out with its own data; the first, with no parent, passes.
    assert certify(paths[0], *batches[0], **kwargs).outcome == "PASS"
    for i in range(1, n_links):
        alone = certify(paths[i], *batches[i], parents=[paths[i - 1]], **kwargs)
        assert alone.outcome == "CANNOT" and all(c.ok for c in alone.checks)
    # A tampered link, with the right data, still fails: the child, or the first parent.
    def nudge(a):
        return np.where(np.arange(a.size) == 0, a + 1e-3, a)

    bad = _rewrite(paths[-1], tmp_path / "bad.npz", edit_arrays={"ckpt_1": nudge})
    cert = certify(bad, *batches[-1], parents=paths[:-1][::-1], **kwargs)
    assert cert.outcome == "FAIL", format_certificate(cert)
    bad = _rewrite(paths[0], tmp_path / "bad0.npz", edit_arrays={"ckpt_1": nudge})
    assert certify(bad, *batches[0], **kwargs).outcome == "FAIL"


def test_validate_exits_2_for_a_parent_fit_on_other_data(tmp_path, data, capsys):
    from gpumlp.cli import main

    X, y = data
    batches = [(X[:60], y[:60]), (X[60:], y[60:])]
    paths = _chain(tmp_path, batches, "partial_fit")
    table = tmp_path / "batch1.npy"
    np.save(table, np.column_stack(batches[1]))
    assert main(["validate", "--model", str(paths[1]), "--data", str(table), "--parent",
                 str(paths[0]), "--backends", "numpy", "--dtypes", "float64"]) == 2
    out = capsys.readouterr().out
    assert f"the parent {paths[0]} was fit on other data" in out
    assert "\nFAIL" not in out


@pytest.mark.parametrize("case", ["X float32", "y int64", "scaled X float32",
                                  "eval_set float32"])
def test_the_same_numbers_in_another_dtype_are_the_same_data(tmp_path, data, case):
    """A fit on float32 X (an int64 y), certified with the same numbers as float64, failed
    as "not the data the model was fit on" (adversarial round 5, attempts 364, 365, 368,
    D10): the numbers are tried in the dtypes that hold them exactly."""
    X, y = data
    X32, y_int = X.astype(np.float32), np.round(3 * y).astype(np.int64)
    fit_X, fit_y, eval_set = {"X float32": (X32, y, None), "y int64": (X, y_int, None),
                              "scaled X float32": (X32, y, None),
                              "eval_set float32": (X[:80], y[:80], (X32[80:], y[80:]))}[case]
    net = MLPRegressor((5,), max_iter=3, random_state=0, learning_rate_init=0.05,
                       dtype="float64")
    model = StandardizedRegressor(net) if case.startswith("scaled") else net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(fit_X, fit_y, eval_set=eval_set)
    path = _saved(tmp_path, model)
    wide = [np.asarray(a, dtype=np.float64) for a in (fit_X, fit_y)]
    wide_eval = None if eval_set is None else tuple(np.asarray(a, np.float64) for a in eval_set)
    kwargs = dict(backends=["numpy"], dtypes=("float64",), eval_set=wide_eval)
    cert = certify(path, *wide, **kwargs)
    assert cert.outcome == "PASS", format_certificate(cert)
    assert any("in other dtypes" in n and "float64, fit as" in n for n in cert.notes)
    # Only an exact cast counts: numbers that merely round to the fit's are other data.
    if case != "y int64":
        nudged = [a.copy() for a in (wide if eval_set is None else wide_eval)]
        nudged[0][7, 1] += np.spacing(nudged[0][7, 1])   # no float32 holds it
        data_given = (nudged if eval_set is None else wide)
        kwargs["eval_set"] = wide_eval if eval_set is None else tuple(nudged)
        cert = certify(path, *data_given, **kwargs)
        assert cert.outcome == "FAIL"
        assert "not the data the model was fit on" in format_certificate(cert)
    else:
        cert = certify(path, wide[0], wide[1] + 0.5, **kwargs)
        assert cert.outcome == "FAIL"


def test_a_warm_start_without_the_parents_eval_set_is_no_fail(tmp_path):
    # Before: FAIL "training history validation_losses (not
    # validation_loss_curve_)" for this honest chain (adversarial round 6):
    # the history keeps the parent's validation losses, the child's curve is None.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ [1.0, -1.0, 0.5]
    model = MLPRegressor((4,), solver="adam", max_iter=5, random_state=0, device="cpu",
                         dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, eval_set=(X[:20], y[:20]))
        save(model, tmp_path / "parent.npz")
        model.set_params(warm_start=True)
        model.fit(X, y)
    save(model, tmp_path / "child.npz")
    cert = certify(tmp_path / "child.npz", X, y, parents=(tmp_path / "parent.npz",),
                   backends=["numpy"], dtypes=("float64",))
    assert cert.outcome != "FAIL", format_certificate(cert)
    assert all(check.ok for check in cert.checks)
    assert any("validation losses are those of an earlier call" in n for n in cert.notes)


def test_a_string_for_backends_or_dtypes_is_refused(tmp_path):
    # Before: certify(backends="numpy") walked the string's letters (round 6).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X.sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        save(MLPRegressor((3,), max_iter=2, device="cpu", random_state=0).fit(X, y),
             tmp_path / "m.npz")
    for kwargs in (dict(backends="numpy"), dict(dtypes="float64")):
        with pytest.raises(TypeError, match="takes a list of names"):
            certify(tmp_path / "m.npz", X, y, **kwargs)



def test_a_fingerprint_made_before_y_1d_was_bound_says_so(tmp_path, data):
    """A file whose data fingerprint does not cover y's shape (written before it
    did) still certifies, with a note that y_1d is not certified."""
    from gpumlp._fitrecord import fingerprint

    X, y = data
    path = _saved(tmp_path, _fit(data, scaled=False, solver="sgd", max_iter=4))

    def older(metadata):
        metadata["fit_record"]["data_sha256"] = fingerprint(
            X, y, like=metadata["fit_record"]["data_sha256"])

    legacy = _rewrite(path, tmp_path / "legacy.npz", edit_metadata=older)
    cert = certify(legacy, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    assert any("y_1d) is not certified" in n for n in cert.notes), cert.notes


@pytest.mark.parametrize("field", ["samples_seen", "no_improvement_count"])
def test_a_middle_checkpoints_counters_are_checked(tmp_path, data, field):
    """A middle checkpoint's samples_seen, raised by 2000, passed (adversarial round
    16): each segment's end samples_seen is compared with the replay's, and the
    no-improvement count with the stopping rule's re-run."""
    X, y = data
    path = _saved(tmp_path, _fit(data, scaled=False, solver="adam", max_iter=40,
                                 batch_size=32))

    def edit(metadata):
        metadata["fit_record"]["checkpoints"][2]["history"][field] += 1

    cert = certify(_rewrite(path, tmp_path / "forged.npz", edit_metadata=edit), X, y,
                   backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "FAIL", format_certificate(cert)


def test_a_parents_names_are_checked_against_the_header_too(tmp_path, data):
    """A parent with swapped feature names, certified in turn, passed where certified
    alone it failed: the header was not handed down the chain (adversarial round 17)."""
    X, y = data
    names = ["a", "b", "c", "d"]
    model = MLPRegressor((4,), solver="sgd", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(X, y)
        parent = _saved(tmp_path, model, "parent.npz", feature_names=names, target_names=["t"])
        model.partial_fit(X, y)
    child = _saved(tmp_path, model, "child.npz", feature_names=names, target_names=["t"])
    kwargs = dict(backends=["numpy"], dtypes=("float64",), feature_names=names,
                  target_names=["t"])
    assert certify(child, X, y, parents=(parent,), **kwargs).outcome == "PASS"
    swapped = _rewrite(parent, tmp_path / "swapped.npz",
                       edit_metadata=lambda m: m.update(feature_names=["b", "a", "c", "d"]))
    cert = certify(child, X, y, parents=(swapped,), **kwargs)
    assert cert.outcome == "FAIL" and cert.parents[0].outcome == "FAIL", format_certificate(cert)


def test_a_standardized_models_template_is_named_not_certified(tmp_path, data):
    """An edited template (what a refit of the loaded model trains) passed with no
    word of it (adversarial round 18): it is no number of the fit, so a note."""
    X, y = data
    path = _saved(tmp_path, _fit(data, scaled=True, solver="sgd", max_iter=4))
    edited = _rewrite(path, tmp_path / "edited.npz",
                      edit_metadata=lambda m: m["template"].update(hidden_layer_sizes=[50]))
    cert = certify(edited, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    assert any("StandardizedRegressor's template" in n for n in cert.notes), cert.notes


@pytest.mark.parametrize("name", ["loss_curve", "learning_rates", "validation_scores"])
def test_a_childs_inherited_epochs_are_the_parents(tmp_path, data, name):
    """A warm-start child keeps its parent's epochs at the head of its curves: an
    edited inherited entry PASSed with the parent given (adversarial round 18)."""
    X, y = data
    model = MLPRegressor((4,), solver="sgd", max_iter=4, random_state=3, batch_size=32,
                         early_stopping=name == "validation_scores", n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        parent = _saved(tmp_path, model, "parent.npz")
        model.set_params(warm_start=True, max_iter=3)
        model.fit(X, y)
    child = _saved(tmp_path, model, "child.npz")
    kwargs = dict(backends=["numpy"], dtypes=("float64",), parents=(parent,))
    assert certify(child, X, y, **kwargs).outcome == "PASS"

    def edit(metadata):
        key = name if name in metadata else None
        if key is None:     # validation scores live in the training state's history
            metadata["training"]["history"]["validation_scores"][0] *= 0.5
        else:
            metadata[key][0] *= 0.5

    cert = certify(_rewrite(child, tmp_path / "edited.npz", edit_metadata=edit), X, y,
                   **kwargs)
    assert cert.outcome == "FAIL", format_certificate(cert)
