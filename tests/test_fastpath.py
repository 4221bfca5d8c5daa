"""Each backend's fast path against the generic kernels, and the dispatch."""

import numpy as np
import pytest
from _compare import assert_loss_and_grads_close

from gpumlp import MLPRegressor, fastpath, kernels
from gpumlp.agreement import TOLERANCES
from gpumlp.devices import Device, to_numpy
from gpumlp.initialization import glorot_uniform


def _generic(X, y, coefs, intercepts, activation, alpha):
    acts = kernels.forward(X, coefs, intercepts, activation)
    loss = kernels.squared_error(y, acts[-1]) + kernels.l2_penalty(coefs, alpha, *y.shape)
    coef_grads, intercept_grads = kernels.backward(y, acts, coefs, activation, alpha)
    return loss, coef_grads, intercept_grads


def _problem(n, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6))
    y = rng.standard_normal((n, k))
    coefs, intercepts = glorot_uniform([6, 9, k], rng)
    cast = lambda arrays: [a.astype(dtype) for a in arrays]  # noqa: E731
    return X.astype(dtype), y.astype(dtype), cast(coefs), cast(intercepts)


@pytest.mark.parametrize("activation", ["sigmoid", "logistic", "tanh"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
@pytest.mark.parametrize("chunk_rows, workers", [(None, None), (7, 1), (64, 2), (1000, 3)])
def test_numpy_fast_path_matches_generic(dtype, activation, k, alpha, chunk_rows, workers):
    X, y, coefs, intercepts = _problem(301, k, dtype)
    fast = fastpath.numpy_loss_and_grads(X, y, coefs, intercepts, activation, alpha,
                                         chunk_rows=chunk_rows, workers=workers)
    assert fast[0].dtype == np.dtype(dtype)
    assert all(g.dtype == np.dtype(dtype) for g in fast[1] + fast[2])
    reference = _generic(X.astype(np.float64), y.astype(np.float64),
                         [c.astype(np.float64) for c in coefs],
                         [b.astype(np.float64) for b in intercepts], activation, alpha)
    assert_loss_and_grads_close(fast, reference, TOLERANCES[("kernel", dtype)])


def test_numpy_fast_path_is_deterministic():
    X, y, coefs, intercepts = _problem(50_000, 1, "float32")
    first = fastpath.numpy_loss_and_grads(X, y, coefs, intercepts, "sigmoid", 0.0, workers=2)
    second = fastpath.numpy_loss_and_grads(X, y, coefs, intercepts, "sigmoid", 0.0, workers=2)
    for a, b in zip([first[0], *first[1], *first[2]], [second[0], *second[1], *second[2]]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("variant", ["cupy_loss_and_grads", "cupy_fused_loss_and_grads"])
@pytest.mark.parametrize("n", [1001, 40_000])
def test_cupy_fast_path_matches_generic(cupy_device, dtype, activation, k, variant, n):
    device = cupy_device
    if variant == "cupy_fused_loss_and_grads" and k != 1:
        pytest.skip("the fused row kernels serve one output")
    X, y, coefs, intercepts = _problem(n, k, dtype)
    with device.context():
        put = lambda arrays: [device.asarray(a) for a in arrays]  # noqa: E731
        args = (device.asarray(X), device.asarray(y), put(coefs), put(intercepts))
        fast = getattr(fastpath, variant)(*args, activation, 0.25)
        again = getattr(fastpath, variant)(*args, activation, 0.25)
        reference = _generic(*args, activation, 0.25)
    for first, second in zip([fast[0], *fast[1], *fast[2]], [again[0], *again[1], *again[2]]):
        np.testing.assert_array_equal(to_numpy(first), to_numpy(second))  # deterministic
    assert_loss_and_grads_close(fast, reference, TOLERANCES[("kernel", dtype)])
    oracle = _generic(X.astype(np.float64), y.astype(np.float64),
                      [c.astype(np.float64) for c in coefs],
                      [b.astype(np.float64) for b in intercepts], activation, 0.25)
    assert_loss_and_grads_close(fast, oracle, TOLERANCES[("kernel", dtype)])


def test_dispatch():
    X = np.zeros((4, 2))
    assert fastpath.select(X, 2, "sigmoid") is not None
    assert fastpath.select(X, 3, "sigmoid") is None       # two hidden layers
    assert fastpath.select(X, 2, "relu") is None          # not on NumPy
    with fastpath.disabled():
        assert fastpath.select(X, 2, "sigmoid") is None
    assert fastpath.select(X, 2, "sigmoid") is not None
    xp = pytest.importorskip("array_api_strict")
    assert fastpath.select(xp.asarray(X), 2, "sigmoid") is None


def test_training_with_and_without_fast_path_agree():
    X, y, _, _ = _problem(500, 1, "float64")

    def fit():
        model = MLPRegressor((9,), max_iter=50, tol=0, random_state=0, device=Device("cpu"))
        with pytest.warns(Warning):
            return model.fit(X, y[:, 0])

    fast = fit()
    with fastpath.disabled():
        generic = fit()
    for a, b in zip(fast.coefs_ + fast.intercepts_, generic.coefs_ + generic.intercepts_):
        assert np.linalg.norm(a - b) <= TOLERANCES[("training", "float64")] * np.linalg.norm(b)


def test_cupy_dispatch_picks_the_row_kernels_only_for_large_one_output_batches(monkeypatch):
    from types import SimpleNamespace

    chosen = []
    monkeypatch.setattr(fastpath.cupy, "cupy_fused_loss_and_grads",
                        lambda *a: chosen.append("rows"))
    monkeypatch.setattr(fastpath.cupy, "cupy_loss_and_grads",
                        lambda *a: chosen.append("elementwise"))

    def step(n, h, k):
        X, y = SimpleNamespace(shape=(n, 8)), SimpleNamespace(shape=(n, k))
        coefs = [SimpleNamespace(shape=(8, h)), SimpleNamespace(shape=(h, k))]
        fastpath.cupy._cupy_step(X, y, coefs, [None, None], "sigmoid", 0.0)
        return chosen.pop()

    assert step(1_000_000, 128, 1) == "rows"
    assert step(100_000, 256, 1) == "elementwise"
    assert step(1_000_000, 128, 2) == "elementwise"
    assert step(100_000, 2048, 1) == "elementwise"   # wider than the row kernels hold


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_numpy_fast_path_chunk_shares_add_up_to_the_batch_gradient(activation):
    X, y, coefs, intercepts = _problem(300, 2, "float64")
    whole = fastpath.numpy_loss_and_grads(X, y, coefs, intercepts, activation, 0.0)
    parts = [fastpath.numpy_loss_and_grads(X[a:b], y[a:b], coefs, intercepts, activation,
                                           0.0, n_total=300) for a, b in ((0, 120), (120, 300))]
    for i, grad in enumerate(whole[1] + whole[2]):
        total = sum((p[1] + p[2])[i] for p in parts)
        np.testing.assert_allclose(total, grad, rtol=1e-12, atol=1e-15)
    losses = [float(p[0]) * n for p, n in zip(parts, (120, 180))]
    assert sum(losses) / 300 == pytest.approx(float(whole[0]), rel=1e-12)


def test_the_numpy_fast_path_starts_its_pool_safely_from_several_threads(monkeypatch):
    """Fits in several threads at once (Dask workers in one process) share one pool.

    A slow BLAS controller widens the window in which a thread could see the
    pool without it (an AttributeError before the pool's lock).
    """
    import threading
    import time

    import threadpoolctl

    from gpumlp.fastpath import numpy as fast

    real = threadpoolctl.ThreadpoolController

    def slow_controller():
        time.sleep(0.2)
        return real()

    monkeypatch.setattr(fast, "_POOL", None)
    monkeypatch.setattr(fast, "_BLAS", None)
    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", slow_controller)
    rng = np.random.default_rng(1)
    Xs, ys = rng.normal(size=(64, 3)), rng.normal(size=(64, 1))
    coefs = [rng.normal(size=(3, 4)), rng.normal(size=(4, 1))]
    intercepts = [np.zeros(4), np.zeros(1)]
    errors = []

    def run():
        try:
            fast.numpy_loss_and_grads(Xs, ys, coefs, intercepts, "sigmoid", workers=2)
        except Exception as exc:   # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []



@pytest.mark.parametrize("n, limited", [(4000, True), (500, False)])
def test_one_numpy_block_limits_blas_to_one_thread_for_large_chunk_products(monkeypatch, n,
                                                                             limited):
    """A lone block (one worker) runs chunk products of 2**20 multiply-adds or more on a
    one-thread BLAS, as each block of the pool does; smaller ones skip the limit's cost.

    10 features and 64 hidden units in float32: chunks of 2048 rows, 1.4e6
    multiply-adds; 500 rows, 3.5e5.
    """
    from gpumlp.fastpath import numpy as fast

    real_blas, calls = fast._blas, []

    class Recording:
        def limit(self, **kwargs):
            calls.append(kwargs)
            return real_blas().limit(**kwargs)

    monkeypatch.setattr(fast, "_blas", Recording)
    monkeypatch.setattr(fast, "_workers", lambda n: 1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 10)).astype(np.float32)
    y = rng.standard_normal((n, 1)).astype(np.float32)
    coefs, intercepts = glorot_uniform([10, 64, 1], rng, "float32")
    loss, coef_grads, intercept_grads = fast.numpy_loss_and_grads(X, y, coefs, intercepts,
                                                                  "tanh")
    assert calls == ([{"limits": 1, "user_api": "blas"}] if limited else [])
    assert_loss_and_grads_close((loss, coef_grads, intercept_grads),
                                _generic(X.astype(np.float64), y.astype(np.float64),
                                         [c.astype(np.float64) for c in coefs],
                                         [b.astype(np.float64) for b in intercepts], "tanh",
                                         0.0), TOLERANCES[("kernel", "float32")])
