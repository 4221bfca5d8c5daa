"""Defects found by an adversarial round (issue 20's last item), each pinned.

Each test is one case a user met: the input, what gpumlp did wrong before,
and what it must do now.
"""

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, StandardizedRegressor


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    return X, X @ np.array([1.0, 2.0, -1.0])


def quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


def test_a_float32_network_predicts_an_offset_target_in_float64(data):
    # Before: predictions were unscaled in float32, so y + 1e8 came back
    # rounded to multiples of 8 (all 1e8 here), with y's spread about 2.4.
    X, y = data
    net = dict(hidden_layer_sizes=(8,), solver="gd", max_iter=20, dtype="float32",
               device="cpu", random_state=0)
    model = quiet_fit(StandardizedRegressor(MLPRegressor(**net)), X, y + 1e8)
    y_pred = model.predict(X)
    assert y_pred.dtype == np.float64
    # The network's own float32 output, unscaled in float64: exact up to
    # float64's rounding of numbers near 1e8 (eps * 1e8 = 2.2e-8).
    inner = model.regressor_.predict((X - model.x_mean_) / model.x_scale_).astype(np.float64)
    expected = inner * model.y_scale_[0] + model.y_mean_[0]
    np.testing.assert_allclose(y_pred, expected, rtol=0, atol=4 * np.finfo(np.float64).eps * 1e8)
    assert np.ptp(y_pred) > 1.0   # not a constant 1e8


def test_predictions_csv_keeps_every_digit_of_its_dtype(tmp_path):
    # Before: nine significant digits, so a float64 1e8 + 0.127 read back
    # as 100000000.
    from gpumlp.data import write_predictions
    y64 = np.array([1e8 + 0.127, -1e-300, 1 / 3])
    y32 = np.array([0.1, 1 / 3, 3e38], dtype=np.float32)
    for name, y_pred in (("p64.csv", y64), ("p32.csv", y32)):
        write_predictions(tmp_path / name, y_pred, "y")
        back = np.loadtxt(tmp_path / name, skiprows=1, delimiter=",", dtype=y_pred.dtype)
        np.testing.assert_array_equal(back, y_pred)
    # float32 values are written in float32's shortest form, not float64's.
    assert (tmp_path / "p32.csv").read_text().splitlines()[1] == "0.1"


@pytest.mark.parametrize("fraction, advice", [(0.99, "smaller"), (0.01, "larger")])
def test_early_stopping_split_advice_points_the_right_way(data, fraction, advice):
    # Before: 80 rows at 0.99 (80 validation rows, none to train on) advised
    # "a larger validation_fraction".
    X, y = data
    with pytest.raises(ValueError, match=rf"there are \d+ validation and \d+ training rows.*"
                                         rf"{advice} validation_fraction"):
        MLPRegressor((4,), early_stopping=True, validation_fraction=fraction,
                     max_iter=2, device="cpu").fit(X, y)


def test_cli_predict_matches_csv_columns_to_a_dataframe_models_names(data, tmp_path, capsys):
    # Before: a model fitted on a dataframe and saved from Python was asked,
    # by `gpumlp predict`, for columns x0, x1, x2, which the CSV holding the
    # frame's own columns lacks.
    import pandas as pd

    from gpumlp import save
    from gpumlp.cli import main
    X, y = data
    frame = pd.DataFrame(X, columns=["c", "b", "a"])
    model = quiet_fit(StandardizedRegressor(MLPRegressor((4,), max_iter=3, device="cpu",
                                                         random_state=0)), frame, y)
    save(model, tmp_path / "m.npz")
    # The CSV holds the columns in another order, with the target among them.
    frame[["a", "b"]].assign(y=y, c=frame["c"]).to_csv(tmp_path / "d.csv", index=False)
    assert main(["predict", "--model", str(tmp_path / "m.npz"), "--data",
                 str(tmp_path / "d.csv"), "--out", str(tmp_path / "p.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), model.predict(frame))
    # A frame with a name twice cannot be matched by name: refused, now at fit
    # (before, the model was saved without names and predict refused the CSV).
    twice = pd.DataFrame(X, columns=["a", "a", "c"])
    with pytest.raises(ValueError, match="more than one column named 'a'"):
        quiet_fit(StandardizedRegressor(MLPRegressor((4,), max_iter=3, device="cpu")),
                  twice, y)


def test_cli_says_lbfgs_stopped_at_max_fun_not_at_epochs(tmp_path, capsys):
    # Before: "epochs: 1 (stopped at --epochs, not converged)" with --epochs 3,
    # and the warning that said why was swallowed.
    import json

    from gpumlp.cli import main
    report = tmp_path / "r.json"
    assert main(["train", "--samples", "60", "--solver", "lbfgs", "--max-fun", "1",
                 "--epochs", "3", "--quiet", "--device", "cpu", "--json", str(report)]) == 0
    stopped = json.loads(report.read_text())["stopped"]
    assert stopped == "stopped before --epochs (max_fun (1) loss evaluations reached), " \
                      "not converged"
    assert f"epochs: 1 ({stopped})" in capsys.readouterr().out


@pytest.mark.parametrize("options, flag", [
    (["--solver", "sgd", "--beta1", "0.5"], "--beta1"),
    (["--momentum", "0.5"], "--momentum"),                     # adam, the default
    (["--no-nesterov"], "--nesterov/--no-nesterov"),
    # Nesterov's look-ahead moves along a velocity that momentum 0 never builds.
    (["--solver", "sgd", "--momentum", "0", "--no-nesterov"], "--nesterov/--no-nesterov"),
    (["--solver", "gd", "--batch-size", "7"], "--batch-size"),
    (["--max-fun", "5"], "--max-fun"),
    (["--solver", "lbfgs", "--lr", "0.1"], "--lr"),
    (["--learning-rate", "invscaling"], "--learning-rate"),
    (["--solver", "gd", "--learning-rate", "adaptive"], "--learning-rate"),   # rate "auto"
    (["--solver", "sgd", "--power-t", "0.9"], "--power-t"),    # schedule constant
    (["--validation-fraction", "0.3"], "--validation-fraction"),
])
def test_cli_refuses_an_option_this_run_would_ignore(tmp_path, capsys, options, flag):
    # Before: each trained as if the option had not been typed, and said nothing.
    from gpumlp.cli import main
    out = tmp_path / "m.npz"
    assert main(["train", "--samples", "60", "--epochs", "2", "--quiet", "--device", "cpu",
                 "--out", str(out), *options]) == 2
    assert f"{flag} has no effect on this run" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("options", [
    ["--solver", "sgd", "--momentum", "0.5", "--no-nesterov", "--batch-size", "16",
     "--learning-rate", "invscaling", "--power-t", "0.3"],
    ["--solver", "gd", "--lr", "0.1", "--learning-rate", "adaptive"],
    ["--beta1", "0.8", "--beta2", "0.99", "--epsilon", "1e-7", "--batch-size", "16",
     "--early-stopping", "--validation-fraction", "0.3"],
    ["--solver", "lbfgs", "--max-fun", "50"],
])
def test_cli_takes_the_options_a_run_uses(tmp_path, options):
    from gpumlp.cli import main
    assert main(["train", "--samples", "60", "--epochs", "2", "--quiet", "--device", "cpu",
                 *options]) == 0


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_saves_the_last_complete_epoch_as_ctrl_c_does(tmp_path, name):
    # Before: SIGTERM (kill, a batch scheduler's time limit) ended the run at
    # once, and every epoch trained was lost; so did SIGHUP, a closed
    # terminal or dropped ssh session (adversarial round 5).
    import json

    from gpumlp import load
    out, report = tmp_path / "m.npz", tmp_path / "r.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "gpumlp", "train", "--device", "cpu", "--samples", "500",
         "--epochs", "10000000", "--solver", "gd", "--lr", "0.1", "--tol", "0", "--hidden",
         "8", "--quiet", "--out", str(out), "--checkpoint-every", "1", "--json", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists() and time.monotonic() < deadline:   # an epoch is complete
        time.sleep(0.05)
    number = getattr(signal, name)
    process.send_signal(number)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + number, err
    assert f"saved the last complete epoch's model to {out}" in err
    saved = load(out).regressor_
    assert len(saved.loss_curve_) >= 1
    # Before: --json was not written, so a script read a missing or stale report.
    written = json.loads(report.read_text())
    assert written["stopped"] == f"interrupted ({name}), not converged"
    assert written["converged"] is False and written["model"] == str(out)
    assert written["epochs"] == len(saved.loss_curve_)
    assert written["final_loss"] == saved.loss_


@pytest.mark.parametrize("checkpoints", [False, True])
def test_a_diverged_run_writes_its_json_report_too(tmp_path, checkpoints):
    # Before: no report, and a stale one from an earlier run at the same path
    # read as this run's (adversarial round 5).
    import json

    from gpumlp.cli import main
    report, out = tmp_path / "r.json", tmp_path / "m.npz"
    report.write_text('{"stopped": "stopped at --epochs"}')
    argv = ["train", "--samples", "200", "--solver", "sgd", "--lr", "50", "--momentum", "0.99",
            "--epochs", "50", "--quiet", "--device", "cpu", "--json", str(report),
            "--out", str(out)] + (["--checkpoint-every", "2"] if checkpoints else [])
    assert main(argv) == 1
    written = json.loads(report.read_text())
    assert written["stopped"].startswith("diverged at epoch ") and written["converged"] is False
    assert written["train"] is None and written["test"] is None
    if checkpoints:   # the last checkpoint before the divergence is what --out holds
        from gpumlp import load
        assert written["model"] == str(out)
        assert written["epochs"] == len(load(out).regressor_.loss_curve_)
    else:
        assert written["model"] is None and not out.exists()


@pytest.mark.parametrize("user_filter", [None, "ignore", "error"])
def test_cli_never_calls_a_run_whose_loss_rose_converged(tmp_path, capsys, user_filter):
    # Before: "epochs: 12 (converged)  final loss: 7.43e+24" and an R² of
    # -8e26, the fit's LossIncreasedWarning caught and never shown. And under
    # PYTHONWARNINGS=ignore (or -W ignore) the warning was never recorded, so
    # the run read as converged again; under "error" it ended in a traceback
    # (adversarial round 4, D4).
    import json
    import warnings

    from gpumlp.cli import main
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([1.0, 2.0, -1.0]) + 0.1 * rng.normal(size=60)
    data, report = tmp_path / "d.csv", tmp_path / "r.json"
    data.write_text("a,b,c,y\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n"
                                          for row in np.column_stack([X, y])))
    # A step far too large: the loss grows by a factor of about 1e11 (the
    # stopping rule then meets its "no improvement" test), yet stays finite.
    with warnings.catch_warnings():
        if user_filter is not None:
            warnings.simplefilter(user_filter)
        assert main(["train", "--data", str(data), "--solver", "sgd", "--lr", "1",
                     "--momentum", "0.99", "--epochs", "30", "--quiet", "--device", "cpu",
                     "--dtype", "float64", "--json", str(report)]) == 0
    outcome = json.loads(report.read_text())
    assert outcome["converged"] is False
    assert "the training loss rose, not converged" in outcome["stopped"]
    out, err = capsys.readouterr()
    assert "(converged)" not in out
    assert "gpumlp train: warning: The training loss rose from" in err


def test_cli_shows_the_unscaled_data_warning_of_no_standardize(tmp_path, capsys):
    from gpumlp.cli import main
    data = tmp_path / "d.csv"
    data.write_text("a,y\n" + "".join(f"{0.1 * i},{1e6 + i}\n" for i in range(40)))
    assert main(["train", "--data", str(data), "--no-standardize", "--epochs", "2",
                 "--quiet", "--device", "cpu"]) == 0
    assert "gpumlp train: warning: y is far from mean 0" in capsys.readouterr().err


@pytest.mark.parametrize("settings, words", [
    ({"GPUMLP_BACKEND": "tensorflow"}, "variable GPUMLP_BACKEND='tensorflow' is not a backend"),
    ({"GPUMLP_DEVICE": "gpu9"}, "variable GPUMLP_DEVICE='gpu9' is not a device"),
])
def test_a_bad_environment_variable_is_named_for_what_it_sets(monkeypatch, settings, words):
    # Before: GPUMLP_BACKEND=tensorflow was called "not a device".
    from gpumlp import get_device
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"The environment {words}"):
        get_device()


def test_predictions_that_overflow_are_refused_not_returned_as_inf():
    """A fixed-rate float32 fit whose last step grew the weights to ~5e18 gave
    finite weights and +-inf predictions, with only a LossIncreasedWarning
    (found by the laws' long run)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 1)) * 1e3
    y = X[:, 0] * 1e-6
    model = MLPRegressor((1,), activation="identity", solver="gd", learning_rate_init=0.05,
                         max_iter=2, tol=0, dtype="float32", random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    assert all(np.isfinite(W).all() for W in model.coefs_)
    with pytest.raises(ValueError, match="predictions overflow float32"):
        model.predict(X)


def test_save_refuses_a_state_load_would_refuse(tmp_path):
    """An Adam fit on unscaled data can end with its second moment at inf while
    the loss is finite: save wrote a file that load then refused as damaged."""
    from gpumlp import io

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    model = MLPRegressor((3,), solver="adam", max_iter=2, device="cpu",
                         random_state=0).fit(X, X[:, 0])
    model._trainer.state.second[0][0, 0] = np.inf
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match="training_state=False"):
        io.save(model, path)
    assert not path.exists()
    io.save(model, path, training_state=False)
    np.testing.assert_array_equal(io.load(path).predict(X), model.predict(X))


# ------------------------------------------------ second round (adversary2)
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_path_to_an_open_file_descriptor_is_refused_not_replaced(tmp_path):
    """``--json /dev/stdout >> log`` replaced log (its earlier lines lost):
    the writer resolved the link to the file the shell had opened, and renamed
    a new file over it."""
    from gpumlp._atomic import atomic_path

    log = tmp_path / "log.txt"
    log.write_text("KEEP\n")
    with open(log, "a") as handle:
        for name in (f"/proc/self/fd/{handle.fileno()}", f"/dev/fd/{handle.fileno()}"):
            with pytest.raises(OSError, match="open file of this process"):
                with atomic_path(name) as temporary:
                    with open(temporary, "w") as out:
                        out.write("{}")
    assert log.read_text() == "KEEP\n"
    assert os.listdir(tmp_path) == ["log.txt"]


def test_a_read_only_file_is_not_replaced(tmp_path, monkeypatch):
    """``--out m.npz`` on a file made read-only (chmod 444) replaced it: a
    rename needs only the folder's write permission, where open(path, "w")
    is refused."""
    from gpumlp._atomic import atomic_path

    target = tmp_path / "m.npz"
    target.write_bytes(b"protected")
    target.chmod(0o444)
    if os.geteuid() == 0:   # root may write any file: ask as a user would be answered
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False
                            if os.path.samefile(path, target) and mode == os.W_OK
                            else real_access(path, mode, **kw))
    with pytest.raises(PermissionError, match="read-only"):
        with atomic_path(target) as temporary:
            with open(temporary, "wb") as out:
                out.write(b"new")
    assert target.read_bytes() == b"protected"
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.skipif(sys.platform == "win32", reason="closes a POSIX file descriptor")
def test_a_closed_stdout_still_saves_the_model(tmp_path):
    """``gpumlp train --out m.npz >&-`` (stdout closed, as a daemon may run it)
    trained, then died on the first print with a traceback: no model saved."""
    out = tmp_path / "m.npz"

    def run(*args):
        return subprocess.run([sys.executable, "-m", "gpumlp", *args], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: os.close(1), timeout=120)

    done = run("train", "--device", "cpu", "--samples", "60", "--epochs", "2", "--out",
               str(out))
    assert done.returncode == 0, done.stderr
    assert out.exists()
    # Predictions are the output itself: with nowhere to print them, say so.
    features = tmp_path / "X.npy"
    np.save(features, np.zeros((3, 10)))
    done = run("predict", "--model", str(out), "--data", str(features))
    assert done.returncode == 2
    assert "stdout is closed" in done.stderr and "--out" in done.stderr


@pytest.mark.skipif(os.name != "posix", reason="folder links")
def test_a_linked_partition_folder_is_read_and_a_link_cycle_refused(tmp_path):
    """A hive partition linked in from elsewhere was skipped in silence (40 of
    80 rows; pyarrow's datasets read it): adversarial round 7, #365."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pytest.importorskip("dask")
    from gpumlp.data import DataError
    from gpumlp.parquet import read_parquet

    (tmp_path / "d" / "k=0").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    for folder in ("d/k=0", "elsewhere"):
        pd.DataFrame({"x": np.arange(4.0), "y": np.arange(4.0)}).to_parquet(
            tmp_path / folder / "part.parquet")
    os.symlink(tmp_path / "elsewhere", tmp_path / "d" / "k=1")
    X, y, _, _ = read_parquet(str(tmp_path / "d"), "y")
    assert X.shape[0] == 8
    os.symlink(tmp_path / "d", tmp_path / "elsewhere" / "k=2")
    with pytest.raises(DataError, match="a folder link leads back to"):
        read_parquet(str(tmp_path / "d"), "y")


def test_a_hive_partitioned_dataset_without_target_is_refused(tmp_path):
    """``df.to_parquet(path, partition_cols=["k"])`` then ``train --data path``
    silently trained on the partition key k as the target, y as a feature."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from gpumlp.data import DataError
    from gpumlp.parquet import read_parquet

    frame = pd.DataFrame({"x": np.arange(6.0), "y": np.arange(6.0) * 2,
                          "k": [1, 1, 1, 2, 2, 2]})
    frame.to_parquet(tmp_path / "d", partition_cols=["k"])
    with pytest.raises(DataError, match="partition key, not a target; name the target"):
        read_parquet(str(tmp_path / "d"))
    _, _, features, target = read_parquet(str(tmp_path / "d"), "y")
    assert (features, target) == (["x", "k"], "y")


def test_parquet_partition_values_and_names_read_as_pandas_reads_them(tmp_path):
    """A folder k=1_000 was read as 1000 (Python's float() takes underscores)
    where pandas reads the text '1_000'; k=%2D1 (pandas: -1) was refused; a
    file naming a column twice failed on the worker with a raw KeyError."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from gpumlp.data import DataError
    from gpumlp.parquet import read_parquet

    table = pa.table({"x": [1.0, 2.0], "y": [3.0, 4.0]})
    for value, expected in (("1_000", None), ("%2D1", -1.0), ("1e3", 1000.0)):
        folder = tmp_path / value.replace("%", "pct") / f"k={value}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "part.parquet")
        if expected is None:
            with pytest.raises(DataError, match=f"k={value} is not a number"):
                read_parquet(str(folder.parent), "y")
        else:
            X, _, _, _ = read_parquet(str(folder.parent), "y")
            np.testing.assert_array_equal(X.compute(scheduler="sync")[:, 1], expected)
    twice = tmp_path / "twice.parquet"
    pq.write_table(pa.table([pa.array([1.0]), pa.array([2.0]), pa.array([3.0])],
                            names=["a", "a", "y"]), twice)
    with pytest.raises(DataError, match="names the column.*'a' more than once"):
        read_parquet(str(twice), "y")


def test_resume_refuses_data_whose_text_levels_were_renamed(tmp_path, capsys):
    """The resume's digest is of the encoded numbers: a CSV whose level 'red'
    became 'purple' (the same sorted place) passed, and the saved model then
    answered for purple what it had learned for red, and refused red."""
    import json

    from gpumlp.cli import main
    rng = np.random.default_rng(0)
    colors = np.array(["blue", "green", "red"])[np.arange(30) % 3]
    x = rng.normal(size=30)
    rows = "".join(f"{a},{c},{a + (c == 'red')}\n" for a, c in zip(x, colors))
    data, renamed = tmp_path / "d.csv", tmp_path / "renamed.csv"
    data.write_text("x,color,y\n" + rows)
    renamed.write_text("x,color,y\n" + rows.replace(",red,", ",purple,"))
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(data), "--epochs", "2", "--quiet", "--device", "cpu",
                 "--out", str(model)]) == 0
    before = model.read_bytes()
    assert main(["train", "--resume", str(model), "--data", str(renamed), "--epochs", "4",
                 "--quiet"]) == 2
    assert "other text levels than the data the saved run trained on" in \
        capsys.readouterr().err
    assert model.read_bytes() == before
    assert main(["train", "--resume", str(model), "--data", str(data), "--epochs", "4",
                 "--quiet"]) == 0
    with np.load(model) as archive:
        columns = json.loads(str(archive["metadata"]))["columns"]
    assert columns[1] == {"name": "color", "levels": ["blue", "green", "red"]}
