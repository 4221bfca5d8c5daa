"""The command line, run as a user runs it: in a subprocess."""

import os
import re
import subprocess
import sys

import pytest


def run(*args, env=None, check=False):
    environment = dict(os.environ, **(env or {}))
    result = subprocess.run([sys.executable, "-m", "gpumlp", *args], capture_output=True,
                            text=True, env=environment, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_train_with_no_arguments_trains_the_default_network():
    result = run("train", env={"GPUMLP_DEVICE": "cpu"}, check=True)
    out = result.stdout
    assert "device: cpu" in out and "Friedman #1" in out
    assert re.search(r"epochs: \d+", out) and "wall time:" in out
    test_r2 = float(re.search(r"test\s+MSE\s+\S+\s+R\^2\s+(\S+)", out).group(1))
    assert test_r2 >= 0.9


def test_train_options_are_used():
    result = run("train", "--device", "cpu", "--hidden", "8,4", "--activation", "tanh",
                 "--solver", "adam", "--lr", "0.01", "--epochs", "7", "--dtype", "float64",
                 check=True)
    # Issue 21: a fit stopped by --epochs is said not to have converged.
    assert "epochs: 7 (stopped at --epochs, not converged)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--device", "npu"], "Unknown device 'npu'"),
    (["--hidden", "a,b"], "--hidden takes comma-separated widths"),
    (["--hidden", "4,,3"], "which has an empty width"),   # read as 4,3 (round 9)
    (["--lr", "-1"], "argument --lr: must be a number > 0, got '-1'"),
    (["--lr", "fast"], "argument --lr: takes auto or a number > 0, got 'fast'"),
    (["--momentum", "1.5"], "argument --momentum: must be a number >= 0 and <= 1, got '1.5'"),
    (["--beta2", "1"], "argument --beta2: must be a number >= 0 and < 1, got '1'"),
    (["--epsilon", "0"], "argument --epsilon: must be a number > 0, got '0'"),
    (["--alpha", "-0.1"], "argument --alpha: must be a number >= 0, got '-0.1'"),
    (["--validation-fraction", "1"], "argument --validation-fraction: must be a number > 0 "
                                     "and < 1, got '1'"),
    (["--n-iter-no-change", "0"], "argument --n-iter-no-change: must be an integer >= 1"),
])
def test_bad_arguments_give_one_line_errors(args, message):
    result = run("train", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_help_and_version():
    assert "train" in run("--help", check=True).stdout
    assert "--hidden" in run("train", "--help", check=True).stdout
    assert run("--version", check=True).stdout.startswith("gpumlp ")


def test_train_help_groups_the_options():
    out = run("train", "--help", check=True).stdout
    titles = ["network:", "solver:", "stopping:", "data:", "output:"]
    positions = [out.index(title) for title in titles]
    assert positions == sorted(positions)
    for title, option in zip(titles, ["--alpha", "--nesterov, --no-nesterov",
                                      "--early-stopping", "--test-size", "--out"]):
        section = out[out.index(title):]
        later = [out.index(t) for t in titles if out.index(t) > out.index(title)]
        section = out[out.index(title):min(later) if later else len(out)]
        assert option in section, (title, option)


def test_every_train_option_reaches_the_estimator():
    from gpumlp.cli import _estimator_params, build_parser

    args = build_parser().parse_args([
        "train", "--alpha", "0.01", "--solver", "sgd", "--lr", "0.02", "--momentum", "0.5",
        "--no-nesterov", "--beta1", "0.8", "--beta2", "0.99", "--epsilon", "1e-7",
        "--tol", "1e-3", "--n-iter-no-change", "4", "--early-stopping",
        "--validation-fraction", "0.25", "--epochs", "9", "--batch-size", "32",
        "--loss", "poisson", "--learning-rate", "adaptive", "--power-t", "0.3",
        "--max-fun", "99"])
    # The default width is StandardizedRegressor's regressor's (issue 21: 100, was 32).
    assert _estimator_params(args) == dict(
        hidden_layer_sizes=(100,), activation="sigmoid", alpha=0.01, solver="sgd",
        learning_rate_init=0.02, batch_size=32, momentum=0.5, nesterovs_momentum=False,
        beta_1=0.8, beta_2=0.99, epsilon=1e-7, max_iter=9, tol=1e-3, n_iter_no_change=4,
        early_stopping=True, validation_fraction=0.25, loss="poisson",
        learning_rate="adaptive", power_t=0.3, max_fun=99)
    defaults = {solver: _estimator_params(build_parser().parse_args(["train", "--solver",
                                                                     solver]))
                for solver in ("gd", "adam")}
    assert defaults["gd"]["learning_rate_init"] == "auto"
    # Issue 21: sgd and adam take the estimator's "auto" (0.01), no longer 0.1.
    assert defaults["adam"]["learning_rate_init"] == "auto"
    from gpumlp import MLPRegressor

    MLPRegressor(**defaults["gd"])  # every key is an estimator parameter


def test_early_stopping_holds_out_training_rows_and_leaves_the_test_rows_alone(
        tmp_path, monkeypatch, capsys):
    from gpumlp import cli
    from gpumlp.io import read_metadata
    from gpumlp.scaling import StandardizedRegressor

    seen = []
    original = StandardizedRegressor.fit

    def fit(self, X, y, **kwargs):
        seen.append((X.shape[0], kwargs.get("eval_set")))
        return original(self, X, y, **kwargs)

    monkeypatch.setattr(StandardizedRegressor, "fit", fit)
    out = tmp_path / "m.npz"
    args = ["train", "--device", "cpu", "--samples", "400", "--quiet", "--out", str(out),
            "--n-iter-no-change", "3", "--epochs", "400"]
    assert cli.main([*args, "--plot", str(tmp_path / "loss.png")]) == 0
    assert seen[-1][0] == 320 and seen[-1][1] is not None  # without: test rows as eval_set
    assert cli.main(args) == 0
    assert seen[-1] == (320, None)  # quiet and no plot: no held-out loss to show
    assert cli.main([*args, "--early-stopping", "--validation-fraction", "0.2"]) == 0
    assert seen[-1] == (320, None)  # the estimator splits its 320 training rows itself
    stdout = capsys.readouterr().out
    assert re.search(r"early stopping: best validation R\^2 \S+ on 0.2 of the training rows",
                     stdout)
    assert re.search(r"test\s+MSE", stdout)
    meta = read_metadata(out)
    assert len(meta["validation_loss_curve"]) == meta["n_iter"]
    assert meta["params"]["early_stopping"] is True


def test_train_reports_the_automatic_step_size():
    result = run("train", "--device", "cpu", "--samples", "300", "--epochs", "20",
                 "--solver", "gd", check=True)   # gd (issue 21: the default is now adam)
    assert re.search(r"learning rate: auto, \S+ at the start \(1.9 / the largest curvature\), "
                     r"\S+ at the end", result.stdout)


def test_the_plot_is_written_in_the_format_its_suffix_names(tmp_path, capsys, monkeypatch):
    # Before: PNG data whatever the name (loss.pdf, loss.svg), and a .txt
    # was accepted (adversarial round 5).
    pytest.importorskip("matplotlib")
    from gpumlp import cli

    starts = {"loss.png": b"\x89PNG", "loss.pdf": b"%PDF", "loss.svg": b"<?xml",
              "loss": b"\x89PNG"}
    for name, start in starts.items():
        assert cli.main(["train", "--device", "cpu", "--samples", "60", "--epochs", "2",
                         "--quiet", "--plot", str(tmp_path / name)]) == 0
        assert (tmp_path / name).read_bytes().startswith(start), name
    monkeypatch.setattr(cli, "_train_and_report", lambda *a: pytest.fail("training started"))
    assert cli.main(["train", "--device", "cpu", "--samples", "60", "--epochs", "2",
                     "--quiet", "--plot", str(tmp_path / "loss.txt")]) == 2
    assert ".txt is no image format matplotlib writes" in capsys.readouterr().err
    assert not (tmp_path / "loss.txt").exists()


def test_validate_runs_a_name_given_twice_once(capsys):
    """--dtypes float64,float64 ran and counted every check twice (adversarial round 12)."""
    from gpumlp.cli import main

    counts = []
    for backends, dtypes in (("numpy", "float64"), ("numpy,numpy", "float64, float64")):
        assert main(["validate", "--backends", backends, "--dtypes", dtypes,
                     "--configs", "gd"]) == 0
        counts.append(re.search(r"(\d+) passed, 0 failed", capsys.readouterr().out).group(1))
    assert counts[0] == counts[1]


def test_a_csv_with_cluster_is_refused_for_what_it_is(tmp_path, capsys):
    """It said "--target names a Parquet or CSV column; .npy parts keep ..." about a CSV
    (adversarial round 12)."""
    from gpumlp.cli import main

    data = tmp_path / "x.csv"
    data.write_text("a,b,t\n1,2,3\n2,3,4\n3,1,2\n4,4,4\n")
    assert main(["train", "--cluster", "local:1", "--data", str(data), "--target", "t",
                 "--epochs", "2", "--quiet"]) == 2
    assert "a CSV is read into memory, not by Dask workers" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_a_report_or_plot_over_a_model_file_is_refused(tmp_path, capsys, option):
    """`train --json m.npz` over an existing model replaced it with JSON (adversarial
    round 13: the user named the path, but never meant that)."""
    if option == "--plot":
        pytest.importorskip("matplotlib")
    from gpumlp.cli import main

    model = tmp_path / "m.npz"
    assert main(["train", "--samples", "80", "--epochs", "2", "--quiet",
                 "--out", str(model)]) == 0
    before = model.read_bytes()
    assert main(["train", "--samples", "80", "--epochs", "2", "--quiet",
                 option, str(model)]) == 2
    assert f"{option} {model} is a gpumlp model file" in capsys.readouterr().err
    assert model.read_bytes() == before
