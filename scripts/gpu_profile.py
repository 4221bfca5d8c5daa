#!/usr/bin/env python3
"""Where a CuPy training step spends its time, and which fast-path variant wins.

Times (CUDA events, medians) the pieces of one full-batch step at
(1M, 32, 128) and the whole step for each CuPy variant: the generic array-API
path, the fused elementwise kernels (``cupy_loss_and_grads``) and the fused
row kernels (``cupy_fused_loss_and_grads``), after checking each against the
generic path; and the opt-in tile kernels (``tile_loss_and_grads``,
never run on a GPU before). Run on a CUDA machine:  python scripts/gpu_profile.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import cupy  # noqa: E402

from gpumlp import fastpath, kernels  # noqa: E402
from gpumlp.initialization import glorot_uniform  # noqa: E402


def time_ms(fn, repeats=30):
    for _ in range(3):
        fn()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def generic(X, y, coefs, intercepts):
    acts = kernels.forward(X, coefs, intercepts)
    loss = kernels.squared_error(y, acts[-1])
    cg, ig = kernels.backward(y, acts, coefs)
    return loss, cg, ig


def main():
    rows = []
    for n, f, h in [(1_000_000, 32, 128), (100_000, 64, 256), (10_000, 16, 64)]:
        for dtype in ("float32", "float64"):
            rng = np.random.default_rng(0)
            X = cupy.asarray(rng.standard_normal((n, f)).astype(dtype))
            y = cupy.asarray(np.sin(rng.standard_normal((n, 1))).astype(dtype))
            coefs, intercepts = glorot_uniform([f, h, 1], rng, dtype)
            coefs = [cupy.asarray(c) for c in coefs]
            intercepts = [cupy.asarray(b) for b in intercepts]
            ref = generic(X, y, coefs, intercepts)
            variants = {
                "generic": lambda: generic(X, y, coefs, intercepts),
                "elementwise": lambda: fastpath.cupy_loss_and_grads(
                    X, y, coefs, intercepts, "sigmoid", 0.0),
                "fused-rows": lambda: fastpath.cupy_fused_loss_and_grads(
                    X, y, coefs, intercepts, "sigmoid", 0.0),
            }
            # The opt-in tile kernels (issue 10), wherever they hold the network.
            if fastpath.tiles.plan_for(X, y, h, max_elements=None) is not None:
                variants["tiles"] = lambda: fastpath.tile_loss_and_grads(
                    X, y, coefs, intercepts, "sigmoid", 0.0)
            for name, fn in variants.items():
                got = fn()
                errs = [float(cupy.linalg.norm(a - b) / cupy.linalg.norm(b))
                        for a, b in zip([got[0], *got[1], *got[2]], [ref[0], *ref[1], *ref[2]])]
                rows.append(((n, f, h), dtype, name, time_ms(fn), max(errs)))
                print(rows[-1], flush=True)
            if (n, dtype) == (1_000_000, "float32"):
                a = X @ coefs[0]
                d = cupy.empty_like(a)
                r = cupy.empty(n, dtype=dtype)
                fwd, bwd = fastpath.cupy._row_kernels("sigmoid", h, cupy.dtype(dtype))
                threads, fb, bb = fastpath.cupy._launch_shape(n)
                partial = cupy.empty((bb * threads // 32, 2, h), dtype=dtype)
                w = cupy.ascontiguousarray(coefs[1][:, 0])
                yc = cupy.ascontiguousarray(y[:, 0])
                pieces = {
                    "X @ W1": lambda: X @ coefs[0],
                    "forward rows": lambda: fwd((fb,), (threads,), (a, intercepts[0], w,
                                                intercepts[1], yc, r, cupy.int64(n))),
                    "backward rows": lambda: bwd((bb,), (threads,), (a, r, w, d, partial,
                                                 cupy.int64(n))),
                    "partial sums": lambda: partial.sum(axis=0),
                    "X.T @ d": lambda: X.T @ d,
                    "X.T @ d, 16-way split": lambda: cupy.matmul(
                        X.reshape(16, n // 16, f).transpose(0, 2, 1),
                        d.reshape(16, n // 16, h)).sum(axis=0),
                    "copy 512 MB": lambda: a.copy(),
                }
                for name, fn in pieces.items():
                    print(f"  piece {name:24s} {time_ms(fn):8.3f} ms", flush=True)
    print("\n(n, f, h)            dtype    variant        step ms   max rel err vs generic")
    for size, dtype, name, ms, err in rows:
        print(f"{str(size):20s} {dtype:8s} {name:12s} {ms:9.3f}   {err:.2e}")


if __name__ == "__main__":
    main()
