"""What a replay does to the process it runs in: it holds the thread pools, and gives them back.

A replay on PyTorch runs with the threads NumPy's fit gives its rows (one per
4096 rows per core: one here), and OpenBLAS's limit likewise for the generic
kernels; the caller's settings come back afterwards, also when it fails.
"""

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from gpumlp import MLPRegressor, kernels, save
from gpumlp.certificate import _replay_threads, certify, format_certificate
from gpumlp.devices import Device
from gpumlp.fastpath.numpy import _workers


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((90, 3))
    y = np.tanh(X[:, 0]) - 0.5 * X[:, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((5,), solver="adam", batch_size=30, max_iter=4,
                             random_state=0).fit(X, y)
    path = tmp_path_factory.mktemp("cost") / "m.npz"
    save(model, path)
    return path, X, y


def _blas_threads():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_a_torch_replay_holds_torchs_threads_and_restores_them(fit_file, monkeypatch):
    torch = pytest.importorskip("torch")
    path, X, y = fit_file
    seen, real = set(), kernels.forward

    def spying(X_, *args, **kwargs):
        if type(X_).__module__.startswith("torch"):
            seen.add(torch.get_num_threads())
        return real(X_, *args, **kwargs)

    monkeypatch.setattr(kernels, "forward", spying)
    before, blas_before = torch.get_num_threads(), _blas_threads()
    torch.set_num_threads(3)
    try:
        cert = certify(path, X, y, backends=["numpy", "torch"], dtypes=("float64",))
        assert cert.outcome == "PASS", format_certificate(cert)
        assert seen == {_workers(X.shape[0])}
        assert torch.get_num_threads() == 3
        assert _blas_threads() == blas_before
    finally:
        torch.set_num_threads(before)


def test_the_threads_come_back_when_a_replay_fails():
    torch = pytest.importorskip("torch")
    device = Device("torch", None, None, "cpu")
    before, blas_before = torch.get_num_threads(), _blas_threads()
    torch.set_num_threads(3)
    try:
        with pytest.raises(RuntimeError, match="inside"), _replay_threads(device, 100, True):
            assert torch.get_num_threads() == 1
            assert set(_blas_threads()) == {1}
            raise RuntimeError("inside")
        assert torch.get_num_threads() == 3
        assert _blas_threads() == blas_before
    finally:
        torch.set_num_threads(before)


def test_jaxs_lbfgs_arithmetic_is_compiled_once_whatever_the_memory():
    """On JAX, L-BFGS's arithmetic (the two-loop recursion's pieces, the slopes, the
    curvature pair) runs as compiled programs, each traced once for every memory
    length, and the direction is the plain recursion's on NumPy."""
    pytest.importorskip("jax")
    from gpumlp import agreement, solvers

    device = agreement.backend_device("jax")
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3, 1), (3,), (1,)]

    def draw():
        return [rng.standard_normal(shape) for shape in shapes]

    grads = draw()
    steps = [draw() for _ in range(5)]
    # y = s + a little: s.y > 0, as the memory keeps only such pairs.
    changes = [[s + 0.1 * d for s, d in zip(step, draw())] for step in steps]
    with device.context():
        def on(arrays):
            return [device.asarray(a) for a in arrays]

        ops = solvers._lbfgs_ops(on(grads))
        assert ops is solvers._compiled_lbfgs_ops(device)
        # The programs are shared by the process: earlier tests may have
        # traced them for their own shapes and dtypes. Count this test's.
        before = {name: ops[name].jitted._cache_size()
                  for name in ("newer_pair", "initial_scaling", "older_pair", "negated")}
        for m in range(len(steps) + 1):
            want = solvers._two_loop(grads, steps[:m], changes[:m])
            got = solvers._two_loop(on(grads), [on(s) for s in steps[:m]],
                                    [on(y) for y in changes[:m]], ops)
            for w, g in zip(want, got):
                # A few roundings of sums of O(10) terms, each of order 1.
                np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e3 * np.finfo(
                    np.float64).eps * max(1.0, float(np.abs(w).max())))
    for name, traced in before.items():
        assert ops[name].jitted._cache_size() <= traced + 1, name   # once, for every m
    assert solvers._lbfgs_ops(grads) is solvers._LBFGS_OPS      # NumPy: plain
