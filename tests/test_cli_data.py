"""The command line with user files: train, predict, devices, and every bad input."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_cli import run

from gpumlp import io
from gpumlp.cli import main
from gpumlp.datasets import make_friedman1


def write_csv(path, X, y, names=None, target="price"):
    names = names or [f"f{j}" for j in range(X.shape[1])]
    lines = [",".join([*names, target])]
    lines += [",".join(repr(float(v)) for v in [*row, t]) for row, t in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def csv_file(tmp_path):
    X, y = make_friedman1(300, n_features=5, random_state=1)
    return write_csv(tmp_path / "houses.csv", X, y * 1000)


def test_csv_to_saved_predictions_end_to_end(tmp_path, csv_file):
    model, plot, preds = tmp_path / "model.npz", tmp_path / "loss.png", tmp_path / "preds.csv"
    result = run("train", "--data", str(csv_file), "--target", "price", "--device", "cpu",
                 "--hidden", "16", "--epochs", "300", "--out", str(model), "--plot", str(plot),
                 "--quiet", check=True)
    assert f"saved model to {model}" in result.stdout
    assert f"wrote loss plot to {plot}" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = run("predict", "--model", str(model), "--data", str(csv_file), "--out", str(preds),
                 "--device", "cpu", check=True)
    assert "wrote 300 predictions" in result.stdout
    assert preds.read_text().splitlines()[0] == "price"
    from_file = np.loadtxt(preds, delimiter=",", skiprows=1)
    table = np.loadtxt(csv_file, delimiter=",", skiprows=1)
    np.testing.assert_allclose(from_file, io.load(model).predict(table[:, :5]), rtol=1e-6)
    # Predictions are in the target's units, near the training targets.
    assert abs(from_file.mean() - table[:, 5].mean()) < 0.2 * table[:, 5].std()


def test_predict_reorders_csv_columns_and_ignores_the_target(tmp_path, csv_file):
    model = tmp_path / "model.npz"
    run("train", "--data", str(csv_file), "--device", "cpu", "--epochs", "20", "--quiet",
        "--out", str(model), check=True)
    table = np.loadtxt(csv_file, delimiter=",", skiprows=1)
    shuffled = write_csv(tmp_path / "shuffled.csv", table[:, [4, 2, 0, 1, 3]], table[:, 5],
                         names=["f4", "f2", "f0", "f1", "f3"], target="other")
    npy = tmp_path / "features.npy"
    np.save(npy, table[:, :5])
    a = run("predict", "--model", str(model), "--data", str(shuffled), "--device", "cpu",
            check=True).stdout
    b = run("predict", "--model", str(model), "--data", str(npy), "--device", "cpu",
            check=True).stdout
    assert a == b and len(a.splitlines()) == 301


@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_numpy_files_train(tmp_path, kind):
    X, y = make_friedman1(100, random_state=0)
    path = tmp_path / f"data.{kind}"
    if kind == "npy":
        np.save(path, np.column_stack([X, y]))
    else:
        np.savez(path, X=X, y=y)
    result = run("train", "--data", str(path), "--device", "cpu", "--epochs", "5", check=True)
    assert "80 train / 20 test rows, 10 features" in result.stdout


def test_devices_lists_every_backend_and_explains_the_unusable():
    lines = run("devices", check=True).stdout.splitlines()
    assert lines[1].split()[:3] == ["numpy", "cpu", "yes"]
    backends = {line.split()[0] for line in lines[1:]}
    assert backends == {"numpy", "cupy", "torch", "jax"}
    for line in lines[1:]:
        backend, device, usable, detail = line.split(None, 3)
        assert usable in ("yes", "no") and detail.strip()
        if usable == "no":  # a reason, never a bare "no"
            assert any(word in detail for word in ("not installed", "sees no", "has no",
                                                   "no usable"))


def bad_csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--data", str(t / "nope.csv")], "nope.csv: no such file"),
    (lambda t: ["--data", bad_csv(t, "a,b,y\n1,2,3\n1,red,4\n")],
     "line 3: column 'b' holds the non-numeric value 'red'"),
    (lambda t: ["--data", bad_csv(t, "a,b,y\n1,,3\n1,nan,4\n2,inf,5\n")],
     "2 missing or NaN and 1 infinite value(s); the first is in row 1, column 'b'"),
    (lambda t: ["--data", bad_csv(t, "a,b,y\n")], "0 data rows"),
    (lambda t: ["--data", bad_csv(t, "a,b,y\n1,2,3\n"), "--target", "z"],
     "there is no column 'z'; the columns are a, b, y"),
    (lambda t: ["--device", "npu"], "Unknown device 'npu'"),
    (lambda t: ["--data", bad_csv(t, "a,y\n1,2\n"), "--test-size", "1.5"], "--test-size"),
])
def test_bad_training_input_gets_one_line(tmp_path, make_args, message):
    result = run("train", *make_args(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_feature_count_mismatch_at_predict(tmp_path, csv_file):
    model = tmp_path / "model.npz"
    run("train", "--data", str(csv_file), "--device", "cpu", "--epochs", "2", "--quiet",
        "--out", str(model), check=True)
    npy = tmp_path / "three.npy"
    np.save(npy, np.zeros((4, 3)))
    result = run("predict", "--model", str(model), "--data", str(npy))
    assert result.returncode == 2
    assert "the model expects 5 feature column(s); the array has shape (4, 3)" in result.stderr
    partial = bad_csv(tmp_path, "f0,f1\n1,2\n")
    result = run("predict", "--model", str(model), "--data", partial)
    assert "needs the column(s) 'f2', 'f3', 'f4'" in result.stderr


def test_cuda_without_a_gpu_says_how_to_install(tmp_path):
    pytest.importorskip("array_api_compat")
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here; the missing-CUDA message cannot be shown")
    except ImportError:
        pass
    result = run("train", "--device", "cuda")
    assert result.returncode == 2
    assert "pip install 'gpumlp[cuda12]'" in result.stderr


def test_divergence_is_reported_with_the_setting_to_lower(tmp_path):
    result = run("train", "--device", "cpu", "--activation", "identity", "--lr", "50",
                 "--solver", "gd", "--out", str(tmp_path / "m.npz"))
    assert result.returncode == 1
    assert "diverged" in result.stderr and "Lower learning_rate_init (now 50)" in result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_out_of_memory_suggests_a_batch_size(monkeypatch, capsys):
    from gpumlp import kernels, training

    def exhausted(*args, **kwargs):
        raise MemoryError("Out of memory allocating 4,000,000,000 bytes")

    monkeypatch.setattr(kernels, "forward", exhausted)
    monkeypatch.setattr(training, "rows_loss_and_grads", exhausted)   # the training step
    assert main(["train", "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ran out of memory" in err and "--batch-size" in err


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["train", "--device", "cpu", "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'gpumlp[plot]'" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_ctrl_c_stops_cleanly_and_saves_the_last_good_state(tmp_path):
    model = tmp_path / "model.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "gpumlp", "train", "--device", "cpu", "--epochs", "10000000",
         "--samples", "400000", "--hidden", "64",
         # A fixed rate: "auto" spends its first 17 gradients (over 1.5 s of
         # 400000 rows here) on the curvature estimate, before epoch 1 ends.
         "--lr", "0.1", "--tol", "0", "--solver", "gd", "--out", str(model),
         # The file appears once an epoch is complete: the signal is sent
         # then, not after a fixed sleep that a loaded machine may outlast.
         "--checkpoint-every", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell that starts CI in the background hands its children SIGINT
        # ignored, and Python then installs no KeyboardInterrupt for it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout.readline().startswith("device: cpu")
    deadline = time.monotonic() + 120
    while not model.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert model.exists(), "no epoch completed within 120 s"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert f"saved the last complete epoch's model to {model}" in err
    loaded = io.load(model)
    assert loaded.regressor_.n_iter_ > 0
    assert io.read_metadata(model)["extra"]["interrupted"] is True
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


def _one_line_error(capsys, argv, status=2):
    """Run the CLI in-process; return its one-line error (argparse exits, main returns)."""
    try:
        result = main(argv)
    except SystemExit as exc:
        result = exc.code
    captured = capsys.readouterr()
    assert result == status, captured
    assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err
    return captured


@pytest.mark.parametrize("make_argv, message", [
    (lambda t, data: ["--data", data, "--out", data],
     "--out {data} is the same file as --data {data}, which writing it would destroy"),
    (lambda t, data: ["--data", data, "--out", str(t / "sub" / ".." / "houses.csv")],
     "is the same file as --data"),
    (lambda t, data: ["--data", str(t / "link.csv"), "--out", data],
     "is the same file as --data"),
    (lambda t, data: ["--data", data, "--out", str(t / "m.csv"), "--plot", str(t / "m.csv")],
     "--plot {t}/m.csv is the same file as --out {t}/m.csv, so one would overwrite"),
    (lambda t, data: ["--data", data, "--out", str(t / "m.npz"),
                      "--plot", str(t / "sub" / ".." / "m.npz")],
     "is the same file as --out"),
    (lambda t, data: ["--data", data, "--out", str(t / "nodir" / "m.npz")],
     "--out {t}/nodir/m.npz: {t}/nodir does not exist; create the folder"),
    (lambda t, data: ["--data", data, "--out", str(t / "sub")], "is a directory"),
    (lambda t, data: ["--data", data, "--plot", data + "/loss.png"], "is not a folder"),
], ids=["same-spelling", "dot-dot", "symlink", "out-is-plot", "out-is-plot-dot-dot",
        "no-folder", "directory", "file-as-folder"])
def test_an_output_that_would_destroy_a_file_or_cannot_be_written_is_refused_first(
        tmp_path, csv_file, capsys, monkeypatch, make_argv, message):
    """Issue 13, item 2: checked before training, by file, not by spelling."""
    monkeypatch.setattr("gpumlp.cli._train_and_report",
                        lambda *a: pytest.fail("training started"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to(csv_file)
    before = csv_file.read_bytes()
    err = _one_line_error(capsys, ["train", "--device", "cpu", "--quiet",
                                   *make_argv(tmp_path, str(csv_file))]).err
    assert message.format(t=tmp_path, data=csv_file) in err and ".tmp-" not in err
    assert csv_file.read_bytes() == before


@pytest.mark.parametrize("target", ["model", "data", "data-symlink"])
def test_predict_refuses_to_overwrite_its_model_or_data(tmp_path, csv_file, capsys, target):
    """Issue 13, item 2, for predict."""
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(csv_file), "--device", "cpu", "--epochs", "2",
                 "--quiet", "--out", str(model)]) == 0
    capsys.readouterr()
    (tmp_path / "link.csv").symlink_to(csv_file)
    out = {"model": model, "data": csv_file, "data-symlink": tmp_path / "link.csv"}[target]
    before = out.read_bytes()
    err = _one_line_error(capsys, ["predict", "--model", str(model), "--data", str(csv_file),
                                   "--out", str(out)]).err
    assert "is the same file as --" + ("model" if target == "model" else "data") in err
    assert out.read_bytes() == before


@pytest.mark.parametrize("what", ["npy", "directory"])
def test_predict_with_a_model_that_is_not_a_model_file(tmp_path, csv_file, capsys, what):
    """Issue 13, item 14: a one-line ModelFileError, not a TypeError traceback."""
    model = tmp_path / "model.npy"
    if what == "npy":
        np.save(model, np.ones((3, 3)))
    else:
        model.mkdir()
    err = _one_line_error(capsys, ["predict", "--model", str(model),
                                   "--data", str(csv_file)]).err
    assert err.startswith("gpumlp predict: error: ")
    assert ("is a single NumPy array (.npy), not a gpumlp model file" if what == "npy"
            else "is a directory; pass a model file") in err


@pytest.mark.parametrize("option, value, message", [
    ("--samples", "-5", "argument --samples: must be an integer >= 1, got '-5'"),
    ("--test-size", "nan", "argument --test-size: must be a number >= 0 and < 1, got 'nan'"),
    ("--test-size", "1", "argument --test-size: must be a number >= 0 and < 1"),
    ("--batch-size", "0", "argument --batch-size: must be an integer >= 1, got '0'"),
    ("--batch-size", "2.5", "argument --batch-size: takes an integer, got '2.5'"),
    ("--epochs", "0", "argument --epochs: must be an integer >= 1, got '0'"),
    ("--epochs", "-3", "argument --epochs: must be an integer >= 1"),
    ("--lr", "0", "argument --lr: must be a number > 0, got '0'"),
    ("--lr", "nan", "argument --lr: must be a number > 0, got 'nan'"),
    ("--lr", "inf", "argument --lr: must be a number > 0, got 'inf'"),
    ("--tol", "-0.001", "argument --tol: must be a number >= 0, got '-0.001'"),
    ("--tol", "nan", "argument --tol: must be a number >= 0, got 'nan'"),
])
def test_bad_numbers_are_refused_when_the_arguments_are_parsed(capsys, monkeypatch, option,
                                                               value, message):
    """Issue 13, item 19: no silent auto batch size, no run without a test split."""
    monkeypatch.setattr("gpumlp.cli._run_train", lambda args: pytest.fail("parsed"))
    err = _one_line_error(capsys, ["train", option, value]).err
    assert err.startswith("gpumlp train: error: ") and message in err


def test_a_bad_device_variable_is_named_by_the_cli():
    """Issue 13, item 19, as a user meets it."""
    result = run("train", "--quiet", env={"GPUMLP_DEVICE": "garbage"})
    assert result.returncode == 2
    assert "The environment variable GPUMLP_DEVICE='garbage' is not a device" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
