"""Backend-specific fast paths for one training step, behind one dispatch.

The generic kernels (:mod:`gpumlp.kernels`) are the reference. For the common
case of one hidden layer, :func:`select` may return a faster function with the
same contract as the generic one::

    loss, coef_grads, intercept_grads = step(X, y, coefs, intercepts)

* **NumPy** (:func:`numpy_loss_and_grads`, sigmoid and tanh): rows are
  processed in chunks whose hidden activations fit in the CPU's cache, with
  every temporary preallocated and every elementwise operation in place
  (``out=``), so the ``n x h`` activations never travel through main memory;
  the bias rides in the product, and the sigmoid's affine form and
  derivative constants are applied to the small gradient matrices, leaving
  three elementwise passes over each chunk. On several cores, one block of
  rows per core, each in its own thread with a one-thread BLAS.
* **CuPy** (:func:`cupy_loss_and_grads`): the bias and the activation are
  one fused elementwise kernel applied in place, the backward product with
  the activation's derivative (for one output, the outer product too) is
  another, and column sums are matrix-vector products, so each ``n x h``
  array is written once and read as few times as the products need.
  For large one-output batches, :func:`cupy_fused_loss_and_grads` goes
  further: two warp-per-row kernels also fold in the products with ``W2``
  and the column sums, leaving only the two products with ``X`` to cuBLAS.

Both compute the same mathematics as the generic path in another summation
order; ``tests/test_agreement.py`` compares each against the generic path and
the NumPy float64 oracle (which is computed by the generic path). Nothing
here runs unless :func:`select` chooses it; ``GPUMLP_FASTPATH=0`` (read once,
at import) or the :func:`disabled` context switches every fast path off.
"""

from __future__ import annotations

import contextlib
import functools
import os

import array_api_compat as aac

__all__ = ["cupy_fused_loss_and_grads", "cupy_loss_and_grads", "disabled",
           "numpy_loss_and_grads", "select"]

ENABLED = os.environ.get("GPUMLP_FASTPATH", "1").strip() not in ("0", "false", "no")

#: Activations the fast paths implement.
_FAST_ACTIVATIONS = ("sigmoid", "logistic", "tanh", "relu", "identity")

#: Bytes of hidden activations per chunk: small enough for a core's L2 cache.
CHUNK_BYTES = 1 << 19

#: On CuPy, use the fused row kernels where they apply (one output, width up
#: to ``MAX_FUSED_WIDTH``, at least ``FUSED_MIN_ELEMENTS`` hidden activations);
#: else the fused elementwise kernels.
CUPY_FUSED = True
FUSED_MIN_ELEMENTS = 1 << 26

#: Below this many rows per core, one thread does all the rows.
MIN_ROWS_PER_THREAD = 4096


@contextlib.contextmanager
def disabled():
    """Within this block, :func:`select` offers no fast path (the generic kernels run)."""
    global ENABLED
    saved, ENABLED = ENABLED, False
    try:
        yield
    finally:
        ENABLED = saved


def select(X, n_layers, activation, alpha):
    """The fast ``loss_and_grads`` for these arrays and network, or ``None``.

    The function returned takes ``(X, y, coefs, intercepts, n_total=None)``;
    ``n_total`` has the meaning it has in :func:`gpumlp.kernels.backward`
    (the gradients are then a chunk's share of a larger batch's), while the
    loss stays the mean over the rows given.
    """
    if not ENABLED or n_layers != 2 or activation not in _FAST_ACTIVATIONS:
        return None
    if aac.is_numpy_array(X) and activation in _TANH_FORM:
        return lambda X, y, coefs, intercepts, n_total=None: numpy_loss_and_grads(
            X, y, coefs, intercepts, activation, alpha, n_total=n_total)
    if aac.is_cupy_array(X):
        return lambda X, y, coefs, intercepts, n_total=None: _cupy_step(
            X, y, coefs, intercepts, activation, alpha, n_total)
    return None


def _with_l2(loss, coef_grads, coefs, alpha, n, n_total):
    """Add the L2 penalty: its loss term over the ``n`` rows given, and its
    gradient, ``(alpha / n) W``, over the whole batch (``n_total`` rows if set)."""
    if not alpha:
        return loss, coef_grads
    scalar = loss.dtype.type
    n_batch = n if n_total is None else n_total
    loss = loss + scalar(0.5 * alpha / n) * sum((W * W).sum() for W in coefs)
    return loss, [g + scalar(alpha / n_batch) * W for g, W in zip(coef_grads, coefs)]


# ---------------------------------------------------------------- NumPy
#: The NumPy path writes sigmoid and tanh through t = tanh(c z):
#: a = alpha t + beta and da/dz = gamma (1 - t^2), with (c, alpha, beta, gamma).
_TANH_FORM = {
    "sigmoid": (0.5, 0.5, 0.5, 0.25),   # sigmoid(z) = tanh(z/2)/2 + 1/2
    "logistic": (0.5, 0.5, 0.5, 0.25),
    "tanh": (1.0, 1.0, 0.0, 1.0),
}


def _numpy_rows(X, y, W1a, W2, b2, form, start, stop, chunk_rows, scale):
    """Sums over rows ``start:stop``: squared error and the gradient pieces.

    Works with ``t = tanh(c z1)`` instead of ``a1`` (see ``_TANH_FORM``), so
    that the affine map from ``t`` to ``a1`` and the derivative's constant
    factor are applied to the small gradient matrices, not to every ``n x h``
    element. ``W1a`` is ``c [W1; b1]``: the bias rides in the product on a
    column of ones. Returns ``sse, G, u, s_r`` as used by
    :func:`numpy_loss_and_grads`.
    """
    import numpy as np

    _, alpha, beta, _ = form
    f1, h = W1a.shape
    k, dtype = y.shape[1], X.dtype
    xa = np.empty((chunk_rows, f1), dtype)   # [X_chunk, 1]
    xa[:, -1] = 1
    xr = np.empty((chunk_rows, f1), dtype)   # [X_chunk, 1] * r, for one output
    t = np.empty((chunk_rows, h), dtype)
    q = np.empty((chunk_rows, h), dtype)     # 1 - t^2, then for k > 1 the delta
    r = np.empty((chunk_rows, k), dtype)
    W2_alpha = alpha * W2
    offset = beta * W2.sum(axis=0) + b2      # a1 W2 + b2 = t (alpha W2) + offset
    ones = np.ones(chunk_rows, dtype)        # column sums as matrix-vector products
    W2T = np.ascontiguousarray(W2.T)
    G = np.zeros((f1, h), dtype)
    u = np.zeros((h, k), dtype)
    s_r = np.zeros(k, dtype)
    sse = dtype.type(0)
    for first in range(start, stop, chunk_rows):
        last = min(first + chunk_rows, stop)
        m = last - first
        xc, xrc, tc, qc, rc = xa[:m], xr[:m], t[:m], q[:m], r[:m]
        xc[:, :-1] = X[first:last]
        np.matmul(xc, W1a, out=tc)            # c z1
        np.tanh(tc, out=tc)                   # t
        np.matmul(tc, W2_alpha, out=rc)
        rc += offset
        rc -= y[first:last]                   # y_pred - y
        sse += np.vdot(rc, rc)
        rc *= scale                           # dL/dz2 for these rows
        u += tc.T @ rc
        s_r += ones[:m] @ rc
        np.multiply(tc, tc, out=qc)
        np.subtract(1, qc, out=qc)            # 1 - t^2
        if k == 1:
            # [X 1]^T ((r w^T) * q) = (([X 1] * r)^T q) * w^T: scale the
            # narrow rows by r instead of forming the wide outer product.
            np.multiply(xc, rc, out=xrc)
            G += xrc.T @ qc
        else:
            qc *= rc @ W2T
            G += xc.T @ qc
    return sse, G, u, s_r


_POOL = None
_BLAS = None


def _workers(n):
    """How many threads to split ``n`` rows over (one per core, enough rows each)."""
    return max(1, min(os.cpu_count() or 1, n // MIN_ROWS_PER_THREAD))


def numpy_loss_and_grads(X, y, coefs, intercepts, activation, alpha, chunk_rows=None,
                         workers=None, n_total=None):
    """Loss and gradients of a one-hidden-layer sigmoid or tanh network, in chunks.

    Same contract and mathematics as ``kernels.forward`` + ``squared_error`` +
    ``l2_penalty`` + ``backward``; see :mod:`gpumlp.kernels` for the
    conventions. Rows go through in cache-sized chunks with preallocated,
    in-place temporaries. With ``t = tanh(c z1)``, ``a1 = alpha t + beta`` and
    ``f'(z1) = gamma (1 - t^2)``, and ``r = (2/(n k)) (y_pred - y)``:

    * ``dW2 = a1^T r = alpha t^T r + beta 1 (1^T r)``, and ``db2 = 1^T r``;
    * ``[dW1; db1] = gamma [X 1]^T ((r W2^T) * (1 - t^2))``, which for one
      output is computed as ``gamma (([X 1] * r)^T (1 - t^2)) * w^T``.

    With several cores the rows are split into one contiguous block per core,
    each worked by a thread with a one-thread BLAS (NumPy releases the GIL in
    its loops), and the blocks' sums are added in a fixed order, so results
    are deterministic.
    """
    import numpy as np

    W1, W2 = coefs
    b1, b2 = intercepts
    n, k = y.shape
    f, h = W1.shape
    dtype = X.dtype
    form = _TANH_FORM[activation]
    c, a_scale, a_shift, gamma = form
    if chunk_rows is None:
        chunk_rows = max(64, CHUNK_BYTES // (h * dtype.itemsize))
    chunk_rows = min(chunk_rows, n)
    scale = dtype.type(2.0 / ((n if n_total is None else n_total) * k))
    W1a = np.empty((f + 1, h), dtype)
    W1a[:f] = W1
    W1a[f] = b1
    W1a *= dtype.type(c)
    workers = _workers(n) if workers is None else workers
    args = (X, y, W1a, W2, b2, form)
    if workers == 1:
        parts = [_numpy_rows(*args, 0, n, chunk_rows, scale)]
    else:
        global _POOL, _BLAS
        if _POOL is None or _POOL._max_workers < workers:
            from concurrent.futures import ThreadPoolExecutor

            from threadpoolctl import ThreadpoolController

            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="gpumlp")
            _BLAS = ThreadpoolController()
        bounds = [n * i // workers for i in range(workers + 1)]
        with _BLAS.limit(limits=1, user_api="blas"):
            futures = [_POOL.submit(_numpy_rows, *args, bounds[i], bounds[i + 1],
                                    chunk_rows, scale) for i in range(workers)]
            parts = [future.result() for future in futures]
    sse, G, u, s_r = parts[0]
    for part in parts[1:]:
        sse = sse + part[0]
        G += part[1]
        u += part[2]
        s_r += part[3]
    if k == 1:
        G *= W2[:, 0]
    G *= dtype.type(gamma)
    dW1, db1 = G[:f], G[f]
    dW2 = dtype.type(a_scale) * u + dtype.type(a_shift) * s_r
    db2 = s_r
    loss, coef_grads = _with_l2(np.asarray(sse / dtype.type(n * k), dtype=dtype), [dW1, dW2],
                                coefs, alpha, n, n_total)
    return loss, coef_grads, [db1, db2]


# ----------------------------------------------------------------- CuPy
_CUPY_KERNELS = {}

_ACTIVATION_C = {
    "sigmoid": "(T)0.5 * tanh((T)0.5 * (z + b)) + (T)0.5",
    "tanh": "tanh(z + b)",
    "relu": "(z + b > (T)0 ? z + b : (T)0)",
    "identity": "z + b",
}

_DERIVATIVE_C = {
    "sigmoid": "a * ((T)1 - a)",
    "tanh": "((T)1 - a * a)",
    "relu": "(a > (T)0 ? (T)1 : (T)0)",
    "identity": "(T)1",
}


def _cupy_kernels(activation):
    """Compile (once per activation) the two fused elementwise kernels."""
    name = "sigmoid" if activation == "logistic" else activation
    if name not in _CUPY_KERNELS:
        import cupy

        # a1 = f(z1 + b1): the bias and the activation in one pass, in place.
        activate = cupy.ElementwiseKernel(
            "T z, T b", "T a", f"a = {_ACTIVATION_C[name]}", f"gpumlp_activate_{name}")
        # delta1 = (delta2 W2^T) * f'(a1), given g = delta2 W2^T; for one
        # output, g is the outer product r w^T, formed inside the kernel.
        backward = cupy.ElementwiseKernel(
            "T g, T w, T a", "T d", f"d = g * w * {_DERIVATIVE_C[name]}",
            f"gpumlp_backward_{name}")
        _CUPY_KERNELS[name] = (activate, backward)
    return _CUPY_KERNELS[name]


def cupy_loss_and_grads(X, y, coefs, intercepts, activation, alpha, n_total=None):
    """Loss and gradients of a one-hidden-layer network with fused CuPy kernels.

    Same contract and mathematics as the generic path; see
    :mod:`gpumlp.kernels` for the conventions. Each ``n x h`` array is
    written once and read as few times as the products need; nothing is
    synchronised with the host.
    """
    import cupy

    W1, W2 = coefs
    b1, b2 = intercepts
    activate, backward = _cupy_kernels(activation)
    n, k = y.shape
    one = y.dtype.type(1)
    a = X @ W1
    activate(a, b1, a)                                   # a1 = f(X W1 + b1), in place
    r = a @ W2
    r += b2
    r -= y                                               # y_pred - y
    sse = cupy.vdot(r, r)
    r *= y.dtype.type(2.0 / ((n if n_total is None else n_total) * k))  # dL/dz2
    dW2 = a.T @ r
    db2 = r.sum(axis=0)
    if k == 1:
        d = backward(r, W2[:, 0], a)                     # outer product, fused
    else:
        d = backward(r @ W2.T, one, a)
    dW1 = X.T @ d
    db1 = cupy.full(n, one, dtype=y.dtype) @ d           # column sums as one GEMV
    loss = sse / y.dtype.type(n * k)
    loss, coef_grads = _with_l2(loss, [dW1, dW2], coefs, alpha, n, n_total)
    return loss, coef_grads, [db1, db2]


# ------------------------------------------------- CuPy, fused row kernels
_ROW_ACTIVATION = {
    "sigmoid": "(T)0.5 * tanh((T)0.5 * z) + (T)0.5",
    "tanh": "tanh(z)",
    "relu": "(z > (T)0 ? z : (T)0)",
    "identity": "z",
}

_ROW_SOURCE = r"""
typedef %(ctype)s T;
#define H %(h)d
#define PER ((H + 31) / 32)

__device__ __forceinline__ T activate(T z) { return %(activation)s; }
__device__ __forceinline__ T derivative(T a) { return %(derivative)s; }

// One warp per row (grid-stride): a <- f(z + b1) in place, and the output
// r = a . w + b2 - y of a one-output network, reduced across the warp.
extern "C" __global__ void gpumlp_forward(
        T* __restrict__ a, const T* __restrict__ b1, const T* __restrict__ w,
        const T* __restrict__ b2, const T* __restrict__ y, T* __restrict__ r,
        long long n) {
    const int lane = threadIdx.x & 31;
    long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long i = warp; i < n; i += warps) {
        T* row = a + i * H;
        T acc = 0;
        for (int j = lane; j < H; j += 32) {
            T v = activate(row[j] + b1[j]);
            row[j] = v;
            acc += v * w[j];
        }
        for (int offset = 16; offset > 0; offset >>= 1)
            acc += __shfl_down_sync(0xffffffffu, acc, offset);
        if (lane == 0) r[i] = acc + b2[0] - y[i];
    }
}

// One warp per row (grid-stride): d = r w^T * f'(a), and per warp the
// column sums of a * r (for dW2) and of d (for db1), written to
// partial[warp][0 or 1][:] and added up afterwards in a fixed order.
extern "C" __global__ void gpumlp_backward(
        const T* __restrict__ a, const T* __restrict__ r, const T* __restrict__ w,
        T* __restrict__ d, T* __restrict__ partial, long long n) {
    const int lane = threadIdx.x & 31;
    const long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    T wl[PER], s_w2[PER], s_b1[PER];
    #pragma unroll
    for (int p = 0; p < PER; ++p) {
        int j = lane + 32 * p;
        wl[p] = j < H ? w[j] : (T)0;
        s_w2[p] = 0;
        s_b1[p] = 0;
    }
    for (long long i = warp; i < n; i += warps) {
        const T ri = r[i];
        const T* arow = a + i * H;
        T* drow = d + i * H;
        #pragma unroll
        for (int p = 0; p < PER; ++p) {
            int j = lane + 32 * p;
            if (j < H) {
                T av = arow[j];
                T dv = ri * wl[p] * derivative(av);
                drow[j] = dv;
                s_w2[p] += av * ri;
                s_b1[p] += dv;
            }
        }
    }
    #pragma unroll
    for (int p = 0; p < PER; ++p) {
        int j = lane + 32 * p;
        if (j < H) {
            partial[(warp * 2) * H + j] = s_w2[p];
            partial[(warp * 2 + 1) * H + j] = s_b1[p];
        }
    }
}
"""

_ROW_KERNELS = {}

#: The fused row kernels keep ceil(h / 32) partial sums per thread in registers.
MAX_FUSED_WIDTH = 1024


def _row_kernels(activation, h, dtype):
    """Compile (once per activation, width and dtype) the fused row kernels."""
    import cupy

    name = "sigmoid" if activation == "logistic" else activation
    key = (name, h, dtype.str)
    if key not in _ROW_KERNELS:
        source = _ROW_SOURCE % {
            "ctype": "float" if dtype == cupy.float32 else "double", "h": h,
            "activation": _ROW_ACTIVATION[name],
            "derivative": _DERIVATIVE_C[name],
        }
        module = cupy.RawModule(code=source, options=("-std=c++14",))
        _ROW_KERNELS[key] = (module.get_function("gpumlp_forward"),
                             module.get_function("gpumlp_backward"))
    return _ROW_KERNELS[key]


@functools.cache
def _multiprocessors(device_id):
    import cupy

    return cupy.cuda.runtime.getDeviceProperties(device_id)["multiProcessorCount"]


def _launch_shape(n):
    import cupy

    sms = _multiprocessors(cupy.cuda.runtime.getDevice())
    threads = 256
    forward_blocks = int(max(1, min((n * 32 + threads - 1) // threads, sms * 64)))
    backward_blocks = int(sms * 16)
    return threads, forward_blocks, backward_blocks


def cupy_fused_loss_and_grads(X, y, coefs, intercepts, activation, alpha, n_total=None):
    """Like :func:`cupy_loss_and_grads` for one output, with two fused row kernels.

    The forward kernel applies bias and activation in place and computes the
    output and residual in the same pass over ``a1``; the backward kernel
    writes ``delta1`` and, in the same pass, the column sums that give
    ``dW2`` and ``db1``, reduced per warp and then across warps in a fixed
    order (so results are deterministic). Only the two products with ``X``
    remain as cuBLAS calls.
    """
    import cupy

    W1, W2 = coefs
    b1, b2 = intercepts
    n, k = y.shape
    h = W1.shape[1]
    forward, backward = _row_kernels(activation, h, y.dtype)
    threads, forward_blocks, backward_blocks = _launch_shape(n)
    a = X @ W1
    w = cupy.ascontiguousarray(W2[:, 0])
    yc = cupy.ascontiguousarray(y[:, 0])
    r = cupy.empty(n, dtype=y.dtype)
    forward((forward_blocks,), (threads,), (a, b1, w, b2, yc, r, cupy.int64(n)))
    sse = cupy.vdot(r, r)
    r *= y.dtype.type(2.0 / (n if n_total is None else n_total))  # dL/dz2
    d = cupy.empty_like(a)
    partial = cupy.empty((backward_blocks * threads // 32, 2, h), dtype=y.dtype)
    backward((backward_blocks,), (threads,), (a, r, w, d, partial, cupy.int64(n)))
    # The per-warp partial sums, added up by one matrix-vector product: a
    # column reduction over the leading axis took 0.19 ms at 1M rows on an
    # H200, reading 17 MB with strided loads.
    warps = partial.shape[0]
    sums = cupy.ones(warps, dtype=y.dtype) @ partial.reshape(warps, 2 * h)
    dW2 = sums[:h][:, None]
    db1 = sums[h:]
    db2 = r.sum(keepdims=True)
    dW1 = X.T @ d
    loss = sse / y.dtype.type(n)
    loss, coef_grads = _with_l2(loss, [dW1, dW2], coefs, alpha, n, n_total)
    return loss, coef_grads, [db1, db2]


def _cupy_step(X, y, coefs, intercepts, activation, alpha, n_total=None):
    """The CuPy fast path: fused row kernels for large batches, else fused elementwise.

    The threshold comes from measurements on an H200 (2026-11-26, see
    ``scripts/PERF_NOTES.md``): the row kernels took 1.57 ms against 2.57 ms at
    (1M, 32, 128), but 0.79 against 0.61 ms at (100k, 64, 256) and 0.38 against
    0.29 ms at (10k, 16, 64), where their fixed per-warp partial sums then
    dominated (those sums have since become one GEMV; the smaller sizes have
    not been re-measured).
    """
    h = coefs[0].shape[1]
    if (CUPY_FUSED and y.shape[1] == 1 and h <= MAX_FUSED_WIDTH
            and X.shape[0] * h >= FUSED_MIN_ELEMENTS):
        return cupy_fused_loss_and_grads(X, y, coefs, intercepts, activation, alpha, n_total)
    return cupy_loss_and_grads(X, y, coefs, intercepts, activation, alpha, n_total)
