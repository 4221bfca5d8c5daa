"""The CUDA tile kernels (issue 10): their NumPy model, their plan and their source.

On a machine without a GPU: the NumPy model of the kernels' algorithm (same
groups, same order of every sum) against the generic kernels; the plan; and
the CUDA C compiled by ``nvcc`` for every activation, dtype and kind of
shape. On a GPU (the ``cupy`` backend, required by ``ci/gpu``): the kernels
against the generic path and against the model, and their repeatability.
"""

import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from _compare import assert_loss_and_grads_close

from gpumlp import kernels
from gpumlp.activations import get_activation
from gpumlp.agreement import TOLERANCES
from gpumlp.devices import to_numpy
from gpumlp.fastpath import tiles
from gpumlp.initialization import glorot_uniform

ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity"]

#: (n, f, h, k): one row; one group with a partial tile; two uneven groups;
#: several outputs; many groups of 32 rows; MAX_GROUPS groups, the last shorter.
SHAPES = [(1, 1, 1, 1), (31, 3, 5, 2), (33, 2, 7, 1), (300, 6, 9, 3), (1000, 8, 16, 1),
          (8999, 4, 3, 2)]


def _problem(n, f, h, k, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    y = rng.standard_normal((n, k))
    coefs, intercepts = glorot_uniform([f, h, k], rng)
    cast = lambda arrays: [a.astype(dtype) for a in arrays]  # noqa: E731
    return X.astype(dtype), y.astype(dtype), cast(coefs), cast(intercepts)


def _oracle(X, y, coefs, intercepts, activation, alpha=0.0, n_total=None):
    """The generic kernels in float64 on NumPy, penalty added as the trainer adds it."""
    as64 = lambda arrays: [a.astype(np.float64) for a in arrays]  # noqa: E731
    X, y, coefs, intercepts = X.astype(np.float64), y.astype(np.float64), as64(coefs), \
        as64(intercepts)
    loss, coef_grads, intercept_grads = kernels.loss_and_grads(X, y, coefs, intercepts,
                                                               activation, n_total=n_total)
    n = X.shape[0] if n_total is None else n_total
    loss, coef_grads = kernels.add_l2(loss, coef_grads, coefs, alpha, n, y.shape[1])
    return loss, coef_grads, intercept_grads


# ------------------------------------------------------------ the model
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_model_of_the_kernels_matches_the_generic_kernels(dtype, activation, shape):
    X, y, coefs, intercepts = _problem(*shape, dtype)
    got = tiles.model_loss_and_grads(X, y, coefs, intercepts, activation)
    assert all(a.dtype == np.dtype(dtype) for a in [got[0], *got[1], *got[2]])
    assert_loss_and_grads_close(got, _oracle(X, y, coefs, intercepts, activation),
                  TOLERANCES[("kernel", dtype)])


@pytest.mark.parametrize("shape", [(33, 2, 7, 1), (300, 6, 9, 3)], ids=str)
@pytest.mark.parametrize("alpha, n_total", [(0.3, None), (0.0, 1000), (0.3, 1000)])
def test_the_model_with_a_penalty_and_a_chunks_share(dtype, shape, alpha, n_total):
    X, y, coefs, intercepts = _problem(*shape, dtype)
    got = tiles.model_loss_and_grads(X, y, coefs, intercepts, "sigmoid", alpha, n_total)
    assert_loss_and_grads_close(got, _oracle(X, y, coefs, intercepts, "sigmoid", alpha, n_total),
                  TOLERANCES[("kernel", dtype)])


def test_the_model_follows_the_groups(monkeypatch):
    # The model sums in the plan's order: other groups give other float32 bits
    # (so a bitwise comparison with the kernels checks the order too).
    X, y, coefs, intercepts = _problem(8999, 4, 3, 2, "float32")
    grouped = tiles.model_loss_and_grads(X, y, coefs, intercepts, "tanh")
    monkeypatch.setattr(tiles, "MAX_GROUPS", 1)
    assert tiles.plan_tiles(8999, 4, 3, 2, 4).groups == 1
    single = tiles.model_loss_and_grads(X, y, coefs, intercepts, "tanh")
    assert not all(np.array_equal(a, b) for a, b in
                   zip([grouped[0], *grouped[1]], [single[0], *single[1]]))
    assert_loss_and_grads_close(single, grouped, TOLERANCES[("kernel", "float32")])


def test_model_blocks_take_gradient_descent_steps_as_the_generic_kernels():
    X, y, coefs, intercepts = _problem(300, 6, 9, 3, "float64")
    params, rates = [*coefs, *intercepts], [0.1, 0.05, 0.2]
    results = tiles.ModelBlocks(X, y, "tanh", alpha=0.2).run(params, rates)
    for rate, (new, loss, finite) in zip(rates, results):
        ref_loss, coef_grads, intercept_grads = _oracle(X, y, params[:2], params[2:], "tanh",
                                                        alpha=0.2)
        assert float(finite) == 1.0 and loss.shape == ()
        assert float(loss) == pytest.approx(float(ref_loss), rel=1e-12)
        params = kernels.gd_step(params, coef_grads + intercept_grads, rate)
        for a, b in zip(new, params):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        params = new


def test_model_blocks_flag_non_finite_parameters():
    X, y, coefs, intercepts = _problem(31, 3, 5, 2, "float32")
    with np.errstate(over="ignore", invalid="ignore"):
        results = tiles.ModelBlocks(X, y * 1e30, "identity").run([*coefs, *intercepts],
                                                                 [1e10, 1e10])
    assert [float(finite) for _, _, finite in results][-1] == 0.0


# ------------------------------------------------------------- the plan
@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 8192, 8999, 1_000_000])
def test_groups_cover_the_rows_once(n):
    plan = tiles.plan_tiles(n, 4, 8, 1, 4)
    assert 1 <= plan.groups <= tiles.MAX_GROUPS
    assert (plan.groups - 1) * plan.group_rows < n <= plan.groups * plan.group_rows
    # Rows spread evenly over ceil(n / MIN_GROUP_ROWS) groups, at most MAX_GROUPS.
    wanted = min(tiles.MAX_GROUPS, -(-n // tiles.MIN_GROUP_ROWS))
    assert plan.group_rows == -(-n // wanted) and plan.groups <= wanted


def test_the_plan_depends_on_the_shared_memory_only_through_the_tile_rows():
    roomy = tiles.plan_tiles(10_000, 64, 256, 1, 8, shared_limit=227 * 1024)
    assert roomy.tile_rows == 16 and roomy.shared_bytes <= 227 * 1024
    assert tiles.plan_tiles(10_000, 64, 256, 1, 8) is None          # 48 KiB: no room
    small = tiles.plan_tiles(10_000, 16, 64, 1, 4)
    assert small.tile_rows == tiles.MAX_TILE_ROWS and small.shared_bytes <= 48 * 1024
    tight = tiles.plan_tiles(10_000, 16, 64, 1, 4, shared_limit=small.shared_bytes - 1)
    assert tight.tile_rows == small.tile_rows // 2
    assert replace(tight, tile_rows=small.tile_rows) == small


def test_the_plan_declines_too_many_sums_per_thread():
    wide = tiles.plan_tiles(100, 64, 512, 1, 4, shared_limit=None)
    assert wide is None     # (64 * 512 + 2 * 512 + 2) / 256 > MAX_PER_THREAD
    assert tiles.plan_tiles(100, 64, 256, 1, 4, shared_limit=None).per_thread == 67


def test_the_plan_refuses_empty_sizes():
    with pytest.raises(ValueError, match="positive sizes"):
        tiles.plan_tiles(0, 4, 8, 1, 4)


# ---------------------------------------------------------- the source
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed here")

#: (activation, dtype, (n, f, h, k), shared limit): every activation and dtype
#: at a small one-output size, then several outputs, the smallest network, and
#: a wide one that needs opted-in shared memory and many sums per thread.
COMPILE_CASES = (
    [(a, d, (10_000, 16, 64, 1), 48 * 1024) for a in ACTIVATIONS for d in ("float32",
                                                                             "float64")]
    + [("sigmoid", d, shape, 48 * 1024) for d in ("float32", "float64")
       for shape in ((300, 6, 9, 3), (1, 1, 1, 1))]
    + [("sigmoid", "float64", (100_000, 64, 256, 1), 227 * 1024)]
)


def _compile(tmp_path, source):
    path = tmp_path / "tiles.cu"
    path.write_text(source)
    return subprocess.run([NVCC, "-arch=sm_90", *tiles.COMPILE_OPTIONS, "-ptx", str(path),
                           "-o", str(tmp_path / "tiles.ptx")],
                          capture_output=True, text=True, timeout=600)


@needs_nvcc
@pytest.mark.parametrize("activation, precision, shape, limit", COMPILE_CASES,
                         ids=[f"{a}-{d}-{s}" for a, d, s, _ in COMPILE_CASES])
def test_the_cuda_source_compiles(tmp_path, activation, precision, shape, limit):
    plan = tiles.plan_tiles(*shape, np.dtype(precision).itemsize, shared_limit=limit)
    result = _compile(tmp_path, tiles.render_source(activation, plan, precision))
    assert result.returncode == 0, result.stderr
    ptx = (tmp_path / "tiles.ptx").read_text()
    assert ".entry gpumlp_tiles(" in ptx and ".entry gpumlp_tiles_reduce(" in ptx
    if activation in ("relu", "identity"):
        # --fmad=false took effect: no product is fused into a sum (the tanh of
        # CUDA's math library uses fma itself, so only these two are checked).
        assert "fma." not in ptx


@needs_nvcc
def test_the_compile_check_catches_a_broken_source(tmp_path):
    broken = replace(get_activation("tanh"), cuda_forward="tanh(z) +* (T)1")
    plan = tiles.plan_tiles(300, 6, 9, 3, 4)
    result = _compile(tmp_path, tiles.render_source(broken, plan, "float32"))
    assert result.returncode != 0 and "error" in result.stderr


def test_an_activation_without_a_cuda_form_is_refused():
    plain = replace(get_activation("tanh"), cuda_forward=None)
    with pytest.raises(ValueError, match="no CUDA form"):
        tiles.render_source(plain, tiles.plan_tiles(10, 2, 3, 1, 4), "float32")


# ------------------------------------------------------------- on a GPU
GPU_SHAPES = [(1, 1, 1, 1), (33, 2, 7, 1), (300, 6, 9, 3), (10_000, 16, 64, 1)]


def _on(device, X, y, coefs, intercepts):
    put = lambda arrays: [device.asarray(a) for a in arrays]  # noqa: E731
    return device.asarray(X), device.asarray(y), put(coefs), put(intercepts)


@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_tile_kernels_match_the_generic_path_and_repeat_bitwise(cupy_device, dtype,
                                                                    activation, shape):
    device = cupy_device
    host = _problem(*shape, dtype)
    with device.context():
        args = _on(device, *host)
        first = tiles.tile_loss_and_grads(*args, activation, 0.25)
        second = tiles.tile_loss_and_grads(*args, activation, 0.25)
        X, y, coefs, intercepts = args
        loss, coef_grads, intercept_grads = kernels.loss_and_grads(X, y, coefs, intercepts,
                                                                   activation)
        loss, coef_grads = kernels.add_l2(loss, coef_grads, coefs, 0.25, *y.shape)
        generic = (loss, coef_grads, intercept_grads)
    for a, b in zip([first[0], *first[1], *first[2]], [second[0], *second[1], *second[2]]):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b))
    tol = TOLERANCES[("kernel", dtype)]
    assert_loss_and_grads_close(first, generic, tol)
    assert_loss_and_grads_close(first, _oracle(*host, activation, alpha=0.25), tol)


@pytest.mark.parametrize("shape", GPU_SHAPES, ids=str)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_tile_kernels_compute_what_the_model_computes(cupy_device, dtype, activation,
                                                          shape):
    """Bit for bit where no transcendental function is involved (relu, identity):
    the CPU tests of the model then hold for the kernels too."""
    device = cupy_device
    host = _problem(*shape, dtype)
    with device.context():
        got = tiles.tile_loss_and_grads(*_on(device, *host), activation, n_total=2 * shape[0])
    model = tiles.model_loss_and_grads(*host, activation, n_total=2 * shape[0])
    if activation in ("relu", "identity"):
        for a, b in zip([got[0], *got[1], *got[2]], [model[0], *model[1], *model[2]]):
            np.testing.assert_array_equal(to_numpy(a), b)
    else:
        assert_loss_and_grads_close(got, model, TOLERANCES[("kernel", dtype)])
