"""The CuPy fast path: one hidden layer with fused CUDA kernels.

* :func:`cupy_loss_and_grads`: the bias and the activation are one fused
  elementwise kernel applied in place, the backward product with the
  activation's derivative (for one output, the outer product too) is
  another, and column sums are matrix-vector products, so each ``n x h``
  array is written once and read as few times as the products need.
* :func:`cupy_fused_loss_and_grads`, for large one-output batches: two
  warp-per-row kernels also fold in the products with ``W2`` and the column
  sums, leaving only the two products with ``X`` to cuBLAS.
* when opted in (``GPUMLP_CUDA_GRAPH=1``, see :mod:`gpumlp.fastpath`), for
  small batches: :func:`gpumlp.fastpath.tiles.tile_loss_and_grads`, two
  kernels and no cuBLAS (never run on a GPU yet).

The C expressions of each activation come from its record
(:mod:`gpumlp.activations`); an activation without them is declined. CuPy is
imported inside the functions, so importing this module does not need it.
"""

from __future__ import annotations

import functools

from ..activations import get_activation
from ..kernels import add_l2, output_delta_scale
from . import tiles as tile_kernels

__all__ = ["cupy_fused_loss_and_grads", "cupy_loss_and_grads", "step_for"]

#: Use the fused row kernels for one output, width up to ``MAX_FUSED_WIDTH``
#: and at least ``FUSED_MIN_ELEMENTS`` hidden activations; else the fused
#: elementwise kernels.
FUSED_MIN_ELEMENTS = 1 << 26

_CUPY_KERNELS = {}

def _cupy_kernels(activation):
    """Compile (once per activation) the two fused elementwise kernels."""
    act = get_activation(activation)
    name = act.name
    if name not in _CUPY_KERNELS:
        import cupy

        # a1 = f(z1 + b1): the bias and the activation in one pass, in place.
        activate = cupy.ElementwiseKernel(
            "T z, T b", "T a", f"a = {act.cuda_forward_biased}", f"gpumlp_activate_{name}")
        # delta1 = (delta2 W2^T) * f'(a1), given g = delta2 W2^T; for one
        # output, g is the outer product r w^T, formed inside the kernel.
        backward = cupy.ElementwiseKernel(
            "T g, T w, T a", "T d", f"d = g * w * {act.cuda_derivative}",
            f"gpumlp_backward_{name}")
        _CUPY_KERNELS[name] = (activate, backward)
    return _CUPY_KERNELS[name]


def cupy_loss_and_grads(X, y, coefs, intercepts, activation, alpha=0.0, n_total=None):
    """Loss and gradients of a one-hidden-layer network with fused CuPy kernels.

    Same contract and mathematics as :func:`gpumlp.kernels.loss_and_grads`
    (plus, for direct callers, the L2 penalty ``alpha``); see
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
    r *= y.dtype.type(output_delta_scale(n if n_total is None else n_total, k))  # dL/dz2
    dW2 = a.T @ r
    db2 = r.sum(axis=0)
    if k == 1:
        d = backward(r, W2[:, 0], a)                     # outer product, fused
    else:
        d = backward(r @ W2.T, one, a)
    dW1 = X.T @ d
    db1 = cupy.full(n, one, dtype=y.dtype) @ d           # column sums as one GEMV
    loss = sse / y.dtype.type(n * k)
    loss, coef_grads = add_l2(loss, [dW1, dW2], coefs, alpha,
                              n if n_total is None else n_total, k)
    return loss, coef_grads, [db1, db2]


# ------------------------------------------------- CuPy, fused row kernels
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

    act = get_activation(activation)
    key = (act.name, h, dtype.str)
    if key not in _ROW_KERNELS:
        source = _ROW_SOURCE % {
            "ctype": "float" if dtype == cupy.float32 else "double", "h": h,
            "activation": act.cuda_forward,
            "derivative": act.cuda_derivative,
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


def cupy_fused_loss_and_grads(X, y, coefs, intercepts, activation, alpha=0.0,
                              n_total=None):
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
    r *= y.dtype.type(output_delta_scale(n if n_total is None else n_total, 1))  # dL/dz2
    d = cupy.empty_like(a)
    partial = cupy.empty((backward_blocks * threads // 32, 2, h), dtype=y.dtype)
    backward((backward_blocks,), (threads,), (a, r, w, d, partial, cupy.int64(n)))
    # The per-warp partial sums, added up by one matrix-vector product rather
    # than a strided column reduction over the leading axis (see PERF_NOTES).
    warps = partial.shape[0]
    sums = cupy.ones(warps, dtype=y.dtype) @ partial.reshape(warps, 2 * h)
    dW2 = sums[:h][:, None]
    db1 = sums[h:]
    db2 = r.sum(keepdims=True)
    dW1 = X.T @ d
    loss = sse / y.dtype.type(n)
    loss, coef_grads = add_l2(loss, [dW1, dW2], coefs, alpha,
                              n if n_total is None else n_total, 1)
    return loss, coef_grads, [db1, db2]


def _cupy_step(X, y, coefs, intercepts, activation, alpha=0.0, n_total=None, tiles=False):
    """The CuPy fast path: fused row kernels for large batches, else fused elementwise.

    The threshold rests on measurements recorded in ``scripts/PERF_NOTES.md``.
    With ``tiles`` (the opt-in), the tile kernels first, for batches they
    hold below their size threshold (:func:`gpumlp.fastpath.tiles.plan_for`).
    """
    h = coefs[0].shape[1]
    if tiles and tile_kernels.plan_for(X, y, h) is not None:
        return tile_kernels.tile_loss_and_grads(X, y, coefs, intercepts, activation, alpha,
                                                n_total)
    if (y.shape[1] == 1 and h <= MAX_FUSED_WIDTH
            and X.shape[0] * h >= FUSED_MIN_ELEMENTS):
        return cupy_fused_loss_and_grads(X, y, coefs, intercepts, activation, alpha, n_total)
    return cupy_loss_and_grads(X, y, coefs, intercepts, activation, alpha, n_total)


def step_for(activation, tiles: bool = False):
    """This backend's fast ``loss_and_grads`` for an activation record, or ``None``.

    ``tiles``: whether the (opt-in) tile kernels may serve small batches.
    """
    if None in (activation.cuda_forward, activation.cuda_forward_biased,
                activation.cuda_derivative):
        return None
    if tiles:
        return functools.partial(_cupy_step, activation=activation, tiles=True)
    return functools.partial(_cupy_step, activation=activation)
