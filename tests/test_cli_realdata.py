"""``gpumlp train`` on data as users have it (issue 21): the report, the rates, the words."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "gpumlp", *args], capture_output=True,
                            text=True, env=dict(os.environ, GPUMLP_DEVICE="cpu"), timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _printed(out, name):
    match = re.search(rf"{name}\s+MSE\s+(\S+)\s+R\^2\s+(\S+)", out)
    return float(match.group(1)), float(match.group(2))


def test_train_json_report_matches_what_is_printed(tmp_path):
    report = tmp_path / "report.json"
    out = run("train", "--samples", "300", "--hidden", "8", "--epochs", "30", "--quiet",
              "--json", str(report)).stdout
    data = json.loads(report.read_text())
    assert data["command"] == "train" and data["epochs"] == 30
    assert data["converged"] is False and "not converged" in data["stopped"]
    assert "(stopped at --epochs, not converged)" in out
    for part in ("train", "test"):
        mse, r2 = _printed(out, part)
        assert data[part]["mse"] == pytest.approx(mse, rel=1e-5)
        assert data[part]["r2"] == pytest.approx(r2, abs=1e-4)
    assert data["settings"]["hidden_layer_sizes"] == [8]
    assert data["test"]["rows"] == 60 and data["train"]["rows"] == 240


def test_train_json_is_an_output_like_the_others(tmp_path):
    data = tmp_path / "d.csv"
    np.savetxt(data, np.random.default_rng(0).normal(size=(20, 3)), delimiter=",",
               header="a,b,y", comments="")
    result = run("train", "--data", str(data), "--json", str(data), check=False)
    assert result.returncode == 2 and "--json" in result.stderr
    assert data.read_text().startswith("a,b,y")   # not clobbered


@pytest.mark.parametrize("solver, rate", [("adam", 0.01), ("sgd", 0.01)])
def test_sgd_and_adam_take_the_estimators_rate(tmp_path, solver, rate):
    report = tmp_path / "r.json"
    run("train", "--samples", "200", "--hidden", "4", "--epochs", "3", "--solver", solver,
        "--quiet", "--json", str(report))
    data = json.loads(report.read_text())
    assert data["settings"]["learning_rate_init"] == "auto"
    assert data["learning_rate"] == rate


def test_the_cli_trains_what_the_estimator_trains(tmp_path):
    """``gpumlp train`` with its defaults is StandardizedRegressor() on the same split."""
    from gpumlp import StandardizedRegressor
    from gpumlp.metrics import r2_score
    from gpumlp.scaling import default_regressor
    from gpumlp.splitting import train_test_split

    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3)) * [1.0, 50.0, 0.01] + [0.0, 1000.0, 5.0]
    y = 20.0 * np.sin(X[:, 0]) + 0.1 * X[:, 1] + 0.3 * rng.normal(size=300)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="",
               fmt="%.17g")
    report = tmp_path / "r.json"
    run("train", "--data", str(data), "--dtype", "float64", "--quiet", "--json", str(report))
    cli = json.loads(report.read_text())
    X_train, X_test, y_train, y_test = train_test_split(X, y, 0.2, 0)
    model = StandardizedRegressor(default_regressor().set_params(random_state=0,
                                                                 dtype="float64"))
    model.fit(X_train, y_train)
    ours = float(r2_score(y_test, model.predict(X_test)))
    # The same model from the same data, split and seed: equal but for the CSV's
    # round trip (17 digits) and the order of float64 sums.
    assert cli["test"]["r2"] == pytest.approx(ours, abs=1e-9)
    assert cli["epochs"] == model.regressor_.n_iter_
