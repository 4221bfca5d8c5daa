"""Whole blocks of epochs as one compiled JAX program (issue 10, item 4).

A JAX fit of plain full-batch gradient descent runs each block of the trainer
as one ``jax.jit`` program over the trainer's own step
(:mod:`gpumlp.fastpath.compiled`). It must equal, bit for bit, the same fit
run epoch by epoch through the per-step ``jax.jit`` (the fast paths turned off
with :func:`gpumlp.fastpath.disabled`, which on JAX turns off only this), in
float32 and float64: XLA computes the step alike inside the loop and alone.
Other backends never take this path.
"""

import pickle
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, TrainingDivergedError, fastpath, training
from gpumlp.devices import Device, read_floats
from gpumlp.fastpath import compiled

jax = pytest.importorskip("jax")

CASES = {
    "gd": dict(solver="gd", learning_rate_init=0.1, tol=1e-3, n_iter_no_change=5),
    "gd-penalty-weights": dict(solver="gd", learning_rate_init=0.1, alpha=0.3, tol=1e-3,
                               n_iter_no_change=5, weighted=True),
    "invscaling": dict(solver="sgd", momentum=0.0, batch_size=10_000, learning_rate_init=0.3,
                       learning_rate="invscaling", power_t=0.2, tol=1e-4,
                       n_iter_no_change=4),
    "adaptive-early-stopping": dict(solver="sgd", momentum=0.0, batch_size=10_000,
                                    learning_rate_init=0.3, learning_rate="adaptive",
                                    early_stopping=True, tol=1e-4, n_iter_no_change=4),
}


@pytest.fixture
def runs(monkeypatch):
    """The block lengths that :class:`CompiledBlocks` ran, in order."""
    seen, real = [], compiled.CompiledBlocks.run

    def run(self, params, rates):
        seen.append(len(rates))
        return real(self, params, rates)

    monkeypatch.setattr(compiled.CompiledBlocks, "run", run)
    return seen


def fit(X, y, compiled_blocks, *, weighted=False, backend="jax", **params):
    params = {"hidden_layer_sizes": (8,), "backend": backend, "device": "cpu",
              "random_state": 0, "max_iter": 3000, **params}
    weights = np.linspace(0.5, 1.5, len(X)) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if compiled_blocks:
            return MLPRegressor(**params).fit(X, y, sample_weight=weights)
        with fastpath.disabled():
            return MLPRegressor(**params).fit(X, y, sample_weight=weights)


def assert_same_fit(a, b):
    assert a.n_iter_ == b.n_iter_ and a.loss_curve_ == b.loss_curve_
    assert a.learning_rates_ == b.learning_rates_ and a.t_ == b.t_
    assert a.validation_scores_ == b.validation_scores_
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert p.dtype == q.dtype
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))


@pytest.mark.parametrize("case", list(CASES))
def test_a_compiled_block_fit_equals_the_per_step_fit_bit_for_bit(sine_rows, long_blocks, runs,
                                                                 dtype, case):
    X, y = sine_rows
    blocks = fit(X, y, True, dtype=dtype, **CASES[case])
    assert runs, "the compiled blocks did not run"
    if case != "adaptive-early-stopping":            # (its replays restart the blocks)
        assert 64 in runs                            # whole 64-epoch blocks ran
    n = blocks.n_iter_
    assert 10 < n < 3000 and n % training.MAX_BLOCK != 0   # it stopped inside a block
    del runs[:]
    assert_same_fit(blocks, fit(X, y, False, dtype=dtype, **CASES[case]))
    assert not runs                                  # the per-step fit took no block
    if case == "invscaling":
        assert len(set(blocks.learning_rates_)) > 1


def test_a_compiled_block_fit_that_diverges_keeps_what_the_per_step_fit_keeps(
        sine_rows, long_blocks, runs, dtype):
    X, y = sine_rows
    # Diverges after tens of epochs, inside a block (blocks end after epochs
    # 1, 3, 7, ..., 63, 127, ...).
    rate = {"float32": 0.4, "float64": 0.7}[dtype]   # float64 lasts longer
    params = dict(solver="gd", learning_rate_init=rate, activation="tanh", tol=0.0,
                  n_iter_no_change=10**6, max_iter=500, dtype=dtype)
    kept = []
    for compiled_blocks in (True, False):
        model = MLPRegressor((8,), backend="jax", device="cpu", random_state=0, **params)
        with warnings.catch_warnings(), pytest.raises(TrainingDivergedError):
            warnings.simplefilter("ignore")
            if compiled_blocks:
                model.fit(X, y * 100)
            else:
                with fastpath.disabled():
                    model.fit(X, y * 100)
        kept.append(model)
    assert runs and kept[0].n_iter_ > 10 and kept[0].n_iter_ + 1 not in (64, 128, 192, 256)
    assert_same_fit(*kept)
    assert isinstance(kept[0]._trainer.params, list)


@pytest.mark.parametrize("params", [
    dict(learning_rate_init="auto"),                         # reads the host each step
    dict(solver="sgd", momentum=0.9, batch_size=10**4),      # momentum
    dict(solver="sgd", momentum=0.0, batch_size=50),         # minibatches
    dict(solver="adam"),
    dict(solver="lbfgs"),
], ids=["auto-rate", "momentum", "minibatch", "adam", "lbfgs"])
def test_only_plain_full_batch_descent_compiles_blocks(sine_rows, runs, params):
    X, y = sine_rows
    fit(X, y, True, **{"solver": "gd", "max_iter": 5, "tol": 0.0, **params})
    assert not runs


def test_a_network_too_large_for_the_slots_keeps_the_epoch_loop(sine_rows, runs, monkeypatch,
                                                                long_blocks):
    X, y = sine_rows
    params = dict(solver="gd", learning_rate_init=0.1, max_iter=5, tol=0.0)
    monkeypatch.setattr(compiled, "MAX_SLOT_ELEMENTS", 64 * (4 * 8 + 8 + 8 + 1))
    fit(X, y, True, **params)                        # 8 hidden units: fits exactly
    assert runs == [1, 2, 2]
    fit(X, y, True, hidden_layer_sizes=(9,), **params)
    assert runs == [1, 2, 2]


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_other_backends_never_compile_blocks(sine_rows, monkeypatch, library):
    if library == "torch":
        pytest.importorskip("torch")
    X, y = sine_rows

    def never(*args):
        raise AssertionError("compiled_blocks was asked")

    monkeypatch.setattr(training, "compiled_blocks", never)
    model = fit(X, y, True, backend=library, solver="gd", learning_rate_init=0.1,
                max_iter=40, tol=0.0)
    assert model.n_iter_ == 40
    assert Device._backends[library].compile_blocks is Device.compile_blocks


def test_one_compilation_serves_every_block_length(sine_rows, long_blocks, runs, monkeypatch):
    X, y = sine_rows
    real, made = training.compiled_blocks, []
    real.cache_clear()   # a program traced by an earlier test must not count here
    monkeypatch.setattr(training, "compiled_blocks",
                        lambda *key: made.append(real(*key)) or made[-1])
    fit(X, y, True, solver="gd", learning_rate_init=0.1, max_iter=200, tol=0.0,
        dtype="float32")
    assert runs == [1, 2, 4, 8, 16, 32, 64, 64, 9]
    assert len({id(m) for m in made}) == 1 and made[0].jitted._cache_size() == 1


def test_a_block_holds_the_trainers_longest_block():
    assert compiled.MAX_EPOCHS == training.MAX_BLOCK


def test_epoch_params_are_taken_on_first_read_and_pickle_as_a_list():
    taken = []
    stacked = [np.arange(6.0).reshape(3, 2), np.arange(3.0)]

    def take(stacked, j):
        taken.append(j)
        return [s[j] for s in stacked]

    params = compiled.EpochParams(stacked, 1, take)
    assert len(params) == 2 and not taken
    np.testing.assert_array_equal(params[0], [2.0, 3.0])
    assert params[1:] == [1.0] and taken == [1]     # taken once
    again = pickle.loads(pickle.dumps(params))
    assert type(again) is list and again[1] == 1.0


def test_read_floats_takes_host_scalars_as_they_are():
    jnp = jax.numpy
    values = [np.float32(0.5), jnp.asarray(2.0), np.float64(1.25), jnp.asarray(3.0)]
    assert read_floats(*values) == [0.5, 2.0, 1.25, 3.0]
    assert read_floats(np.float32(1.5)) == [1.5]


def test_what_outlives_a_block_holds_neither_the_data_nor_the_block(sine_rows, runs):
    """Snapshots taken in a callback (the CLI's checkpoints) and the fitted trainer keep
    plain lists of parameters, and no block runner (which holds X, y and w)."""
    X, y = sine_rows
    snapshots = []
    model = MLPRegressor((8,), solver="gd", learning_rate_init=0.1, max_iter=40, tol=0.0,
                         backend="jax", device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y, callback=lambda *_: snapshots.append(model._snapshot()))
    assert runs, "the compiled blocks did not run"
    assert len(snapshots) == 40
    for snapshot in snapshots:
        assert type(snapshot._trainer.params) is list
        assert snapshot._trainer._blocks is None
    trainer = model._trainer
    assert type(trainer.params) is list and type(trainer._previous.params) is list
    assert trainer._blocks is None
    np.testing.assert_array_equal(np.asarray(snapshots[-1].coefs_[0]),
                                  np.asarray(model.coefs_[0]))


def test_one_program_serves_every_rate_and_schedule(sine_rows, runs):
    X, y = sine_rows
    training.compiled_blocks.cache_clear()
    for rate in (0.1, 0.05, 0.2):
        fit(X, y, True, solver="gd", learning_rate_init=rate, max_iter=10, tol=0.0)
    assert runs and training.compiled_blocks.cache_info().misses == 1
    for schedule in ("invscaling", "constant", "adaptive"):   # "sgd" is another solver
        fit(X, y, True, **{**CASES["invscaling"], "learning_rate": schedule, "max_iter": 10})
    assert training.compiled_blocks.cache_info().misses == 2


@pytest.mark.parametrize("solver", ["gd", "adam"])
def test_a_model_file_keeps_the_training_state_of_a_compiled_step(sine_rows, tmp_path, solver):
    """The per-step jit hands its rate (and Adam's step count) back as 0-d arrays; the
    file keeps them as numbers, so the state is saved, not silently dropped."""
    from gpumlp import load, save

    X, y = sine_rows
    with fastpath.disabled():   # the per-step path: jax.jit of one step
        model = fit(X, y, True, solver=solver, learning_rate_init=0.01, max_iter=5, tol=0.0)
    save(model, tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert getattr(loaded, "_trainer", None) is not None, "the training state was dropped"
    state = loaded._trainer.state
    assert isinstance(state.learning_rate if solver == "gd" else state.t, (int, float))
