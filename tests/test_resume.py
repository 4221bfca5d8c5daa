"""Checkpoints and exact resume (issue 13, item 21): in Python and on the command line.

A model file carries the solver's state, the batch-order generator and the
stopping rule's bookkeeping, so that training continued after a load is the
training that would have run had the process not stopped: bitwise, on NumPy.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from test_cli import run

from gpumlp import MLPRegressor, io
from gpumlp.cli import _Progress, main
from gpumlp.datasets import make_friedman1
from gpumlp.solvers import AdamState, map_state, state_from_arrays, state_to_arrays

rng = np.random.default_rng(2)
X = rng.normal(size=(240, 4))
Y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + np.sin(X[:, 0])

SOLVERS = {
    "adam": {"solver": "adam", "batch_size": 32, "learning_rate_init": 0.01},
    "nesterov": {"solver": "sgd", "batch_size": 50, "momentum": 0.9},
    "heavy-ball": {"solver": "sgd", "batch_size": 50, "nesterovs_momentum": False},
    "gd": {"solver": "gd"},
}


def _net(config, dtype="float64", **more):
    settings = {"random_state": 0, "device": "cpu", "dtype": dtype, "tol": 0.0,
                "n_iter_no_change": 10**6, **SOLVERS[config], **more}
    return MLPRegressor((8, 3), "tanh", **settings)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("config", sorted(SOLVERS))
def test_partial_fit_after_load_continues_as_if_the_process_had_not_stopped(
        tmp_path, config, dtype):
    k, m = 4, 3
    model = _quiet(_net(config, dtype, max_iter=k).fit, X, Y)
    io.save(model, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz").set_params(device="cpu")
    for _ in range(m):
        model.partial_fit(X, Y)
        loaded.partial_fit(X, Y)
    for a, b in zip(model.coefs_ + model.intercepts_, loaded.coefs_ + loaded.intercepts_):
        np.testing.assert_array_equal(a, b)
    assert loaded.loss_curve_ == model.loss_curve_ and len(loaded.loss_curve_) == k + m


@pytest.mark.parametrize("config", sorted(SOLVERS))
def test_fit_save_load_partial_fit_equals_one_uninterrupted_fit(tmp_path, config):
    """The issue's wording: fit k epochs, save, load, partial_fit m times == k + m in one go."""
    k, m = 5, 4
    io.save(_quiet(_net(config, max_iter=k).fit, X, Y), tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz").set_params(device="cpu")
    for _ in range(m):
        loaded.partial_fit(X, Y)
    whole = _quiet(_net(config, max_iter=k + m).fit, X, Y)
    np.testing.assert_allclose(loaded.predict(X), whole.predict(X), rtol=1e-12, atol=1e-12)
    assert loaded.loss_curve_ == whole.loss_curve_


def test_a_file_without_training_state_loads_and_partial_fit_starts_anew(tmp_path):
    model = _quiet(_net("adam", max_iter=4).fit, X, Y)
    io.save(model, tmp_path / "with.npz")
    io.save(model, tmp_path / "without.npz", training_state=False)
    assert "training" not in io.read_metadata(tmp_path / "without.npz")
    assert "training" in io.read_metadata(tmp_path / "with.npz")
    fresh = io.load(tmp_path / "without.npz").set_params(device="cpu").partial_fit(X, Y)
    exact = io.load(tmp_path / "with.npz").set_params(device="cpu").partial_fit(X, Y)
    model.partial_fit(X, Y)
    np.testing.assert_array_equal(exact.coefs_[0], model.coefs_[0])
    assert not np.array_equal(fresh.coefs_[0], model.coefs_[0])
    assert len(fresh.loss_curve_) == 1 and len(exact.loss_curve_) == 5


def test_a_generator_random_state_stays_the_batch_order_generator(tmp_path):
    """With a Generator random_state, fit draws from it; a loaded model must too."""
    net = _quiet(_net("adam", max_iter=2, random_state=np.random.default_rng(9)).fit, X, Y)
    io.save(net, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz").set_params(device="cpu")
    assert loaded._rng is loaded.random_state
    for model in (net, loaded):
        model.partial_fit(X, Y)
    assert loaded.random_state.random() == net.random_state.random()


# ------------------------------------------------- state values, generically
@dataclasses.dataclass(frozen=True)
class _Schedule:
    step: int
    best: float
    patience_left: int


@dataclasses.dataclass(frozen=True)
class _LBFGSLike:
    history: list
    direction: tuple
    schedule: _Schedule
    last: object = None


def _lbfgs_like(n_pairs):
    params = [np.arange(6.0).reshape(2, 3), np.ones(3)]
    history = [(p * i, p + i) for i in range(n_pairs) for p in params]
    return _LBFGSLike(history, tuple(p * 2 for p in params), _Schedule(7, 0.25, 3))


def test_a_new_dataclass_state_round_trips_through_arrays_and_json():
    import json

    state = _lbfgs_like(3)
    arrays, description = state_to_arrays(state)
    json.dumps(description)  # plain JSON
    assert all(isinstance(a, np.ndarray) for a in arrays.values()) and len(arrays) == 14
    template = _lbfgs_like(0)  # an empty history: any length
    back = state_from_arrays(description, arrays, template)
    assert type(back) is _LBFGSLike and back.schedule == state.schedule
    assert isinstance(back.direction, tuple) and back.last is None
    for a, b in zip(*(map_state(s, lambda a: [a]).history for s in (back, state))):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    moved = map_state(state, lambda a: a.astype(np.float32))
    assert moved.schedule == state.schedule and moved.direction[0].dtype == np.float32


def _adam():
    params = [np.ones((2, 3)), np.ones(3)]
    return AdamState(3, [p * 0.5 for p in params], [p * 0.25 for p in params])


def _edit(description, path, value):
    node = description
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return description


@pytest.mark.parametrize("damage, message", [
    (lambda d, a: (_edit(d, ["class"], "Adam"), a), "holds a Adam where this solver keeps"),
    (lambda d, a: (_edit(d, ["fields", "t", "value"], -1), a), "count is negative"),
    (lambda d, a: (_edit(d, ["fields", "t", "type"], "float"), a), "holds a float"),
    (lambda d, a: (d, {**a, "first_0": np.ones((3, 2))}), "'first_0' has shape (3, 2)"),
    (lambda d, a: (d, {**a, "first_0": np.ones((2, 3), np.float32)}), "dtype float32"),
    (lambda d, a: (d, {k: v for k, v in a.items() if k != "second_1"}),
     "array 'second_1' that is not there"),
    (lambda d, a: (d, {**a, "spare": np.ones(3)}), "spare belong nowhere"),
    (lambda d, a: (_edit(d, ["fields", "first", "items"], d["fields"]["first"]["items"][:1]),
                   {k: v for k, v in a.items() if k != "first_1"}), "has 1 items"),
    (lambda d, a: (_edit(d, ["fields", "second", "items", 1, "name"], "second_0"), a),
     "names the array 'second_0' twice"),
    (lambda d, a: (_edit(d, ["fields", "first", "type"], "tuple"), a),
     "holds a tuple where this solver keeps list"),
    (lambda d, a: (_edit(d, ["type"], "pickle"), a), "unknown state node type"),
])
def test_a_state_unlike_the_solvers_is_refused(damage, message):
    like = _adam()
    description, arrays = damage(*reversed(state_to_arrays(like)))
    with pytest.raises(ValueError) as caught:
        state_from_arrays(description, arrays, like)
    assert message in str(caught.value)


def test_an_unchecked_state_class_must_be_a_solver_state():
    arrays, description = state_to_arrays(_adam())
    assert isinstance(state_from_arrays(description, arrays), AdamState)
    for name in ("Adam", "Solver", "Network", "os"):
        with pytest.raises(ValueError, match="unknown solver-state class"):
            state_from_arrays({**description, "class": name}, arrays)


# ---------------------------------------------------------- command line
TRAIN = ["train", "--device", "cpu", "--dtype", "float64", "--solver", "adam",
         "--batch-size", "64", "--lr", "0.01", "--tol", "0", "--samples", "500",
         "--hidden", "8", "--quiet"]


def _predictions(path):
    model = io.load(path)
    model.regressor_.set_params(device="cpu")
    X_all, _ = make_friedman1(500, random_state=0)
    # Epochs in all: n_iter_ counts only the last call's (scikit-learn's meaning, issue 12).
    return model.predict(X_all), len(model.regressor_.loss_curve_)


# With --early-stopping the model is the best epoch's weights; the resume goes on
# from the last epoch's, on the same validation rows (before: from the best, on
# rows drawn anew, issue 20).
@pytest.mark.parametrize("more", [[], ["--early-stopping", "--n-iter-no-change", "100"]])
def test_twenty_epochs_then_a_resume_of_twenty_equal_forty_in_one_run(tmp_path, more):
    first, resumed, whole = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    run(*TRAIN, *more, "--epochs", "20", "--out", str(first), check=True)
    result = run("train", "--resume", str(first), "--epochs", "20", "--out", str(resumed),
                 "--quiet", check=True)
    assert f"resuming {first} after epoch 20, for 20 more" in result.stdout
    assert "epochs: 40 (stopped at --epochs, not converged)" in result.stdout
    run(*TRAIN, *more, "--epochs", "40", "--out", str(whole), check=True)
    (y_resumed, n_resumed), (y_whole, n_whole) = _predictions(resumed), _predictions(whole)
    assert n_resumed == n_whole == 40
    np.testing.assert_allclose(y_resumed, y_whole, rtol=1e-12, atol=1e-12)
    assert _predictions(first)[1] == 20  # --out given: the input model is kept


def _in_process(capsys, argv):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_resume_without_out_continues_in_the_same_file(tmp_path, capsys):
    model = tmp_path / "run.npz"
    assert _in_process(capsys, [*TRAIN, "--epochs", "3", "--out", str(model)])[0] == 0
    status, out, _ = _in_process(capsys, ["train", "--resume", str(model), "--epochs", "2",
                                          "--quiet"])
    assert status == 0 and f"saved model to {model}" in out
    # 3 + 2 epochs in all (n_iter counts the last call's, issue 12).
    assert len(io.read_metadata(model)["loss_curve"]) == 5
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp")] == []


@pytest.mark.parametrize("more", [[], ["--early-stopping", "--n-iter-no-change", "100"]])
def test_ctrl_c_saves_a_model_that_resumes_exactly(tmp_path, capsys, monkeypatch, more):
    stopped, resumed, whole = (tmp_path / f"{n}.npz" for n in ("stopped", "resumed", "whole"))
    progress = _Progress.__call__

    def interrupt_at_epoch_7(self, epoch, loss, validation_loss):
        if epoch == 7:
            raise KeyboardInterrupt
        progress(self, epoch, loss, validation_loss)

    with monkeypatch.context() as patch:
        patch.setattr(_Progress, "__call__", interrupt_at_epoch_7)
        status, _, err = _in_process(capsys, [*TRAIN, *more, "--epochs", "100", "--out",
                                              str(stopped)])
    assert status == 130 and "saved the last complete epoch's model" in err
    assert io.read_metadata(stopped)["n_iter"] == 6
    assert _in_process(capsys, ["train", "--resume", str(stopped), "--epochs", "4",
                                "--out", str(resumed), "--quiet"])[0] == 0
    assert _in_process(capsys, [*TRAIN, *more, "--epochs", "10", "--out", str(whole)])[0] == 0
    np.testing.assert_array_equal(_predictions(resumed)[0], _predictions(whole)[0])


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")
def test_a_run_killed_with_sigkill_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    checkpoint = tmp_path / "run.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "gpumlp", *TRAIN, "--epochs", "1000000",
         "--checkpoint-every", "3", "--out", str(checkpoint)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        time.sleep(0.3)  # let it write a few more, so the kill may land mid-write
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    metadata = io.read_metadata(checkpoint)
    epochs = metadata["n_iter"]
    assert epochs > 0 and epochs % 3 == 0 and metadata["extra"]["checkpoint"] is True
    resumed, whole = tmp_path / "resumed.npz", tmp_path / "whole.npz"
    run("train", "--resume", str(checkpoint), "--epochs", "5", "--out", str(resumed),
        "--quiet", check=True)
    run(*TRAIN, "--epochs", str(epochs + 5), "--out", str(whole), check=True)
    (y_resumed, n), (y_whole, _) = _predictions(resumed), _predictions(whole)
    assert n == epochs + 5
    np.testing.assert_allclose(y_resumed, y_whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make_argv, message", [
    (lambda m, t: ["--resume", m, "--hidden", "16"],
     "--hidden 16 differs from the resumed run's 8; --resume continues a run with "
     "its own settings (leave --hidden out)"),
    (lambda m, t: ["--resume", m, "--lr", "0.5"], "--lr 0.5 differs from the resumed run's 0.01"),
    (lambda m, t: ["--resume", m, "--samples", "600"], "--samples 600 differs"),
    (lambda m, t: ["--resume", m, "--plot", m, "--out", str(t / "new.npz")],
     "--plot {m} is the same file as --resume {m}"),
    (lambda m, t: ["--resume", str(t / "bare.npz")], "holds no run to resume"),
    (lambda m, t: ["--resume", str(t / "other-data.npz")],
     "is not the data the saved run trained on"),
    (lambda m, t: ["--checkpoint-every", "5"], "--checkpoint-every needs --out"),
    # --resume refuses lbfgs files, so their checkpoints would serve nothing (adversary 9).
    (lambda m, t: ["--solver", "lbfgs", "--checkpoint-every", "5", "--out", str(t / "l.npz")],
     "--checkpoint-every has no use with --solver lbfgs"),
    (lambda m, t: ["--checkpoint-every", "0", "--out", m],
     "argument --checkpoint-every: must be an integer >= 1"),
    (lambda m, t: ["--resume", str(t / "missing.npz")], "no such model file"),
])
def test_resume_and_checkpoint_mistakes_are_one_line_errors(tmp_path, capsys, make_argv,
                                                            message):
    model = tmp_path / "m.npz"
    assert _in_process(capsys, [*TRAIN, "--epochs", "2", "--out", str(model)])[0] == 0
    bare = _quiet(_net("adam", max_iter=2).fit, X, Y)
    io.save(bare, tmp_path / "bare.npz")
    metadata = io.read_metadata(model)
    other = io.load(model)
    io.save(other, tmp_path / "other-data.npz", feature_names=metadata["feature_names"],
            target_names=metadata["target_names"],
            extra={**metadata["extra"], "data_sha256": "0" * 64})
    before = model.read_bytes()
    try:
        status = main(["train", "--quiet", *make_argv(str(model), tmp_path)])
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert message.format(m=model) in err
    assert model.read_bytes() == before


def test_a_resumed_run_draws_its_loss_plot(tmp_path):
    # Before: every resume with --plot failed after writing the model, the
    # whole loss curve plotted against this call's held-out losses
    # (adversarial round 6).
    pytest.importorskip("matplotlib")
    from gpumlp.cli import main

    first, second, plot = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "loss.png"
    common = ["--device", "cpu", "--quiet"]
    assert main(["train", *common, "--samples", "200", "--epochs", "5", "--solver", "gd",
                 "--lr", "0.1", "--out", str(first)]) == 0
    assert main(["train", *common, "--resume", str(first), "--epochs", "2", "--out",
                 str(second), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_a_resumed_run_reports_how_it_ended_as_the_run_in_one_call(tmp_path, capsys):
    """20 epochs and a resume of 20 are bit for bit the run of 40, and must say so: the
    resumed report judged "the training loss rose" over its own epochs 21-30 (1.0835 to
    1.0976) where the whole run fell from 1.7589, and called it "not converged", with a
    LossIncreasedWarning, where the run in one call said "converged" (adversarial round
    10, #682)."""
    rows = np.random.default_rng(8)
    table = rows.normal(size=(150, 3))
    target = table @ [1, -2, 0.5] + 0.1 * rows.normal(size=150)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.c_[table, target], delimiter=",", header="a,b,c,y", comments="")
    common = ["train", "--data", str(data), "--hidden", "4", "--device", "cpu", "--quiet",
              "--solver", "sgd", "--learning-rate", "adaptive", "--tol", "0.01",
              "--n-iter-no-change", "2"]
    reports = {}
    assert main([*common, "--epochs", "40", "--out", str(tmp_path / "straight.npz"),
                 "--json", str(tmp_path / "straight.json")]) == 0
    assert main([*common, "--epochs", "20", "--out", str(tmp_path / "half.npz")]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "half.npz"), "--data", str(data),
                 "--epochs", "20", "--quiet", "--out", str(tmp_path / "resumed.npz"),
                 "--json", str(tmp_path / "resumed.json")]) == 0
    assert "training loss rose" not in capsys.readouterr().err
    for name in ("straight", "resumed"):
        report = json.loads((tmp_path / f"{name}.json").read_text())
        reports[name] = (report["epochs"], report["stopped"], report["converged"])
    curve = io.load(tmp_path / "resumed.npz").regressor_.loss_curve_
    assert curve[-1] < curve[0] and curve[-1] > 1.01 * curve[20]   # the case: rose late
    assert reports["resumed"] == reports["straight"]


def test_a_resume_takes_an_option_in_another_spelling_of_the_saved_value(tmp_path, capsys):
    """--activation logistic is the sigmoid; a resume refused it as differing from the
    saved sigmoid run (adversarial round 11, #585)."""
    model = tmp_path / "m.npz"
    assert _in_process(capsys, [*TRAIN, "--epochs", "2", "--activation", "sigmoid",
                                "--out", str(model)])[0] == 0
    status, _, err = _in_process(capsys, ["train", "--resume", str(model), "--epochs", "1",
                                          "--activation", "logistic", "--quiet"])
    assert status == 0, err
    status, _, err = _in_process(capsys, ["train", "--resume", str(model), "--epochs", "1",
                                          "--activation", "tanh", "--quiet"])
    assert status == 2 and "--activation tanh differs from the resumed run's sigmoid" in err
