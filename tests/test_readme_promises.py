"""Every sentence of README.md (and docs/*.md) that promises behaviour, quoted, with its check.

Issue 20, item 5. Each promise is one case: the sentence as the README says
it (whitespace aside) and a small, direct check. One test asserts that each
quoted sentence is still in the README, so the two cannot drift apart: a
sentence reworded there must be reworded here, and its check looked at
again. Promises that other modules test at length get a small direct check
here, not a copy of the big test.

A promise that is false today is an ``xfail(strict=True)`` naming the
developer who owns the fix; when the fix lands the case passes, the strict
mark fails, and the mark comes off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp import MLPRegressor, io
from gpumlp.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def _documentation():
    """The README and the reference pages it links to (docs/*.md), as one text."""
    pages = [README, *sorted((README.parent / "docs").glob("*.md"))]
    return "\n".join(page.read_text(encoding="utf-8") for page in pages)

PROMISES = []


def promise(sentence, *, false_today=None):
    """Register the decorated check as the test of ``sentence``.

    ``false_today``: the owner and the defect, while the promise is false.
    """
    def register(check):
        PROMISES.append((sentence, check, false_today))
        return check
    return register


def _flat(text):
    return re.sub(r"\s+", " ", text).strip()


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _data(n=60, f=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    return X, np.sin(X[:, 0]) + 0.5 * X[:, 1]


def _cli(capsys, *argv):
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out = capsys.readouterr()
    return status, out.out, out.err


def _csv(path, X, y, names=None, target="target", prefix=""):
    names = names or [f"x{j}" for j in range(X.shape[1])]
    lines = [",".join([*names, target])] + [
        ",".join(repr(float(v)) for v in row) for row in np.column_stack([X, y])]
    path.write_text(prefix + "\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


TRAIN = ("train", "--device", "cpu", "--quiet", "--hidden", "4", "--epochs", "3")


# ----------------------------------------------------------------- the network
@promise("The sigmoid is computed as `tanh(z/2)/2 + 1/2`, which equals `1/(1+e^(−z))` and "
         "cannot overflow, so float32 stays finite for any `z`.")
def sigmoid_never_overflows(env):
    from gpumlp.activations import get_activation

    z = np.array([-1e30, -100.0, -1.0, 0.0, 1.0, 100.0, 1e30], dtype=np.float32)
    with np.errstate(all="raise"):
        a = get_activation("sigmoid").forward(z)
    assert a.dtype == np.float32 and np.all(np.isfinite(a))
    # The tanh form's error is absolute: half of float32's eps around 1/2.
    np.testing.assert_allclose(a[1:-1], 1 / (1 + np.exp(-z[1:-1].astype(np.float64))),
                               rtol=0, atol=2.0 ** -24)


@promise("an L2 penalty `alpha` (adding `(alpha / n) Σ ‖W‖²` to the mean squared error")
def alpha_adds_the_stated_penalty(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=1, alpha=0.5, learning_rate_init=1e-12,
                                device="cpu", random_state=0).fit, X, y)
    fresh = _quiet(MLPRegressor((3,), max_iter=1, alpha=0.5, learning_rate_init=1e-12,
                                device="cpu", random_state=0).fit, X, y)
    mse = np.mean((fresh.predict(X) - y) ** 2)   # 1e-12 steps: the weights barely move
    penalty = 0.5 / X.shape[0] * sum(np.sum(W ** 2) for W in fresh.coefs_)
    assert model.loss_curve_[0] == pytest.approx(mse + penalty, rel=1e-9)


@promise("for `k` outputs, whose mean runs over `n k` entries, `(alpha / (n k)) Σ ‖W‖²`")
def alpha_penalty_for_k_outputs(env):
    """The README said (alpha / n) for any k (adversarial round 13)."""
    X, y = _data()
    Y = np.c_[y, -y, 2 * y]
    n, k = Y.shape
    model = _quiet(MLPRegressor((3,), max_iter=1, alpha=0.5, learning_rate_init=1e-12,
                                device="cpu", random_state=0).fit, X, Y)
    mse = np.mean((model.predict(X) - Y) ** 2)
    penalty = 0.5 / (n * k) * sum(np.sum(W ** 2) for W in model.coefs_)
    assert model.loss_curve_[0] == pytest.approx(mse + penalty, rel=1e-9)


# ----------------------------------------------------------------- the step size
@promise("every rate is rounded to four significant digits")
def auto_rates_have_four_digits(env):
    X, y = _data()
    model = _quiet(MLPRegressor((5,), max_iter=20, device="cpu", random_state=0).fit, X, y)
    assert model.learning_rates_
    for rate in model.learning_rates_:
        assert float(f"{rate:.4g}") == rate


@promise("A fit returns the best point it measured")
def auto_returns_its_best_point(env):
    X, y = _data()
    model = _quiet(MLPRegressor((16,), max_iter=60, tol=0, device="cpu",
                                random_state=0).fit, X, y)
    measured = np.mean((model.predict(X) - y) ** 2)
    assert measured <= min(model.loss_curve_) * (1 + 1e-9)


@promise("`k` epochs, then `partial_fit` or `gpumlp train --resume` for `m` more, give the "
         "`k + m` of one call")
def auto_k_then_m_is_k_plus_m(env):
    X, y = _data()
    common = dict(hidden_layer_sizes=(5,), device="cpu", random_state=0, tol=0,
                  n_iter_no_change=100)
    model = _quiet(MLPRegressor(max_iter=4, **common).fit, X, y)
    for _ in range(3):
        _quiet(model.partial_fit, X, y)
    whole = _quiet(MLPRegressor(max_iter=7, **common).fit, X, y)
    np.testing.assert_array_equal(model.predict(X), whole.predict(X))


@promise('For `"sgd"` and `"adam"`, `"auto"` is a fixed 0.01.')
def auto_is_a_fixed_rate_for_sgd_and_adam(env):
    X, y = _data()
    for solver in ("sgd", "adam"):
        model = _quiet(MLPRegressor((3,), solver=solver, max_iter=2, device="cpu").fit, X, y)
        assert model.learning_rate_ == 0.01


@promise("A fixed rate that makes the loss rise is reported (`LossIncreasedWarning`), "
         'suggesting `"auto"`.')
def a_rising_loss_is_reported(env):
    from gpumlp.training import LossIncreasedWarning

    X, y = _data(400)
    with pytest.warns(LossIncreasedWarning, match="auto"):
        _quiet_except(LossIncreasedWarning, MLPRegressor((100,), learning_rate_init=1.0,
                                                         max_iter=100, device="cpu",
                                                         random_state=0).fit, X, y)


def _quiet_except(category, fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", category)
        return fn(*args)


# ---------------------------------------------------------------------- Python
@promise("y_pred = model.predict(X)                      # in y's units; NumPy in, NumPy out")
def numpy_in_numpy_out(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=2, device="cpu").fit, X, y)
    assert type(model.predict(X)) is np.ndarray
    assert all(type(W) is np.ndarray for W in model.coefs_ + model.intercepts_)


@promise("each `fit` trains a new network with `net`'s parameters (`regressor_`) and never "
         "changes `net`, so two models built on one template are independent.")
def a_template_is_never_trained(env):
    from gpumlp import StandardizedRegressor

    X, y = _data()
    net = MLPRegressor((3,), max_iter=3, device="cpu", random_state=0)
    first = _quiet(StandardizedRegressor(net).fit, X, y)
    before = first.predict(X)
    _quiet(StandardizedRegressor(net).fit, X, -100 * y)
    np.testing.assert_array_equal(first.predict(X), before)
    assert not hasattr(net, "coefs_")


@promise("`model.set_params(regressor__warm_start=True, regressor__max_iter=50).fit(X, y)`")
def a_warm_template_continues(env):
    from gpumlp import StandardizedRegressor

    X, y = _data()
    model = _quiet(StandardizedRegressor(MLPRegressor((3,), max_iter=3, device="cpu",
                                                      random_state=0)).fit, X, y)
    net = model.regressor_
    _quiet(model.set_params(regressor__warm_start=True, regressor__max_iter=50).fit, X, y)
    assert model.regressor_ is net and len(net.loss_curve_) > 3


@promise('`"logistic"` is an alias of `"sigmoid"`')
def logistic_is_sigmoid(env):
    X, y = _data()
    a, b = (_quiet(MLPRegressor((3,), activation=name, max_iter=3, device="cpu",
                                random_state=0).fit, X, y) for name in ("logistic", "sigmoid"))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))


@promise('ignored by `"gd"` and `"lbfgs"`')
def batch_size_is_ignored_by_full_batch_solvers(env):
    X, y = _data()
    for solver in ("gd", "lbfgs"):
        a, b = (_quiet(MLPRegressor((3,), solver=solver, batch_size=size, max_iter=3,
                                    device="cpu", random_state=0).fit, X, y)
                for size in ("auto", 7))
        np.testing.assert_array_equal(a.predict(X), b.predict(X))


@promise("Adam and L-BFGS ignore it")
def adam_and_lbfgs_ignore_the_schedule(env):
    X, y = _data()
    for solver in ("adam", "lbfgs"):
        a, b = (_quiet(MLPRegressor((3,), solver=solver, learning_rate=schedule, max_iter=3,
                                    device="cpu", random_state=0).fit, X, y)
                for schedule in ("constant", "invscaling"))
        np.testing.assert_array_equal(a.predict(X), b.predict(X))


@promise("as theirs: reuses the weights and starts a new solver (Adam's moments, the "
         "learning rate); `n_iter_` counts the new call")
def warm_start_counts_the_new_call(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), solver="adam", max_iter=5, tol=0, device="cpu",
                                random_state=0).fit, X, y)
    before = [W.copy() for W in model.coefs_]
    _quiet(model.set_params(warm_start=True, max_iter=2).fit, X, y)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 7
    # it went on from the weights it had: one more epoch of a fresh start is far
    fresh = _quiet(MLPRegressor((3,), solver="adam", max_iter=2, tol=0, device="cpu",
                                random_state=0).fit, X, y)
    assert not np.allclose(fresh.coefs_[0], model.coefs_[0])
    assert not np.array_equal(before[0], model.coefs_[0])


@promise('keeps the solver\'s state, as theirs; unavailable for `"lbfgs"`')
def lbfgs_has_no_partial_fit(env):
    X, y = _data()
    with pytest.raises(AttributeError, match="lbfgs"):
        MLPRegressor(solver="lbfgs", device="cpu").partial_fit(X, y)


@promise("set by any dataframe with string column names; `predict` raises when they differ "
         "or are reordered, and warns when only one side has names")
def feature_names_are_checked(env):
    pd = pytest.importorskip("pandas")
    X, y = _data()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = _quiet(MLPRegressor((3,), max_iter=2, device="cpu").fit, frame, y)
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    for columns in (["c", "b", "a"], ["a", "b", "z"]):
        with pytest.raises(ValueError):
            model.predict(frame.set_axis(columns, axis=1)[columns] if columns[-1] != "z"
                          else frame.set_axis(columns, axis=1))
    with pytest.warns(UserWarning):
        model.predict(X)


@promise('`"identity"`, or `"exp"` for Poisson')
def out_activation(env):
    X, y = _data()
    y = np.abs(y)
    for loss, out in (("squared_error", "identity"), ("poisson", "exp")):
        model = _quiet(MLPRegressor((3,), loss=loss, max_iter=2, device="cpu").fit, X, y)
        assert model.out_activation_ == out


@promise("also filled by `fit(..., eval_set=...)`")
def eval_set_fills_validation_scores(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=4, device="cpu").fit, X, y,
                   eval_set=(X[:10], y[:10]))
    assert len(model.validation_scores_) == 4 and model.best_validation_score_ is not None


@promise("every other parameter of scikit-learn's `MLPRegressor`, with the same meaning")
def parameters_mean_what_they_mean_in_scikit_learn(env):
    X, y = _data()
    _quiet(MLPRegressor((3,), validation_fraction=0.0, max_iter=2, device="cpu").fit, X, y)
    _quiet(MLPRegressor((3,), solver="sgd", learning_rate="invscaling", power_t=1e10,
                        max_iter=2, device="cpu").fit, X, y)


@promise("gpumlp's weights after 30 epochs (float64) equal scikit-learn's to 1e-9 for SGD")
def sgd_matches_scikit_learn(env):
    sk = pytest.importorskip("sklearn.neural_network")
    from gpumlp.initialization import glorot_uniform

    X, y = _data(90, 4)
    coefs, intercepts = glorot_uniform([4, 6, 1], np.random.default_rng(1))

    class Seeded(sk.MLPRegressor):
        def _initialize(self, *args, **kwargs):
            super()._initialize(*args, **kwargs)
            self.coefs_ = [W.copy() for W in coefs]
            self.intercepts_ = [b.copy() for b in intercepts]

    theirs = _quiet(Seeded(activation="logistic", solver="sgd", learning_rate_init=0.02,
                           batch_size=30, shuffle=False, max_iter=30, tol=0, alpha=0.0,
                           random_state=0).fit, X, y)
    ours = MLPRegressor((6,), solver="sgd", learning_rate_init=0.01, batch_size=30,
                        shuffle=False, max_iter=30, tol=0, warm_start=True, device="cpu",
                        dtype="float64", random_state=0)
    ours.coefs_, ours.intercepts_ = [W.copy() for W in coefs], [b.copy() for b in intercepts]
    _quiet(ours.fit, X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)


# ------------------------------------------------------------- devices, backends
@promise('Asking for `"cuda"` without CuPy or a GPU raises `gpumlp.CUDAUnavailableError`, '
         "which says what to install.")
def cuda_without_a_gpu_says_what_to_install(env):
    try:
        import cupy  # noqa: F401

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a CUDA GPU is present here")
    except Exception:
        pass
    with pytest.raises(gpumlp.CUDAUnavailableError, match="pip install"):
        gpumlp.get_device("cuda")


@promise("`load` resets `backend` and `device`, so a model trained on any backend predicts "
         "on any.")
def load_resets_backend_and_device(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=2, device="cpu", backend="numpy").fit, X, y)
    io.save(model, env.tmp / "m.npz")
    loaded = io.load(env.tmp / "m.npz")
    assert loaded.device is None and loaded.backend is None
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@promise("`import gpumlp` never imports CuPy, PyTorch or JAX.")
def import_stays_light(env):
    code = ("import sys, gpumlp; bad = [m for m in ('cupy', 'torch', 'jax', 'sklearn', "
            "'pandas', 'dask') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env.subprocess_env)
    assert result.returncode == 0, result.stdout + result.stderr


# -------------------------------------------------------------------- command line
@promise("Every command has `--help`, and `python -m gpumlp ...` works the same.")
def every_command_has_help(env):
    for command in ("train", "predict", "devices", "validate"):
        status, out, _ = _cli(env.capsys, command, "--help")
        assert status == 0 and "usage:" in out
    result = subprocess.run([sys.executable, "-m", "gpumlp", "devices", "--help"],
                            capture_output=True, text=True, env=env.subprocess_env)
    assert result.returncode == 0 and "usage:" in result.stdout


@promise("An existing file is always a file, even named `sales[2024].csv`.")
def a_file_named_like_a_glob_is_a_file(env):
    X, y = _data()
    path = _csv(env.tmp / "sales[2024].csv", X, y)
    status, out, err = _cli(env.capsys, *TRAIN, "--data", path)
    assert status == 0, err


@promise("`.npy`: a 2-D array whose last column is the target.")
def npy_last_column_is_the_target(env):
    X, y = _data()
    np.save(env.tmp / "d.npy", np.column_stack([X, y]))
    status, out, err = _cli(env.capsys, *TRAIN, "--data", str(env.tmp / "d.npy"))
    assert status == 0 and "3 features" in out, err


@promise("For `predict`, a CSV needs the model's feature columns by name, in any order "
         "(others, such as the target or a text `id`, are not read)")
def predict_reads_features_by_name(env):
    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y, names=["a", "b", "c"])
    model = str(env.tmp / "m.npz")
    assert _cli(env.capsys, *TRAIN, "--data", data, "--out", model)[0] == 0
    lines = ["id,c,target,a,b"] + [f"row{i},{r[2]!r},0,{r[0]!r},{r[1]!r}"
                                     for i, r in enumerate(X.tolist())]
    (env.tmp / "new.csv").write_text("\n".join(lines) + "\n")
    status, _, err = _cli(env.capsys, "predict", "--model", model, "--data",
                          str(env.tmp / "new.csv"), "--out", str(env.tmp / "p.npy"))
    assert status == 0, err
    np.testing.assert_allclose(np.load(env.tmp / "p.npy").ravel(),
                               np.asarray(io.load(model).predict(X)).ravel(), rtol=1e-6)


@promise("A CSV is UTF-8 (a byte-order mark is dropped) with unique column names; an empty "
         "unnamed last column (a trailing comma on every line) is ignored.")
def csv_bom_and_trailing_comma(env):
    X, y = _data()
    _csv(env.tmp / "bom.csv", X, y, prefix="\ufeff")
    text = (env.tmp / "bom.csv").read_text(encoding="utf-8")
    (env.tmp / "comma.csv").write_text(
        "\n".join(line + "," for line in text.lstrip("\ufeff").splitlines()) + "\n")
    for name in ("bom.csv", "comma.csv"):
        status, out, err = _cli(env.capsys, *TRAIN, "--data", str(env.tmp / name))
        assert status == 0 and "3 features" in out and "'target'" in out, err


@promise("`1_000` or `1,5` is not a number.")
def underscores_are_not_numbers(env):
    (env.tmp / "d.csv").write_text("a,b\n1_000,2\n3,4\n5,6\n")
    status, _, err = _cli(env.capsys, *TRAIN, "--data", str(env.tmp / "d.csv"))
    assert status == 2 and "1_000" in err


@promise("the means and scales come from the training split only and are saved with the "
         "model, so `predict` takes raw data and answers in the target's units.")
def predictions_are_in_the_targets_units(env):
    X, y = _data(200)
    data = _csv(env.tmp / "d.csv", X * 1000 + 5, y * 1e4 + 3e5)
    model = str(env.tmp / "m.npz")
    assert _cli(env.capsys, *TRAIN[:-1], "200", "--data", data, "--out", model)[0] == 0
    y_pred = np.asarray(io.load(model).predict(X * 1000 + 5))
    assert abs(np.mean(y_pred) - 3e5) < 0.5e4 and np.std(y_pred) > 1e3


@promise("Numbers are checked as the arguments are parsed")
def numbers_are_checked_when_parsed(env):
    for option, value in (("--epochs", "0"), ("--momentum", "2"), ("--validation-fraction",
                                                                     "1"), ("--alpha", "nan"),
                          ("--lr", "-1"), ("--test-size", "1")):
        status, _, err = _cli(env.capsys, "train", option, value)
        assert status == 2 and option in err and len(err.strip().splitlines()) == 1


@promise("Before any training, an output (`--out`, `--plot`, predict's `--out`, validate's "
         "`--json`) that is the same file as an input or another output (however spelled: "
         "symlinks, `..`) is refused")
def an_output_that_is_an_input_is_refused(env):
    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y)
    before = Path(data).read_bytes()
    (env.tmp / "sub").mkdir()
    os.symlink(data, env.tmp / "link.csv")
    for out in (str(env.tmp / "sub" / ".." / "d.csv"), str(env.tmp / "link.csv")):
        status, _, err = _cli(env.capsys, *TRAIN, "--data", data, "--out", out)
        assert status == 2 and "same file" in err
    assert Path(data).read_bytes() == before


@promise("a diverging training (it stops and names the setting to lower, exit status 1; "
         "the estimator keeps the last finite weights, but `--out` writes no model for a "
         "diverged run)")
def divergence_exits_1(env):
    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y * 1e3)
    out = env.tmp / "diverged.npz"
    status, _, err = _cli(env.capsys, *TRAIN[:-1], "200", "--data", data, "--lr", "1",
                          "--solver", "gd", "--alpha", "0", "--activation", "identity",
                          "--no-standardize", "--dtype", "float64", "--out", str(out))
    assert status == 1 and "diverged" in err and "Lower learning_rate_init" in err
    assert not out.exists()


@promise("Ctrl-C stops cleanly; with `--out`, the last complete epoch's model is saved, "
         "resumable with `--resume`, and the CLI says how many epochs it saved (exit status "
         "130)")
def ctrl_c_saves_the_last_epoch(env, monkeypatch):
    from gpumlp.cli import _Progress

    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y)
    out = str(env.tmp / "m.npz")
    real = _Progress.__call__

    def interrupt(self, epoch, loss, validation_loss):
        if epoch == 3:
            raise KeyboardInterrupt
        real(self, epoch, loss, validation_loss)

    monkeypatch.setattr(_Progress, "__call__", interrupt)
    status, _, err = _cli(env.capsys, *TRAIN[:-1], "50", "--data", data, "--out", out)
    monkeypatch.undo()
    assert status == 130 and "saved the last complete epoch's model" in err
    assert io.read_metadata(out)["n_iter"] == 2
    assert _cli(env.capsys, "train", "--resume", out, "--epochs", "1", "--quiet")[0] == 0


# ---------------------------------------------------------------------------- Dask
@promise("Parquet (needs pyarrow): one file, a glob of files, or a folder of them (with or "
         "without a `.parquet` suffix): the part files `dask.dataframe.to_parquet` writes "
         "(with or without `_metadata`), those of several `pandas.DataFrame.to_parquet` calls")
def a_parquet_dataset_of_several_files_reads(env):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("dask")
    from gpumlp.distributed import read_dataset

    X, y = _data(40)
    folder = env.tmp / "d.parquet"
    folder.mkdir()
    for i in range(2):
        pd.DataFrame(np.column_stack([X[20 * i:20 * (i + 1)], y[20 * i:20 * (i + 1)]]),
                     columns=["a", "b", "c", "t"]).to_parquet(folder / f"part{i}.parquet")
    X_d, y_d, names, target = read_dataset(str(folder), None)
    np.testing.assert_array_equal(np.asarray(X_d.compute()), X)
    assert target == "t"


# --------------------------------------------------------------------- model files
@promise("so every value `fit` accepts (an int or NumPy widths, NumPy scalars, "
         "`dtype=np.float32`, a `Device`, a NumPy `Generator`, stored as its bit generator's "
         "state) survives save, load and a new `fit`.")
def parameters_survive_save_and_load(env):
    X, y = _data()
    model = MLPRegressor(np.array([3]), alpha=np.float64(0.01), dtype=np.float32,
                         max_iter=np.int64(2), device=gpumlp.get_device("cpu"),
                         random_state=np.random.default_rng(5))
    _quiet(model.fit, X, y)
    io.save(model, env.tmp / "m.npz")
    loaded = io.load(env.tmp / "m.npz")
    assert loaded.coefs_[0].dtype == np.float32
    _quiet(loaded.set_params(device="cpu").fit, X, y)


@promise("An object array is refused and never unpickled.")
def object_arrays_are_refused(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=2, device="cpu").fit, X, y)
    io.save(model, env.tmp / "m.npz")
    with np.load(env.tmp / "m.npz") as archive:
        members = {name: archive[name] for name in archive.files}
    members["coef_0"] = np.array([object()] * 9, dtype=object).reshape(3, 3)
    np.savez(env.tmp / "bad.npz", **members, allow_pickle=True)
    with pytest.raises(gpumlp.ModelFileError):
        io.load(env.tmp / "bad.npz")


@promise("a `.npy` or a directory passed as a model")
def a_npy_or_a_folder_is_not_a_model(env):
    np.save(env.tmp / "x.npy", np.ones(3))
    for path in (env.tmp / "x.npy", env.tmp):
        with pytest.raises(gpumlp.ModelFileError):
            io.load(path)


@promise("with the mode the umask gives a new file (or the mode of the file replaced)")
def a_saved_model_keeps_the_mode_it_replaces(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=2, device="cpu").fit, X, y)
    path = env.tmp / "m.npz"
    path.write_bytes(b"old")
    path.chmod(0o640)
    io.save(model, path)
    assert path.stat().st_mode & 0o777 == 0o640


# --------------------------------------------------------------------- certificate
@promise("A file whose weights were changed after training fails;")
def changed_weights_fail_their_certificate(env):
    from gpumlp.certificate import certify

    X, y = _data()
    for dtype, rate in (("float64", 0.1), ("float32", "auto")):
        model = _quiet(MLPRegressor((3,), max_iter=5, learning_rate_init=rate, dtype=dtype,
                                    device="cpu", random_state=0).fit, X, y)
        model.coefs_[0][0, 0] *= 1 + 1e-3
        io.save(model, env.tmp / "m.npz")
        assert not certify(env.tmp / "m.npz", X, y, backends=["numpy"],
                           dtypes=(dtype,)).passed


@promise("a fit record (files from an older gpumlp, or Dask data: they still load and "
         "predict, and `validate` says what it checked)")
def files_without_a_record_cannot_be_replayed(env):
    from gpumlp.certificate import NotReplayableError, certify

    X, y = _data()
    model = _quiet(MLPRegressor((3,), max_iter=2, device="cpu").fit, X, y)
    model._fit_record = None   # as an older gpumlp, or a fit on Dask data, saves it
    io.save(model, env.tmp / "m.npz")
    io.load(env.tmp / "m.npz").predict(X)
    with pytest.raises(NotReplayableError, match="it loads"):
        certify(env.tmp / "m.npz", X, y, backends=["numpy"], dtypes=("float64",))


# --------------------------------------------------------------------- reliability
@promise("Before training, every number that enters the training dtype is checked against "
         "limits derived from its `finfo` (`max`, `tiny`, `eps`), with one message naming the "
         "parameter, its value and the limit, and float64 where float64's limit holds the "
         "value")
def dtype_limits_are_guarded(env):
    X, y = _data()
    X[0, 0] = 1e30   # beyond sqrt(float32's max), 1.8e19; float64 holds it
    with pytest.raises(ValueError, match=r"X holds values up to 1e\+30.*float32.*float64"):
        _quiet(MLPRegressor((3,), dtype="float32", device="cpu").fit, X, y)


@promise("`partial_fit` after `gpumlp.load` continues exactly as the saved model would have")
def partial_fit_after_load(env):
    X, y = _data()
    model = _quiet(MLPRegressor((3,), solver="adam", max_iter=3, device="cpu",
                                random_state=0).fit, X, y)
    io.save(model, env.tmp / "m.npz")
    loaded = io.load(env.tmp / "m.npz").set_params(device="cpu")
    for each in (model, loaded):
        _quiet(each.partial_fit, X, y)
    np.testing.assert_array_equal(model.predict(X), loaded.predict(X))


@promise("20 epochs and a resume of 20 give the predictions of 40 in one run")
def twenty_and_twenty_are_forty(env):
    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y)
    for more in ((), ("--early-stopping", "--n-iter-no-change", "50")):
        argv = ["train", "--device", "cpu", "--quiet", "--hidden", "4", "--solver", "adam",
                "--lr", "0.01", "--data", data, *more]
        a, b, c = (str(env.tmp / f"{n}.npz") for n in "abc")
        assert _cli(env.capsys, *argv, "--epochs", "3", "--out", a)[0] == 0
        assert _cli(env.capsys, "train", "--resume", a, "--epochs", "3", "--out", b,
                    "--quiet")[0] == 0
        assert _cli(env.capsys, *argv, "--epochs", "6", "--out", c)[0] == 0
        np.testing.assert_array_equal(io.load(b).predict(X), io.load(c).predict(X))


@promise("Giving another value for a training option than the saved run's is an error")
def another_value_than_the_saved_runs_is_an_error(env):
    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y)
    out = str(env.tmp / "m8.npz")
    assert _cli(env.capsys, *TRAIN, "--data", data, "--hidden", "8", "--out", out)[0] == 0
    status, _, err = _cli(env.capsys, "train", "--resume", out, "--hidden", "32", "--epochs",
                          "1", "--quiet")
    assert status == 2 and "--hidden" in err


@promise("`--checkpoint-every N` writes the model to `--out` every N epochs")
def checkpoints_are_written(env, monkeypatch):
    from gpumlp import cli

    X, y = _data()
    data = _csv(env.tmp / "d.csv", X, y)
    out = str(env.tmp / "m.npz")
    written = []
    real = io.save

    def save(model, path, **kwargs):
        written.append(len(getattr(model, "regressor_", model).loss_curve_))
        real(model, path, **kwargs)

    monkeypatch.setattr(io, "save", save)
    assert cli.main([*TRAIN[:-1], "6", "--data", data, "--out", out, "--checkpoint-every",
                     "2"]) == 0
    assert written[:3] == [2, 4, 6]


@promise("`GPUMLP_FASTPATH=0` (or `false`, `no`, `off`) turns the fast paths off")
def fastpath_switch(env):
    code = "import gpumlp.fastpath as f, sys; sys.exit(0 if not f.is_enabled() else 1)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env.subprocess_env, "GPUMLP_FASTPATH": "0"})
    assert result.returncode == 0, result.stderr


@promise("`import gpumlp` and a first fit never import scikit-learn")
def a_first_fit_never_imports_scikit_learn(env):
    code = ("import sys, numpy as np, gpumlp; X = np.random.default_rng(0).normal(size=(20, 2)); "
            "gpumlp.MLPRegressor((2,), max_iter=2, device='cpu').fit(X, X[:, 0]); "
            "sys.exit('sklearn' in sys.modules or 'scipy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env.subprocess_env)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- tests
class _Env:
    def __init__(self, tmp, capsys):
        self.tmp, self.capsys = tmp, capsys
        root = str(README.parent)
        self.subprocess_env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def _cases(with_marks):
    return [pytest.param(sentence, check, id=check.__name__, marks=[
        pytest.mark.xfail(strict=True, reason=false_today)] if with_marks and false_today
        else []) for sentence, check, false_today in PROMISES]


@pytest.mark.parametrize("sentence, check", _cases(with_marks=False))
def test_the_readme_still_says_it(sentence, check):
    assert _flat(sentence) in _flat(_documentation()), (
        f"README.md (or docs/) no longer says {sentence!r}: reword the quote here (and look at "
        f"{check.__name__} again) or restore the sentence")


@pytest.mark.parametrize("sentence, check", _cases(with_marks=True))
def test_the_promise_holds(sentence, check, tmp_path, capsys, monkeypatch):
    import inspect

    env = _Env(tmp_path, capsys)
    if "monkeypatch" in inspect.signature(check).parameters:
        check(env, monkeypatch)
    else:
        check(env)
