"""The CLI reaches the estimator's parameters: each option lands in the saved model."""

import numpy as np
import pytest

from gpumlp import io
from gpumlp.cli import main


@pytest.fixture
def counts(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = rng.poisson(np.exp(0.5 * X[:, 0] + 0.3))
    path = tmp_path / "counts.npy"
    np.save(path, np.column_stack([X, y]))
    return path


@pytest.mark.parametrize("options, params", [
    (["--solver", "lbfgs", "--max-fun", "300"], {"solver": "lbfgs", "max_fun": 300}),
    (["--solver", "sgd", "--learning-rate", "invscaling", "--power-t", "0.25", "--lr", "0.05"],
     {"solver": "sgd", "learning_rate": "invscaling", "power_t": 0.25,
      "learning_rate_init": 0.05}),
    (["--loss", "poisson", "--alpha", "0.01"], {"loss": "poisson", "alpha": 0.01}),
    (["--no-nesterov", "--momentum", "0.5", "--solver", "sgd"],
     {"nesterovs_momentum": False, "momentum": 0.5}),
])
def test_options_reach_the_estimator(counts, tmp_path, capsys, options, params):
    out = tmp_path / "m.npz"
    status = main(["train", "--data", str(counts), "--epochs", "20", "--quiet",
                   "--out", str(out), *options])
    assert status == 0, capsys.readouterr().err
    model = io.load(out)
    saved = model.regressor_.get_params()
    for key, value in params.items():
        assert saved[key] == value, key


def test_poisson_from_the_cli_predicts_non_negative_counts(counts, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(counts), "--loss", "poisson", "--solver", "lbfgs",
                 "--epochs", "100", "--quiet", "--out", str(out)]) == 0
    report = capsys.readouterr().out
    assert "lbfgs takes its steps by a line search" in report
    model = io.load(out)
    X = np.load(counts)[:, :-1]
    y_pred = model.predict(X)
    assert np.all(y_pred > 0) and model.regressor_.out_activation_ == "exp"
    assert np.corrcoef(y_pred, np.exp(0.5 * X[:, 0]))[0, 1] > 0.6   # the trend, through noise


def test_an_lbfgs_run_is_not_resumed_but_says_why(counts, tmp_path, capsys):
    out = tmp_path / "m.npz"
    assert main(["train", "--data", str(counts), "--solver", "lbfgs", "--epochs", "10",
                 "--quiet", "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "5", "--quiet"]) == 2
    assert "lbfgs run cannot be resumed exactly" in capsys.readouterr().err
