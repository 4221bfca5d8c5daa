"""The command line's defects of issue 20 (§6) and its ``--resume`` promise (§5), each pinned.

"Giving another value for a training option than the saved run's is an
error": an option counts as given when it is typed, even with its default
value, and is compared with what the saved run meant by its own (the last
column for ``--target``, the solver's rate for ``--lr``).
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from gpumlp import io
from gpumlp.cli import _Progress, main
from gpumlp.data import write_predictions

TRAIN = ["train", "--device", "cpu", "--dtype", "float64", "--solver", "adam",
         "--batch-size", "64", "--samples", "200", "--hidden", "8", "--quiet"]


def _main(capsys, argv):
    try:
        status = main(argv)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def run8(tmp_path, capsys):
    """A 2-epoch adam run of 8 hidden units, float64, with the default --lr."""
    path = tmp_path / "m8.npz"
    assert _main(capsys, [*TRAIN, "--epochs", "2", "--out", str(path)])[0] == 0
    return path


@pytest.mark.parametrize("option, message", [
    (["--hidden", "32"], "--hidden 32 differs from the resumed run's 8"),
    (["--dtype", "float32"], "--dtype float32 differs from the resumed run's float64"),
    (["--solver", "gd"], "--solver gd differs from the resumed run's adam"),
    (["--seed", "0", "--alpha", "0.1"], None),  # the saved values, typed: accepted
    (["--alpha", "0.5"], "--alpha 0.5 differs from the resumed run's 0.1"),
    (["--lr", "auto"], None),  # the rate when --lr is left out, which the run did
    (["--lr", "0.01"], None),  # what auto means for adam (adversarial round 16)
    (["--lr", "0.1"], "--lr 0.1 differs from the resumed run's 0.01"),
    (["--no-nesterov"], "--nesterov off differs from the resumed run's on"),
    (["--no-standardize"], "--no-standardize on differs from the resumed run's off"),
])
def test_an_option_typed_with_its_default_value_is_compared_with_the_saved_run(
        run8, capsys, option, message):
    """``--resume m8.npz --hidden 32`` exited 0 and kept 8 units: 32 is the default."""
    before = run8.read_bytes()
    status, _, err = _main(capsys, ["train", "--resume", str(run8), "--epochs", "1",
                                    "--quiet", *option])
    if message is None:
        assert status == 0, err
        assert len(io.read_metadata(run8)["loss_curve"]) == 3
    else:
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert run8.read_bytes() == before


def _csv(tmp_path, target='y,"z"'):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a", "b", target])
        for a, b in rng.normal(size=(60, 2)):
            writer.writerow([a, b, 2 * a - b])
    return path


def test_resume_with_the_saved_default_target_typed_is_accepted(tmp_path, capsys):
    """``--resume m --target t``, t the last column that the run used by default."""
    data, model = _csv(tmp_path, "t"), tmp_path / "m.npz"
    assert _main(capsys, ["train", "--data", str(data), "--epochs", "2", "--quiet",
                          "--out", str(model)])[0] == 0
    status, _, err = _main(capsys, ["train", "--resume", str(model), "--target", "t",
                                    "--epochs", "1", "--quiet"])
    assert status == 0, err
    status, _, err = _main(capsys, ["train", "--resume", str(model), "--target", "a",
                                    "--epochs", "1", "--quiet"])
    assert status == 2 and "--target a differs from the resumed run's t" in err


def test_a_target_name_with_a_comma_and_quotes_is_written_as_proper_csv(tmp_path, capsys):
    data, model, preds = _csv(tmp_path), tmp_path / "m.npz", tmp_path / "p.csv"
    assert _main(capsys, ["train", "--data", str(data), "--epochs", "2", "--quiet",
                          "--out", str(model)])[0] == 0
    assert _main(capsys, ["predict", "--model", str(model), "--data", str(data),
                          "--out", str(preds)])[0] == 0
    status, printed, _ = _main(capsys, ["predict", "--model", str(model), "--data", str(data)])
    assert status == 0 and printed == preds.read_text()
    rows = list(csv.reader(printed.splitlines()))
    assert rows[0] == ['y,"z"'] and len(rows) == 61 and all(len(row) == 1 for row in rows)
    assert printed.splitlines()[0] == '"y,""z"""'


@pytest.mark.parametrize("names, header", [
    (["u", "v"], ["u", "v"]),
    ("y", ["y_0", "y_1"]),
    (["y"], ["y_0", "y_1"]),
    (["a,b", "c\nd"], ["a,b", "c\nd"]),
])
def test_each_output_column_gets_its_name(tmp_path, names, header):
    path = tmp_path / "p.csv"
    write_predictions(path, np.arange(6.0).reshape(3, 2), names)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == header and [list(map(float, row)) for row in rows[1:]] == [
        [0, 1], [2, 3], [4, 5]]


def _interrupt_at(epoch, error):
    progress = _Progress.__call__

    def call(self, at, loss, validation_loss):
        if at == epoch:
            raise error
        progress(self, at, loss, validation_loss)

    return call


def test_an_interrupt_counts_the_epochs_it_saved(tmp_path, capsys, monkeypatch):
    """"interrupted after 2685 epochs" was said when 2684 were saved."""
    out = tmp_path / "m.npz"
    monkeypatch.setattr(_Progress, "__call__", _interrupt_at(7, KeyboardInterrupt))
    status, _, err = _main(capsys, [*TRAIN, "--epochs", "50", "--out", str(out)])
    assert status == 130
    assert "interrupted after 6 complete epochs" in err
    assert f"saved the last complete epoch's model to {out} (epoch 6)" in err
    assert io.read_metadata(out)["n_iter"] == 6


def test_an_error_mid_training_keeps_the_epochs_already_trained(tmp_path, capsys,
                                                                monkeypatch):
    """``--power-t 100`` crashed mid-training and lost the epochs done; any error now keeps them."""
    out = tmp_path / "m.npz"
    monkeypatch.setattr(_Progress, "__call__",
                        _interrupt_at(5, OverflowError(34, "Numerical result out of range")))
    with pytest.raises(OverflowError):
        main([*TRAIN, "--epochs", "50", "--out", str(out)])
    err = capsys.readouterr().err
    assert "stopped by an error after 4 complete epochs" in err
    metadata = io.read_metadata(out)
    assert metadata["n_iter"] == 4 and metadata["extra"]["interrupted"] is True
    monkeypatch.undo()
    # The epochs kept resume exactly: 4 + 3 epochs equal 7 in one run.
    resumed, whole = tmp_path / "resumed.npz", tmp_path / "whole.npz"
    assert _main(capsys, ["train", "--resume", str(out), "--epochs", "3", "--quiet",
                          "--out", str(resumed)])[0] == 0
    assert _main(capsys, [*TRAIN, "--epochs", "7", "--out", str(whole)])[0] == 0
    for a, b in zip(io.load(resumed).regressor_.coefs_, io.load(whole).regressor_.coefs_):
        np.testing.assert_array_equal(a, b)


def test_a_diverged_run_saves_nothing(tmp_path, capsys, monkeypatch):
    from gpumlp.training import TrainingDivergedError

    out = tmp_path / "m.npz"
    monkeypatch.setattr(_Progress, "__call__",
                        _interrupt_at(3, TrainingDivergedError("the loss became inf")))
    status, _, err = _main(capsys, [*TRAIN, "--epochs", "50", "--out", str(out)])
    assert status == 1 and "the loss became inf" in err and not out.exists()


def test_samples_with_data_is_an_error(tmp_path, capsys):
    data = _csv(tmp_path)
    status, _, err = _main(capsys, ["train", "--data", str(data), "--samples", "10"])
    assert status == 2 and "--samples sets the size of the embedded dataset" in err


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5"])
def test_a_bad_seed_names_the_flag(capsys, seed):
    status, _, err = _main(capsys, ["train", "--seed", seed])
    assert status == 2 and "argument --seed: " in err and repr(seed) in err


def test_a_missing_resume_file_is_named_by_its_option(tmp_path, capsys):
    status, _, err = _main(capsys, ["train", "--resume", str(tmp_path / "nope.npz")])
    assert status == 2 and f"--resume {tmp_path / 'nope.npz'}: no such model file" in err
    assert "--model" not in err


@pytest.mark.parametrize("text, value", [
    ("", None), ("1", True), ("on", True), (" Yes ", True), ("TRUE", True),
    ("0", False), ("off", False), ("No", False), ("false", False),
])
def test_a_switch_reads_the_usual_words(monkeypatch, text, value):
    from gpumlp.fastpath import _switch

    monkeypatch.setenv("GPUMLP_FASTPATH", text)
    for default in (True, False):
        assert _switch("GPUMLP_FASTPATH", default) is (default if value is None else value)


@pytest.mark.parametrize("variable, text", [("GPUMLP_FASTPATH", "offf"),
                                            ("GPUMLP_CUDA_GRAPH", "maybe")])
def test_an_unknown_switch_value_is_an_error_naming_the_variable(variable, text):
    """``GPUMLP_FASTPATH=off`` and ``GPUMLP_CUDA_GRAPH=on`` were silently ignored."""
    result = subprocess.run(
        [sys.executable, "-m", "gpumlp", "train", "--samples", "100", "--epochs", "1",
         "--quiet", "--device", "cpu"], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, **{variable: text}))
    assert result.returncode == 2
    assert (f"The environment variable {variable}={text!r} is not understood; set it to "
            f"one of 1, true, yes, on (on) or 0, false, no, off (off)") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_fastpath_off_turns_the_fast_paths_off():
    code = ("from gpumlp import fastpath; "
            "print(fastpath.is_enabled(), fastpath.cuda_graph_enabled())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, GPUMLP_FASTPATH="off",
                                                  GPUMLP_CUDA_GRAPH="on"))
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_resume_of_a_dask_run_says_dask(tmp_path, capsys):
    """A `train --out` file from Dask data keeps its split record but no settings
    or data digest (the data was never in memory): --resume refused it with advice
    to resume "a file written by gpumlp train --out", which it was (adversarial
    round 16). The refusal names Dask."""
    from gpumlp import MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    model = MLPRegressor((3,), solver="adam", max_iter=2, random_state=0).fit(X, X[:, 0])
    path = tmp_path / "dask_run.npz"
    io.save(model, path, extra={"source": "pq", "target": None, "test_size": 0.2,
                                "split_seed": 0, "samples": None, "drop": []})
    status, _, err = _main(capsys, ["train", "--resume", str(path), "--epochs", "1",
                                    "--quiet", "--out", str(tmp_path / "next.npz")])
    assert status == 2 and "trained on Dask" in err, err
    assert not (tmp_path / "next.npz").exists()


@pytest.mark.parametrize("header", [["b", "a", "c", "y"], ["a", "b", "c", "z"]])
def test_resume_refuses_the_same_numbers_under_other_names(tmp_path, capsys, header):
    """--resume took a CSV whose header swapped two names (same numbers, so the same
    digest) and kept the run's names: predict and validate then read those columns
    by the other names (adversarial round 18)."""
    rng = np.random.RandomState(0)
    table = np.c_[rng.randn(60, 3), rng.randn(60)]
    data, other = tmp_path / "d.csv", tmp_path / "other.csv"
    np.savetxt(data, table, delimiter=",", header="a,b,c,y", comments="")
    np.savetxt(other, table, delimiter=",", header=",".join(header), comments="")
    model = tmp_path / "p.npz"
    assert _main(capsys, ["train", "--data", str(data), "--hidden", "3", "--epochs", "3",
                          "--quiet", "--device", "cpu", "--out", str(model)])[0] == 0
    before = model.read_bytes()
    status, _, err = _main(capsys, ["train", "--resume", str(model), "--data", str(other),
                                    "--epochs", "1", "--quiet", "--out",
                                    str(tmp_path / "c.npz")])
    assert status == 2 and "pass the original data" in err, err
    assert model.read_bytes() == before and not (tmp_path / "c.npz").exists()
    assert _main(capsys, ["train", "--resume", str(model), "--data", str(data), "--epochs",
                          "1", "--quiet", "--out", str(tmp_path / "c.npz")])[0] == 0


def test_a_figure_that_is_not_finite_is_null_in_the_json_report():
    """docs/cli.md: JSON has no infinity; a test MSE that overflowed is null there
    (adversarial round 18 saw `inf` printed and `null` written, undocumented)."""
    import json

    from gpumlp.cli import _plain_json

    report = {"test": {"mse": float("inf"), "r2": float("nan")}, "epochs": np.int64(3)}
    text = json.dumps(_plain_json(report), allow_nan=False)
    assert json.loads(text) == {"test": {"mse": None, "r2": None}, "epochs": 3}
