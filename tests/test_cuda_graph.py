"""One CUDA graph per block of full-batch epochs (issue 10): the opt-in, the
dispatch and the trainer's use of it.

On a machine without a GPU, the trainer runs its blocks through the NumPy
model of the graph (:class:`gpumlp.fastpath.tiles.ModelBlocks`), and the
epoch-by-epoch fit it must equal takes the model's step as its fast path: so
the block logic (every epoch's parameters kept, the stopping rule exact, the
schedule's rates, validation, divergence) is checked here. On a GPU (the
``cupy`` backend, required by ``ci/gpu``), the graph itself.
"""

import functools
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, TrainingDivergedError, fastpath, training
from gpumlp.activations import get_activation
from gpumlp.agreement import TOLERANCES
from gpumlp.devices import to_numpy
from gpumlp.fastpath import cblocks, tiles
from gpumlp.fastpath.graph import GraphBlocks


@pytest.fixture
def model_graph(monkeypatch):
    """The graph's NumPy model on NumPy data, and the model's step as the fast path.

    Returns the list of ``select_blocks`` calls that gave a runner.
    """
    built = []

    def select_blocks(X, y, w, coefs, network, alpha):
        if not network.cuda_graph or w is not None:
            return None
        built.append(X.shape)
        return tiles.ModelBlocks(X, y, network.activation, alpha)

    def select_fast(X, w, network):
        return functools.partial(tiles.model_loss_and_grads, activation=network.activation)

    monkeypatch.setattr(training, "select_blocks", select_blocks)
    monkeypatch.setattr(training, "select_fast", select_fast)
    # A cached compiled step keeps the fast path it chose in an earlier test.
    training.compiled_step.cache_clear()
    yield built
    training.compiled_step.cache_clear()


def fit(X, y, graph, **params):
    params = {"hidden_layer_sizes": (8,), "device": "cpu", "random_state": 0,
              "solver": "gd", "learning_rate_init": 0.1, **params}
    with warnings.catch_warnings(), fastpath.with_cuda_graph(graph):
        warnings.simplefilter("ignore")
        return MLPRegressor(**params).fit(X, y)


def assert_same_fit(a, b):
    assert a.n_iter_ == b.n_iter_ and a.loss_curve_ == b.loss_curve_
    assert a.learning_rates_ == b.learning_rates_ and a.t_ == b.t_
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)


# ------------------------------------------------- the trainer, on the model
def test_a_graph_fit_that_stops_inside_a_block_equals_the_epoch_by_epoch_fit(
        sine_rows, model_graph, long_blocks, dtype):
    X, y = sine_rows
    params = dict(tol=1e-3, n_iter_no_change=5, max_iter=3000, dtype=dtype)
    graph = fit(X, y, True, **params)
    assert model_graph, "the graph was not used"
    n = graph.n_iter_
    assert 10 < n < 3000 and n % training.MAX_BLOCK != 0   # it stopped inside a block
    assert_same_fit(graph, fit(X, y, False, **params))


def test_with_a_penalty_the_weights_are_the_same_and_the_losses_within_rounding(
        sine_rows, model_graph, long_blocks):
    # The graph adds sum W**2 in its own order, so the reported loss may differ
    # in the last bits; the gradients, and so the weights, do not.
    X, y = sine_rows
    params = dict(alpha=0.5, tol=0.0, n_iter_no_change=10**6, max_iter=150, dtype="float64")
    graph, epochwise = fit(X, y, True, **params), fit(X, y, False, **params)
    assert model_graph and graph.n_iter_ == epochwise.n_iter_ == 150
    np.testing.assert_allclose(graph.loss_curve_, epochwise.loss_curve_, rtol=1e-13)
    for p, q in zip(graph.coefs_ + graph.intercepts_, epochwise.coefs_ + epochwise.intercepts_):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_schedules_and_early_stopping_go_through_the_graph_unchanged(sine_rows, model_graph,
                                                                     long_blocks, schedule):
    X, y = sine_rows
    params = dict(solver="sgd", momentum=0.0, batch_size=10_000, learning_rate=schedule,
                  learning_rate_init=0.3, power_t=0.2, early_stopping=True, tol=1e-4,
                  n_iter_no_change=4, max_iter=500, dtype="float64")
    graph = fit(X, y, True, **params)
    assert model_graph == [(270, 4)]          # the training rows, one runner for the fit
    assert graph._trainer._blocks is None     # let go after the fit
    epochwise = fit(X, y, False, **params)
    assert_same_fit(graph, epochwise)
    assert graph.validation_scores_ == epochwise.validation_scores_
    assert len(set(graph.learning_rates_)) > 1


def test_a_graph_fit_that_diverges_keeps_what_the_epoch_by_epoch_fit_keeps(sine_rows, model_graph,
                                                                          long_blocks):
    X, y = sine_rows
    # Diverges after tens of epochs, well inside a block (blocks end after
    # epochs 1, 3, 7, ..., 63, 127, ...).
    params = dict(learning_rate_init=0.4, activation="tanh", tol=0.0,
                  n_iter_no_change=10**6, max_iter=500, dtype="float32")
    kept = []
    for graph in (True, False):
        model = MLPRegressor((8,), device="cpu", random_state=0, solver="gd", **params)
        with warnings.catch_warnings(), fastpath.with_cuda_graph(graph), \
                pytest.raises(TrainingDivergedError):
            warnings.simplefilter("ignore")
            model.fit(X, y * 100)
        kept.append(model)
    assert model_graph and kept[0].n_iter_ > 10 and kept[0].n_iter_ + 1 not in (64, 128, 192)
    assert_same_fit(*kept)


def test_partial_fit_and_warm_start_through_the_graph(sine_rows, model_graph):
    X, y = sine_rows
    params = dict(tol=0.0, n_iter_no_change=10**6, max_iter=7, dtype="float64")
    models = []
    for graph in (True, False):
        model = MLPRegressor((8,), device="cpu", random_state=0, solver="gd",
                             learning_rate_init=0.1, warm_start=True, **params)
        with warnings.catch_warnings(), fastpath.with_cuda_graph(graph):
            warnings.simplefilter("ignore")
            model.fit(X, y)
            model.partial_fit(X, y)
            model.fit(X, y)
        models.append(model)
    assert model_graph
    assert models[0].loss_curve_ == models[1].loss_curve_ and models[0].t_ == 15 * len(X)
    for p, q in zip(models[0].coefs_, models[1].coefs_):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("params", [
    dict(),                                                       # not opted in
    dict(graph=True, learning_rate_init="auto"),                  # reads the host each step
    dict(graph=True, solver="sgd", momentum=0.9, batch_size=10**4),  # momentum
    dict(graph=True, solver="sgd", momentum=0.0, batch_size=50),  # minibatches
    dict(graph=True, solver="adam"),
    dict(graph=True, solver="lbfgs"),
], ids=["opted-out", "auto-rate", "momentum", "minibatch", "adam", "lbfgs"])
def test_the_graph_is_only_asked_for_plain_full_batch_descent_when_opted_in(sine_rows, monkeypatch,
                                                                            params):
    X, y = sine_rows

    def never(*args):
        raise AssertionError("select_blocks was asked")

    monkeypatch.setattr(training, "select_blocks", never)
    params = {"max_iter": 5, "tol": 0.0, **params}
    with cblocks.simd("none"):   # on NumPy the C blocks are its other client (test_cblocks)
        fit(X, y, params.pop("graph", False), **params)


def test_without_the_opt_in_nothing_changes(sine_rows, monkeypatch):
    X, y = sine_rows
    with cblocks.simd("none"):   # without the C blocks too (they are NumPy's runner)
        before = fit(X, y, False, max_iter=40, tol=0.0)
        monkeypatch.delattr(training, "select_blocks")   # the hook is not even looked up
        assert_same_fit(before, fit(X, y, False, max_iter=40, tol=0.0))


def test_a_graph_holds_the_trainers_longest_block():
    from gpumlp.fastpath import graph

    assert graph.MAX_EPOCHS == training.MAX_BLOCK


# ----------------------------------------------------- switch and dispatch
def test_the_opt_in_is_read_from_the_environment_once():
    code = ("from gpumlp import fastpath; import os; a = fastpath.cuda_graph_enabled(); "
            "os.environ['GPUMLP_CUDA_GRAPH'] = '0'; print(a, fastpath.cuda_graph_enabled())")
    for value, expected in (("1", "True True"), ("yes", "True True"), ("0", "False False"),
                            ("", "False False"), ("no", "False False")):
        env = dict(os.environ, GPUMLP_CUDA_GRAPH=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected, (value, out)
    env = {k: v for k, v in os.environ.items() if k != "GPUMLP_CUDA_GRAPH"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "False False"       # off by default


def test_the_opt_in_switch_and_the_estimator(sine_rows):
    X, y = sine_rows
    outside = fastpath.cuda_graph_enabled()     # True under ci/gpu's opted-in run
    with fastpath.with_cuda_graph():
        assert fastpath.cuda_graph_enabled()
        with fastpath.with_cuda_graph(False):
            assert not fastpath.cuda_graph_enabled()
        assert fastpath.cuda_graph_enabled()
        model = MLPRegressor((4,), max_iter=2, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
    assert fastpath.cuda_graph_enabled() is outside
    assert model._trainer.network.cuda_graph
    assert not fit(X, y, False, max_iter=2)._trainer.network.cuda_graph


def test_select_blocks_declines_what_it_cannot_serve():
    X, y = np.zeros((10, 3)), np.zeros((10, 1))
    ask = functools.partial(fastpath.select_blocks, X, y, 2, 4, "sigmoid", 0.0,
                            enabled=True, cuda_graph=True)
    # NumPy: never a graph (the C blocks, where built, are NumPy's runner).
    assert not isinstance(ask(), GraphBlocks)
    assert ask(enabled=False) is None
    with cblocks.simd("none"):
        assert ask() is None and ask(cuda_graph=False) is None
        with fastpath.with_cuda_graph():
            assert fastpath.select_blocks(X, y, 2, 4, "sigmoid", 0.0) is None


def test_the_cupy_step_takes_the_tile_kernels_only_when_opted_in_and_small(monkeypatch):
    from types import SimpleNamespace

    chosen = []
    cupy_module = fastpath.cupy
    for name in ("tile_loss_and_grads", "cupy_fused_loss_and_grads", "cupy_loss_and_grads"):
        target = tiles if name == "tile_loss_and_grads" else cupy_module
        monkeypatch.setattr(target, name, lambda *a, _n=name: chosen.append(_n))
    # The threshold and shared memory, without a GPU: the plan with 48 KiB.
    monkeypatch.setattr(tiles, "_shared_limit", lambda device_id: 48 * 1024)
    runtime = SimpleNamespace(getDevice=lambda: 0)
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(cuda=SimpleNamespace(
        runtime=runtime)))

    def step(n, h, tiled):
        X = SimpleNamespace(shape=(n, 8), dtype=np.dtype("float32"))
        y = SimpleNamespace(shape=(n, 1))
        coefs = [SimpleNamespace(shape=(8, h)), SimpleNamespace(shape=(h, 1))]
        fast = cupy_module.step_for(get_activation("sigmoid"), tiles=tiled)
        fast(X, y, coefs, [None, None])
        return chosen.pop()

    assert step(10_000, 64, True) == "tile_loss_and_grads"
    assert step(10_000, 64, False) == "cupy_loss_and_grads"
    assert step(tiles.MAX_ELEMENTS // 64 + 1, 64, True) == "cupy_loss_and_grads"
    assert step(1000, 2048, True) == "cupy_loss_and_grads"         # no room
    assert step(2_000_000, 64, True) == "cupy_fused_loss_and_grads"


# ------------------------------------------------------------- on a GPU
def _blocks_problem(device, dtype, activation, alpha, n=300, f=6, h=9, k=2):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, f)).astype(dtype)
    y = rng.standard_normal((n, k)).astype(dtype)
    params = [(rng.standard_normal(s) * 0.3).astype(dtype) for s in ((f, h), (h, k), (h,),
                                                                     (k,))]
    with device.context():
        on = (device.asarray(X), device.asarray(y), [device.asarray(p) for p in params])
        blocks = fastpath.select_blocks(on[0], on[1], 2, h, activation, alpha, enabled=True,
                                        cuda_graph=True)
    assert blocks is not None
    return (X, y, params), on, blocks


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_the_graph_computes_what_its_model_computes(cupy_device, dtype, activation, alpha):
    """Bit for bit for relu and identity (no transcendental function)."""
    (X, y, params), (_, _, on_device), blocks = _blocks_problem(cupy_device, dtype,
                                                                activation, alpha)
    rates = [0.05, 0.1, 0.02, 0.1, 0.07]
    with cupy_device.context():
        got = blocks.run(on_device, rates)
    want = tiles.ModelBlocks(X, y, activation, alpha).run(params, rates)
    for (p, loss, finite), (q, ref_loss, ref_finite) in zip(got, want):
        assert float(to_numpy(finite)) == float(ref_finite) == 1.0
        values = [(to_numpy(a), b) for a, b in zip([loss, *p], [ref_loss, *q])]
        if activation in ("relu", "identity"):
            for a, b in values:
                np.testing.assert_array_equal(a, b)
        else:
            for a, b in values:
                tol = TOLERANCES[("training", dtype)]
                assert np.linalg.norm(a - b) <= tol * np.linalg.norm(b)


def test_a_replay_of_k_epochs_equals_k_replays_of_one_and_repeats(cupy_device, dtype):
    _, (_, _, params), blocks = _blocks_problem(cupy_device, dtype, "sigmoid", 0.3)
    rates = [0.1] * 5
    with cupy_device.context():
        whole = blocks.run(params, rates)
        again = blocks.run(params, rates)
        single, start = [], params
        for rate in rates:
            single += blocks.run(start, [rate])
            start = single[-1][0]
    for runs in (again, single):
        for (p, loss, finite), (q, loss2, finite2) in zip(whole, runs):
            for a, b in zip([loss, finite, *p], [loss2, finite2, *q]):
                np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_a_graph_fit_on_the_gpu_equals_the_epoch_by_epoch_fits(cupy_device, sine_rows, long_blocks,
                                                               monkeypatch, precision):
    X, y = sine_rows
    params = dict(tol=1e-3, n_iter_no_change=5, max_iter=3000, dtype=precision,
                  device=cupy_device)
    served = []
    real = training.select_blocks
    monkeypatch.setattr(training, "select_blocks",
                        lambda *args: served.append(real(*args)) or served[-1])
    graph = fit(X, y, True, **params)
    n = graph.n_iter_
    assert 10 < n < 3000 and n % training.MAX_BLOCK != 0   # it stopped inside a block
    assert len(served) == 1 and served[0] is not None      # the graph served the fit
    assert graph._trainer._blocks is None                  # and was let go after it
    # (a) one epoch per replay: the same bits;
    monkeypatch.setattr(training, "MAX_BLOCK", 1)
    assert_same_fit(graph, fit(X, y, True, **params))
    # (b) epoch by epoch through the tile kernels' step (no graph): the same bits;
    monkeypatch.setattr(training, "select_blocks", lambda *args: None)
    assert_same_fit(graph, fit(X, y, True, **params))
    # (c) the generic kernels, for as many epochs: within the training tolerance.
    with fastpath.disabled():
        generic = fit(X, y, False, **{**params, "tol": 0.0, "n_iter_no_change": 10**6,
                                      "max_iter": n})
    assert generic.n_iter_ == n
    tol = TOLERANCES[("training", precision)]
    for p, q in zip(graph.coefs_ + graph.intercepts_, generic.coefs_ + generic.intercepts_):
        p, q = to_numpy(p), to_numpy(q)
        assert np.linalg.norm(p - q) <= tol * np.linalg.norm(q)
