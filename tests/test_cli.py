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
    assert "epochs: 7 (stopped at --epochs)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--device", "npu"], "Unknown device 'npu'"),
    (["--hidden", "a,b"], "--hidden takes comma-separated widths"),
    (["--lr", "-1"], "argument --lr: must be a number > 0, got '-1'"),
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
