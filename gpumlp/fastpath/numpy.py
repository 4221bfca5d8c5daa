"""The NumPy fast path: one hidden layer, rows in cache-sized chunks on every core.

Rows are processed in chunks whose hidden activations fit in the CPU's
cache, with every temporary preallocated and every elementwise operation in
place (``out=``), so the ``n x h`` activations never travel through main
memory; the bias rides in the product, and the activation's affine ``tanh``
form and derivative constants are applied to the small gradient matrices,
leaving three elementwise passes over each chunk. On several cores, one
block of rows per core, each in its own thread with a one-thread BLAS; a
single block's larger chunk products run on a one-thread BLAS too.

It serves the activations whose record has a ``tanh_form`` (sigmoid, tanh).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import wait

import numpy as np

from ..activations import get_activation
from ..kernels import add_l2, output_delta_scale

__all__ = ["numpy_loss_and_grads", "step_for"]

#: Bytes of hidden activations per chunk: small enough for a core's L2 cache.
CHUNK_BYTES = 1 << 19

#: Below this many rows per core, one thread does all the rows.
MIN_ROWS_PER_THREAD = 4096


_CORES = os.cpu_count() or 1

#: Scratch buffers by (thread, rows, f + 1, h, k, dtype), reused across steps:
#: a fit's every epoch needs the same ones. Only internal temporaries live
#: here; what the functions return is always freshly allocated.
_WORKSPACES: dict = {}
_WORKSPACES_LOCK = threading.Lock()


def _workspace(rows, f1, h, k, dtype):
    """``xa, xr, t, q, r, ones`` for a chunk: see :func:`_rows`."""
    key = (threading.get_ident(), rows, f1, h, k, dtype.str)
    buffers = _WORKSPACES.get(key)
    if buffers is None:
        xa = np.empty((rows, f1), dtype)     # [X_chunk, 1]
        xa[:, -1] = 1
        buffers = (
            xa,
            np.empty((rows, f1), dtype),     # [X_chunk, 1] * r, for one output
            np.empty((rows, h), dtype),      # t
            np.empty((rows, h), dtype),      # 1 - t^2, then for k > 1 the delta
            np.empty((rows, k), dtype),      # r
            np.ones(rows, dtype),            # column sums as matrix-vector products
        )
        with _WORKSPACES_LOCK:
            # Room for every pool thread and a few callers; the oldest goes first.
            while len(_WORKSPACES) >= 2 * _CORES + 4:
                _WORKSPACES.pop(next(iter(_WORKSPACES)))
            _WORKSPACES[key] = buffers
    return buffers


def _rows(X, y, W1a, W2, b2, form, start, stop, chunk_rows, scale):
    """Sums over rows ``start:stop``: squared error and the gradient pieces.

    Works with ``t = tanh(c z1)`` instead of ``a1`` (the activation's
    ``tanh_form``, ``a1 = s t + shift``), so
    that the affine map from ``t`` to ``a1`` and the derivative's constant
    factor are applied to the small gradient matrices, not to every ``n x h``
    element. ``W1a`` is ``c [W1; b1]``: the bias rides in the product on a
    column of ones. Returns ``sse, G, u, s_r`` as used by
    :func:`numpy_loss_and_grads`.
    """
    _, s, shift, _ = form
    f1, h = W1a.shape
    k, dtype = y.shape[1], X.dtype
    xa, xr, t, q, r, ones = _workspace(chunk_rows, f1, h, k, dtype)
    W2_s = s * W2
    offset = shift * W2.sum(axis=0) + b2     # a1 W2 + b2 = t (s W2) + offset
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
        np.matmul(tc, W2_s, out=rc)
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
#: Both globals are set under it: a fit in another thread (a Dask worker in
#: this process) must never see the pool without its BLAS controller.
_POOL_LOCK = threading.Lock()


#: One block's chunk products (``rows * (f + 1) * h`` multiply-adds) from which it
#: limits BLAS to one thread: below it a product costs about what setting the
#: limit does (some 30 microseconds), and none was seen to suffer from threads.
_THREADED_PRODUCT = 1 << 20


def _blas():
    """The BLAS thread controller (made once, with the pool's lock)."""
    global _BLAS
    with _POOL_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        return _BLAS


def _workers(n):
    """How many threads to split ``n`` rows over (one per core, enough rows each)."""
    return max(1, min(_CORES, n // MIN_ROWS_PER_THREAD))


def numpy_loss_and_grads(X, y, coefs, intercepts, activation, alpha=0.0, chunk_rows=None,
                         workers=None, n_total=None):
    """Loss and gradients of a one-hidden-layer network with a ``tanh`` form, in chunks.

    Same contract and mathematics as :func:`gpumlp.kernels.loss_and_grads`
    (plus, for direct callers, the L2 penalty ``alpha`` through
    :func:`gpumlp.kernels.add_l2`); see :mod:`gpumlp.kernels` for the
    conventions. Rows go through in cache-sized chunks with preallocated,
    in-place temporaries. With ``t = tanh(c z1)``, ``a1 = s t + shift`` and
    ``f'(z1) = g (1 - t^2)`` (the activation's ``tanh_form``), and
    ``r = (2/(n k)) (y_pred - y)``:

    * ``dW2 = a1^T r = s t^T r + shift 1 (1^T r)``, and ``db2 = 1^T r``;
    * ``[dW1; db1] = gamma [X 1]^T ((r W2^T) * (1 - t^2))``, which for one
      output is computed as ``gamma (([X 1] * r)^T (1 - t^2)) * w^T``.

    With several cores the rows are split into one contiguous block per core,
    each worked by a thread with a one-thread BLAS (NumPy releases the GIL in
    its loops), and the blocks' sums are added in a fixed order, so results
    are deterministic.
    """
    W1, W2 = coefs
    b1, b2 = intercepts
    n, k = y.shape
    f, h = W1.shape
    dtype = X.dtype
    form = get_activation(activation).tanh_form
    if form is None:
        raise ValueError(f"The NumPy fast path has no tanh form for {activation!r}.")
    c, a_scale, a_shift, gamma = form
    if chunk_rows is None:
        chunk_rows = max(64, CHUNK_BYTES // (h * dtype.itemsize))
    chunk_rows = min(chunk_rows, n)
    scale = dtype.type(output_delta_scale(n if n_total is None else n_total, k))
    W1a = np.empty((f + 1, h), dtype)
    W1a[:f] = W1
    W1a[f] = b1
    W1a *= dtype.type(c)
    workers = _workers(n) if workers is None else workers
    args = (X, y, W1a, W2, b2, form)
    if workers == 1:
        if chunk_rows * (f + 1) * h < _THREADED_PRODUCT:
            parts = [_rows(*args, 0, n, chunk_rows, scale)]
        else:
            # One block too has a one-thread BLAS: its chunk products fit a
            # core's cache, and a threaded BLAS on them mostly waits for busy
            # cores (a float32 fit of 2,000 rows ran 15-27x slower on a loaded
            # 2-core VM; float64's half-size chunks stayed under the threshold).
            with _blas().limit(limits=1, user_api="blas"):
                parts = [_rows(*args, 0, n, chunk_rows, scale)]
    else:
        global _POOL, _BLAS
        with _POOL_LOCK:
            if _POOL is None or _POOL._max_workers < workers:
                from concurrent.futures import ThreadPoolExecutor

                from threadpoolctl import ThreadpoolController

                _BLAS = ThreadpoolController()
                _POOL = ThreadPoolExecutor(workers, thread_name_prefix="gpumlp")
            pool, blas = _POOL, _BLAS
        bounds = [n * i // workers for i in range(workers + 1)]
        with blas.limit(limits=1, user_api="blas"):
            futures = [pool.submit(_rows, *args, bounds[i], bounds[i + 1],
                                    chunk_rows, scale) for i in range(workers)]
            try:
                parts = [future.result() for future in futures]
            finally:
                # On Ctrl-C the threads may still be inside BLAS: let them finish
                # before the thread limit is lifted, and before anyone exits.
                wait(futures)
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
    loss = np.asarray(sse / dtype.type(n * k), dtype=dtype)
    loss, coef_grads = add_l2(loss, [dW1, dW2], coefs, alpha,
                              n if n_total is None else n_total, k)
    return loss, coef_grads, [db1, db2]


def step_for(activation):
    """This backend's fast ``loss_and_grads`` for an activation record, or ``None``."""
    if activation.tanh_form is None:
        return None
    return functools.partial(numpy_loss_and_grads, activation=activation)
