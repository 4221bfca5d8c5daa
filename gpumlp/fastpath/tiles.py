"""Tile kernels for CuPy at small sizes: one step in two launches, no cuBLAS.

**Off by default, and never run on a GPU yet**: written and compile-checked
(``nvcc``) on a machine without one. It runs only when opted in
(``GPUMLP_CUDA_GRAPH=1``, see :mod:`gpumlp.fastpath`), and then only below
:data:`MAX_ELEMENTS`.

One step of a one-hidden-layer network is two kernels:

1. :data:`SOURCE`'s ``gpumlp_tiles``: each thread block is one *group* of
   consecutive rows. It holds ``W1, W2, b1, b2`` in shared memory, and for
   each tile of up to ``R`` of its rows computes ``a1``, the output, the
   residual, ``delta2``, ``delta1`` and adds each row's share of ``dW1,
   dW2, db1, db2`` and of the squared error to per-thread sums, row by row
   in order. Each group writes one row of a ``partial`` buffer
   (``groups x width``). No atomics.
2. ``gpumlp_tiles_reduce``: adds the groups' rows in group order and either
   writes the gradients (the fast-path step, :func:`tile_loss_and_grads`)
   or, for :mod:`gpumlp.fastpath.graph`, adds the L2 term, takes the
   gradient-descent step ``p - lr * g`` and writes the loss (penalty
   included, at the old parameters) and a finiteness flag.

So every sum has one fixed order, the same on every GPU (the groups are
fixed numbers, not the GPU's): results are bitwise repeatable. The kernels are compiled with
``--fmad=false``, so each product and sum is rounded on its own, as NumPy
rounds it; :func:`model_loss_and_grads` and :class:`ModelBlocks` are a NumPy
model of exactly this algorithm (the same groups, the same order of every
sum, the same formulas), which the tests check against the generic kernels on
the CPU and, on a GPU, against the kernels themselves (bit for bit where the
activation has no transcendental function: ``relu`` and ``identity``). The
model is a specification for the tests, never a training path.

Layouts, stated once: the parameters are one flat vector ``[W1 (f x h,
row-major), W2 (h x k), b1 (h), b2 (k)]``, the order of ``coefs +
intercepts``; a ``partial`` row is the gradients in that layout, then the
squared error, then (group 0 only) ``sum W1**2 + sum W2**2``.

CuPy is imported inside the functions, so importing this module does not need it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..activations import Activation, get_activation
from ..kernels import add_l2
from ..losses import LOSSES

__all__ = ["MAX_ELEMENTS", "ModelBlocks", "SOURCE", "TilePlan", "model_loss_and_grads",
           "plan_for", "plan_tiles", "render_source", "tile_loss_and_grads"]

#: Threads per block, in both kernels. Part of the algorithm: the penalty's
#: tree sum has this shape.
THREADS = 256

#: The rows are spread evenly over ``ceil(n / MIN_GROUP_ROWS)`` groups, at
#: most ``MAX_GROUPS``. Fixed numbers, not the GPU's: the summation order, and
#: so the result, is the same on every GPU. (To be tuned on a GPU; a change
#: moves results within the agreement tolerances, and the model follows.)
MIN_GROUP_ROWS = 32
MAX_GROUPS = 256

#: Rows per shared-memory tile, at most (fewer when shared memory is short).
#: It changes no result: each thread adds its rows in order across tiles.
MAX_TILE_ROWS = 32

#: Per-thread partial sums, at most (they live in registers).
MAX_PER_THREAD = 128

#: The dispatch picks the tile kernels (and the graph of
#: :mod:`gpumlp.fastpath.graph`) only for ``n * h`` up to this. A placeholder
#: until measured on a GPU (``ci/gpu`` runs the benchmark that decides it).
MAX_ELEMENTS = 1 << 22

#: Shared memory a block may use without opting in, on every CUDA GPU.
DEFAULT_SHARED_BYTES = 48 * 1024


@dataclass(frozen=True)
class TilePlan:
    """How ``n`` rows of a ``(f, h, k)`` network are cut into groups and tiles.

    Attributes
    ----------
    n, f, h, k : int
        Rows, features, hidden units, outputs.
    itemsize : int
        Bytes per value (4 for float32, 8 for float64).
    groups : int
        Thread blocks of the tile kernel; group ``g`` holds rows
        ``[g * group_rows, min(n, (g + 1) * group_rows))``.
    group_rows : int
    tile_rows : int
        Rows per shared-memory tile (``R``).
    """

    n: int
    f: int
    h: int
    k: int
    itemsize: int
    groups: int
    group_rows: int
    tile_rows: int

    @property
    def n_grads(self) -> int:
        """Entries of the flat gradient (and parameter) vector."""
        return self.f * self.h + self.h * self.k + self.h + self.k

    @property
    def width(self) -> int:
        """Entries of one ``partial`` row: gradients, squared error, penalty."""
        return self.n_grads + 2

    @property
    def per_thread(self) -> int:
        """Partial sums each thread keeps (gradients and the squared error)."""
        return -(-(self.n_grads + 1) // THREADS)

    @property
    def shared_bytes(self) -> int:
        """Dynamic shared memory of one tile-kernel block."""
        return _shared_bytes(self.f, self.h, self.k, self.itemsize, self.tile_rows)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        """The parameters' shapes, in the flat layout's order."""
        f, h, k = self.f, self.h, self.k
        return [(f, h), (h, k), (h,), (k,)]


def _shared_bytes(f, h, k, itemsize, tile_rows):
    weights = f * h + h * k + h + k
    # Per tile: rows of X and y; a1 and delta1; the error and delta2.
    tile = tile_rows * (f + k + 2 * h + 2 * k)
    return itemsize * (weights + tile + THREADS)


def plan_tiles(n: int, f: int, h: int, k: int, itemsize: int,
               shared_limit: int | None = DEFAULT_SHARED_BYTES) -> TilePlan | None:
    """The tiling of ``n`` rows, or ``None`` when the kernels cannot hold this network.

    Parameters
    ----------
    n, f, h, k : int
        Rows, features, hidden units, outputs (all positive).
    itemsize : int
        4 (float32) or 8 (float64).
    shared_limit : int or None
        Bytes of shared memory one block may use; ``None`` skips the check
        (the NumPy model needs only the groups).

    Returns
    -------
    TilePlan or None
        ``None`` when the weights and one row of each tile array do not fit
        ``shared_limit``, or a thread would keep more than
        :data:`MAX_PER_THREAD` partial sums.
    """
    if min(n, f, h, k) < 1:
        raise ValueError(f"plan_tiles needs positive sizes, got n={n}, f={f}, h={h}, k={k}")
    groups = min(MAX_GROUPS, -(-n // MIN_GROUP_ROWS))
    group_rows = -(-n // groups)
    groups = -(-n // group_rows)            # no empty group
    tile_rows = MAX_TILE_ROWS
    if shared_limit is not None:
        while tile_rows > 1 and _shared_bytes(f, h, k, itemsize, tile_rows) > shared_limit:
            tile_rows //= 2
        if _shared_bytes(f, h, k, itemsize, tile_rows) > shared_limit:
            return None
    plan = TilePlan(n, f, h, k, itemsize, groups, group_rows, tile_rows)
    if plan.per_thread > MAX_PER_THREAD:
        return None
    return plan


# ----------------------------------------------------------------- CUDA C
#: The two kernels, as a template: ``render_source`` fills in the type, the
#: sizes and the activation's C forms (from its record).
SOURCE = r"""
typedef %(ctype)s T;
#define F %(f)d
#define H %(h)d
#define K %(k)d
#define R %(tile_rows)d
#define THREADS %(threads)d
#define PER %(per_thread)d
#define NW1 (F * H)
#define NW2 (H * K)
#define NG (NW1 + NW2 + H + K)   /* the flat gradient: dW1, dW2, db1, db2 */
#define WIDTH (NG + 2)           /* a partial row: NG, squared error, penalty */

__device__ __forceinline__ T activate(T z) { return %(activation)s; }
__device__ __forceinline__ T derivative(T a) { return %(derivative)s; }

/* sum v[q]**2 over the block: each thread in order over q = t, t + THREADS,
   ..., then a tree over the threads (fixed shape). Every thread returns it. */
__device__ T block_sum_of_squares(const T* v, int count, T* scratch) {
    const int t = threadIdx.x;
    T acc = (T)0;
    for (int q = t; q < count; q += THREADS) acc += v[q] * v[q];
    scratch[t] = acc;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride >>= 1) {
        if (t < stride) scratch[t] += scratch[t + stride];
        __syncthreads();
    }
    const T total = scratch[0];
    __syncthreads();
    return total;
}

/* One block per group of rows: forward and backward on tiles of R rows with
   the weights in shared memory; each thread adds, row by row in order, its
   entries of the group's gradient and squared error, written to
   partial[group][:NG + 1]. Group 0 also writes sum W1**2 + sum W2**2 to
   partial[0][NG + 1] when penalty is set. */
extern "C" __global__ void __launch_bounds__(THREADS) gpumlp_tiles(
        const T* __restrict__ X, const T* __restrict__ y,
        const T* __restrict__ W1, const T* __restrict__ W2,
        const T* __restrict__ b1, const T* __restrict__ b2,
        T* __restrict__ partial, long long n, long long group_rows, T scale,
        int penalty) {
    extern __shared__ __align__(16) unsigned char shared_bytes[];
    T* sW1 = (T*)shared_bytes;
    T* sW2 = sW1 + NW1;
    T* sb1 = sW2 + NW2;
    T* sb2 = sb1 + H;
    T* sX = sb2 + K;          /* R x F */
    T* sY = sX + R * F;       /* R x K */
    T* sA = sY + R * K;       /* R x H: a1 */
    T* sD1 = sA + R * H;      /* R x H: delta1 */
    T* sE = sD1 + R * H;      /* R x K: y_pred - y */
    T* sD2 = sE + R * K;      /* R x K: delta2 */
    T* scratch = sD2 + R * K; /* THREADS */
    const int t = threadIdx.x;
    const long long group = blockIdx.x;

    for (int q = t; q < NW1; q += THREADS) sW1[q] = W1[q];
    for (int q = t; q < NW2; q += THREADS) sW2[q] = W2[q];
    for (int q = t; q < H; q += THREADS) sb1[q] = b1[q];
    for (int q = t; q < K; q += THREADS) sb2[q] = b2[q];
    __syncthreads();
    if (penalty && group == 0) {   /* the same branch for the whole block */
        const T s1 = block_sum_of_squares(sW1, NW1, scratch);
        const T s2 = block_sum_of_squares(sW2, NW2, scratch);
        if (t == 0) partial[WIDTH - 1] = s1 + s2;
    }

    T acc[PER];
    #pragma unroll
    for (int m = 0; m < PER; ++m) acc[m] = (T)0;
    const long long first = group * group_rows;
    const long long end = first + group_rows < n ? first + group_rows : n;
    for (long long start = first; start < end; start += R) {
        const int rows = end - start < R ? (int)(end - start) : R;
        for (int e = t; e < rows * F; e += THREADS) sX[e] = X[start * F + e];
        for (int e = t; e < rows * K; e += THREADS) sY[e] = y[start * K + e];
        __syncthreads();
        /* a1 = f(X W1 + b1) */
        for (int e = t; e < rows * H; e += THREADS) {
            const int r = e / H, j = e - r * H;
            T z = (T)0;
            for (int i = 0; i < F; ++i) z += sX[r * F + i] * sW1[i * H + j];
            sA[e] = activate(z + sb1[j]);
        }
        __syncthreads();
        /* the residual y_pred - y, and delta2 = scale * (y_pred - y) */
        for (int e = t; e < rows * K; e += THREADS) {
            const int r = e / K, c = e - r * K;
            T o = (T)0;
            for (int j = 0; j < H; ++j) o += sA[r * H + j] * sW2[j * K + c];
            const T err = (o + sb2[c]) - sY[e];
            sE[e] = err;
            sD2[e] = scale * err;
        }
        __syncthreads();
        /* delta1 = (delta2 W2^T) * f'(a1) */
        for (int e = t; e < rows * H; e += THREADS) {
            const int r = e / H, j = e - r * H;
            T s = (T)0;
            for (int c = 0; c < K; ++c) s += sD2[r * K + c] * sW2[j * K + c];
            sD1[e] = s * derivative(sA[e]);
        }
        __syncthreads();
        /* this thread's entries, row by row in order */
        #pragma unroll
        for (int m = 0; m < PER; ++m) {
            const int q = t + m * THREADS;
            if (q < NW1) {
                const int i = q / H, j = q - i * H;
                for (int r = 0; r < rows; ++r) acc[m] += sX[r * F + i] * sD1[r * H + j];
            } else if (q < NW1 + NW2) {
                const int j = (q - NW1) / K, c = (q - NW1) - j * K;
                for (int r = 0; r < rows; ++r) acc[m] += sA[r * H + j] * sD2[r * K + c];
            } else if (q < NW1 + NW2 + H) {
                const int j = q - NW1 - NW2;
                for (int r = 0; r < rows; ++r) acc[m] += sD1[r * H + j];
            } else if (q < NG) {
                const int c = q - NW1 - NW2 - H;
                for (int r = 0; r < rows; ++r) acc[m] += sD2[r * K + c];
            } else if (q == NG) {
                for (int e = 0; e < rows * K; ++e) acc[m] += sE[e] * sE[e];
            }
        }
        __syncthreads();   /* the next tile overwrites the shared rows */
    }
    T* out = partial + group * WIDTH;
    #pragma unroll
    for (int m = 0; m < PER; ++m) {
        const int q = t + m * THREADS;
        if (q <= NG) out[q] = acc[m];
    }
}

/* Entry q of the flat vector (or the loss, q == NG): the groups' rows added
   in group order. Without update: out = the gradient. With update: the L2
   term l2 * W (when has_l2) joins the weights' gradients, out = params - rate
   * gradient, and a non-finite new value clears *finite. The loss, at the old
   parameters: the squared error over `entries`, plus penalty_scale times the
   penalty when has_l2. */
extern "C" __global__ void __launch_bounds__(THREADS) gpumlp_tiles_reduce(
        const T* __restrict__ partial, long long groups, const T* __restrict__ params,
        T* __restrict__ out, const T* __restrict__ rate, int update, int has_l2, T l2,
        T entries, T penalty_scale, T* __restrict__ loss, T* __restrict__ finite) {
    const int q = blockIdx.x * THREADS + threadIdx.x;
    if (q > NG) return;
    T s = (T)0;
    for (long long g = 0; g < groups; ++g) s += partial[g * WIDTH + q];
    if (q == NG) {
        T value = s / entries;
        if (has_l2) value += penalty_scale * partial[WIDTH - 1];
        *loss = value;
        return;
    }
    if (has_l2 && q < NW1 + NW2) s += l2 * params[q];
    if (!update) {
        out[q] = s;
        return;
    }
    const T p = params[q] - rate[0] * s;
    out[q] = p;
    if (!(p - p == (T)0)) *finite = (T)0;   /* NaN or infinite */
}
"""

#: Options for NVRTC (and ``nvcc`` in the tests): no fused multiply-add, so
#: every product and sum is rounded on its own, as in the NumPy model.
COMPILE_OPTIONS = ("-std=c++14", "--fmad=false")


def render_source(activation: str | Activation, plan: TilePlan, dtype: DTypeLike) -> str:
    """The CUDA C of both kernels for one activation, plan and dtype.

    Parameters
    ----------
    activation : str or Activation
        Its record must carry ``cuda_forward`` and ``cuda_derivative``.
    plan : TilePlan
    dtype : numpy dtype or str
        ``float32`` or ``float64``.
    """
    act = get_activation(activation)
    if act.cuda_forward is None or act.cuda_derivative is None:
        raise ValueError(f"activation {act.name!r} has no CUDA form")
    ctype = {"float32": "float", "float64": "double"}[np.dtype(dtype).name]
    return SOURCE % {
        "ctype": ctype, "f": plan.f, "h": plan.h, "k": plan.k,
        "tile_rows": plan.tile_rows, "threads": THREADS, "per_thread": plan.per_thread,
        "activation": act.cuda_forward, "derivative": act.cuda_derivative,
    }


def _scale(n_total, k):
    """The output delta's scale, from the loss record the generic kernels use."""
    return LOSSES["squared_error"].delta_scale(n_total, k)


# ------------------------------------------------------------ NumPy model
def _ordered_sum(rows):
    """``0 + rows[0] + rows[1] + ...`` along axis 0, each addition rounded in order."""
    zero = np.zeros((1,) + rows.shape[1:], dtype=rows.dtype)
    return np.cumsum(np.concatenate([zero, rows]), axis=0)[-1]


def _model_group(X, y, W1, W2, b1, b2, act, scale):
    """One group's partial row without the penalty: ``(n_grads + 1,)``."""
    n, f = X.shape
    h, k = W2.shape
    z = np.zeros((n, h), dtype=X.dtype)
    for i in range(f):
        z = z + X[:, i:i + 1] * W1[i]
    a = act.forward(z + b1)
    o = np.zeros((n, k), dtype=X.dtype)
    for j in range(h):
        o = o + a[:, j:j + 1] * W2[j]
    err = (o + b2) - y
    delta2 = scale * err
    s = np.zeros((n, h), dtype=X.dtype)
    for c in range(k):
        s = s + delta2[:, c:c + 1] * W2[:, c]
    delta1 = s if act.derivative is None else s * act.derivative(a)
    rows = np.concatenate([
        (X[:, :, None] * delta1[:, None, :]).reshape(n, f * h),
        (a[:, :, None] * delta2[:, None, :]).reshape(n, h * k),
        delta1, delta2], axis=1)
    return np.concatenate([_ordered_sum(rows), _ordered_sum((err * err).reshape(-1, 1))])


def _model_penalty(W):
    """``sum W**2`` as the kernel's block does: per thread in order, then the tree."""
    squares = (W * W).ravel()
    padded = np.zeros(-(-squares.size // THREADS) * THREADS, dtype=W.dtype)
    padded[:squares.size] = squares
    sums = _ordered_sum(padded.reshape(-1, THREADS))
    stride = THREADS // 2
    while stride:
        sums[:stride] = sums[:stride] + sums[stride:2 * stride]
        stride //= 2
    return sums[0]


def _model_totals(X, y, params, act, plan, scale):
    """The reduced vector ``(n_grads + 1,)`` and, from group 0, the penalty."""
    W1, W2, b1, b2 = params
    rows = [_model_group(X[g * plan.group_rows:(g + 1) * plan.group_rows],
                         y[g * plan.group_rows:(g + 1) * plan.group_rows],
                         W1, W2, b1, b2, act, scale) for g in range(plan.groups)]
    totals = _ordered_sum(np.stack(rows))
    penalty = _model_penalty(W1) + _model_penalty(W2)
    return totals, penalty


def _split(flat, plan):
    """The flat layout as ``[W1, W2, b1, b2]`` views."""
    out, offset = [], 0
    for shape in plan.shapes:
        size = math.prod(shape)
        out.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return out


def model_loss_and_grads(X: np.ndarray, y: np.ndarray, coefs: list, intercepts: list,
                         activation: str | Activation, alpha: float = 0.0,
                         n_total: int | None = None) -> tuple:
    """The tile kernels' step, computed by NumPy in their order: the NumPy model.

    Same contract as :func:`gpumlp.kernels.loss_and_grads` (plus, like the
    other fast paths, ``alpha`` for direct callers). For NumPy arrays of one
    hidden layer.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray, shape (n_samples, n_outputs)
    coefs, intercepts : lists of two ndarrays
    activation : str or Activation
    alpha : float
    n_total : int, optional
        See :func:`gpumlp.kernels.backward`.

    Returns
    -------
    loss, coef_grads, intercept_grads
    """
    act = get_activation(activation)
    (n, f), (h, k) = X.shape, coefs[1].shape
    plan = plan_tiles(n, f, h, k, X.dtype.itemsize, shared_limit=None)
    scale = _scale(n if n_total is None else n_total, k)
    totals, _ = _model_totals(X, y, [*coefs, *intercepts], act, plan, scale)
    W1, W2, b1, b2 = _split(totals[:plan.n_grads], plan)
    loss = np.asarray(totals[plan.n_grads] / X.dtype.type(n * k))
    loss, coef_grads = add_l2(loss, [W1, W2], coefs, alpha,
                              n if n_total is None else n_total, k)
    return loss, coef_grads, [b1, b2]


class ModelBlocks:
    """The NumPy model of :class:`gpumlp.fastpath.graph.GraphBlocks` (for the tests).

    ``run`` takes the same arguments and gives the same kind of results as
    the CUDA graph's, computed epoch by epoch in the kernels' order.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray, shape (n_samples, n_outputs)
    activation : str or Activation
    alpha : float
        L2 penalty strength.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, activation: str | Activation,
                 alpha: float = 0.0):
        self.X, self.y, self.alpha = X, y, float(alpha)
        self.activation = get_activation(activation)
        (n, f), k = X.shape, y.shape[1]
        self._nfk = (n, f, k)

    def run(self, params: list, rates: list[float]) -> list[tuple]:
        """``len(rates)`` epochs of full-batch descent from ``params``.

        Parameters
        ----------
        params : list of arrays
            ``[W1, W2, b1, b2]``.
        rates : list of float
            Each epoch's learning rate.

        Returns
        -------
        list of (params, loss, finite)
            Per epoch: the new parameters, the loss at the old ones (penalty
            included, as the generic step reports it) and 1 or 0 (all new
            parameters finite), as 0-d arrays of the data's dtype.
        """
        n, f, k = self._nfk
        h = params[0].shape[1]
        dtype = self.X.dtype
        plan = plan_tiles(n, f, h, k, dtype.itemsize, shared_limit=None)
        scale = _scale(n, k)
        flat = np.concatenate([p.ravel() for p in params])
        results = []
        for rate in rates:
            totals, penalty = _model_totals(self.X, self.y, _split(flat, plan),
                                            self.activation, plan, scale)
            grads = totals[:plan.n_grads]
            n_weights = plan.f * plan.h + plan.h * plan.k
            if self.alpha:
                grads = np.concatenate([grads[:n_weights]
                                        + (self.alpha * scale) * flat[:n_weights],
                                        grads[n_weights:]])
            loss = totals[plan.n_grads] / dtype.type(n * k)
            if self.alpha:
                loss = loss + ((0.5 * self.alpha) * scale) * penalty
            flat = flat - rate * grads
            finite = np.asarray(np.all(np.isfinite(flat)), dtype=dtype)
            results.append((_split(flat, plan), np.asarray(loss, dtype=dtype), finite))
        return results


# ------------------------------------------------------------------- CuPy
_MODULES = {}


def _kernels(activation, plan, dtype):
    """Compile (once per activation, sizes, dtype and GPU) the two kernels.

    Per GPU, because the shared-memory opt-in is a setting of the kernel on
    the device it was set on.
    """
    import cupy

    act = get_activation(activation)
    key = (act.name, plan.f, plan.h, plan.k, plan.tile_rows, np.dtype(dtype).str,
           cupy.cuda.runtime.getDevice())
    if key not in _MODULES:
        module = cupy.RawModule(code=render_source(act, plan, dtype), options=COMPILE_OPTIONS)
        tiles = module.get_function("gpumlp_tiles")
        if plan.shared_bytes > DEFAULT_SHARED_BYTES:
            tiles.max_dynamic_shared_size_bytes = plan.shared_bytes
        _MODULES[key] = (tiles, module.get_function("gpumlp_tiles_reduce"))
    return _MODULES[key]


#: ``cudaDevAttrMaxSharedMemoryPerBlockOptin`` in the CUDA runtime's enum.
_SHARED_OPTIN_ATTRIBUTE = 97


@functools.cache
def _shared_limit(device_id):
    """The most dynamic shared memory one block may opt in to, on this GPU."""
    import cupy

    return int(cupy.cuda.runtime.deviceGetAttribute(_SHARED_OPTIN_ATTRIBUTE, device_id))


def plan_for(X: Any, y: Any, h: int, *,
             max_elements: int | None = MAX_ELEMENTS) -> TilePlan | None:
    """The plan for CuPy arrays on the current GPU, or ``None`` (too large, or no room).

    ``None`` also when ``n * h`` exceeds ``max_elements`` (the dispatch's
    threshold; ``None``: no limit) or the dtype is neither float32 nor float64.
    """
    import cupy

    (n, f), k = X.shape, y.shape[1]
    if X.dtype.name not in ("float32", "float64"):
        return None
    if max_elements is not None and n * h > max_elements:
        return None
    # The kernels run on the current device, as every CuPy call here does.
    return plan_tiles(n, f, h, k, X.dtype.itemsize,
                      _shared_limit(cupy.cuda.runtime.getDevice()))


def launch_step(kernels: tuple, plan: TilePlan, X: Any, y: Any, params: list, partial: Any,
                *, scale: float, penalty: bool) -> None:
    """Launch the tile kernel: ``partial`` gets each group's row (no host read).

    Parameters
    ----------
    kernels : tuple
        The compiled ``(tile, reduce)`` kernels for ``plan``.
    plan : TilePlan
    X : cupy.ndarray, shape (n, f)
    y : cupy.ndarray, shape (n, k)
        C-contiguous, the kernels' dtype.
    params : list of cupy.ndarray
        ``[W1, W2, b1, b2]``, C-contiguous.
    partial : cupy.ndarray, shape (plan.groups, plan.width)
    scale : float
        The output delta's scale, ``2 / (n_total k)``.
    penalty : bool
        Whether group 0 also writes ``sum W1**2 + sum W2**2``.
    """
    import cupy

    tiles, _ = kernels
    dtype = X.dtype
    tiles((plan.groups,), (THREADS,),
          (X, y, *params, partial, cupy.int64(plan.n), cupy.int64(plan.group_rows),
           dtype.type(scale), np.int32(bool(penalty))),
          shared_mem=plan.shared_bytes)


def reduce_blocks(plan: TilePlan) -> int:
    """Thread blocks of the reduce kernel: one thread per flat entry and the loss."""
    return -(-(plan.n_grads + 1) // THREADS)


def tile_loss_and_grads(X: Any, y: Any, coefs: list, intercepts: list,
                        activation: str | Activation, alpha: float = 0.0,
                        n_total: int | None = None) -> tuple:
    """Loss and gradients of a one-hidden-layer network by the two tile kernels.

    Same contract and mathematics as :func:`gpumlp.kernels.loss_and_grads`
    (plus, for direct callers, the L2 penalty ``alpha``). Two kernel
    launches, no cuBLAS call and no host read; every sum in a fixed order.

    Raises
    ------
    ValueError
        When the network does not fit the kernels here (see :func:`plan_for`;
        the dispatch asks first, so it never sees this).
    """
    import cupy

    h = coefs[0].shape[1]
    plan = plan_for(X, y, h, max_elements=None)
    if plan is None:
        raise ValueError(f"the tile kernels cannot hold this network: n={X.shape[0]}, "
                         f"f={X.shape[1]}, h={h}, k={y.shape[1]}, {X.dtype}")
    dtype = X.dtype
    kernels = _kernels(activation, plan, dtype)
    params = [cupy.ascontiguousarray(p) for p in (*coefs, *intercepts)]
    n, k = y.shape
    partial = cupy.empty((plan.groups, plan.width), dtype=dtype)
    launch_step(kernels, plan, cupy.ascontiguousarray(X), cupy.ascontiguousarray(y), params,
                partial, scale=_scale(n if n_total is None else n_total, k), penalty=False)
    grads = cupy.empty(plan.n_grads, dtype=dtype)
    loss = cupy.empty((), dtype=dtype)
    unused = cupy.empty(1, dtype=dtype)
    zero = dtype.type(0)
    kernels[1]((reduce_blocks(plan),), (THREADS,),
               (partial, cupy.int64(plan.groups), partial, grads, partial, np.int32(0),
                np.int32(0), zero, dtype.type(n * k), zero, loss, unused))
    W1, W2, b1, b2 = _split(grads, plan)
    loss, coef_grads = add_l2(loss, [W1, W2], coefs, alpha, n if n_total is None else n_total,
                              k)
    return loss, coef_grads, [b1, b2]
