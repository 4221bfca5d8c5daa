#!/usr/bin/env python3
"""Where the C blocks beat the NumPy fast path: the measurements behind ``cblocks.MAX_WORK``.

For each size (n, f, h), float32, one sigmoid layer, one output: the time of
one epoch of full-batch descent by the C blocks (a block of epochs in one
call, per epoch) and by the NumPy fast path (``numpy_loss_and_grads``, the
L2-free step ``p - rate g``, on every core), in alternating rounds; the best
round of each and the median of the within-round ratios C / NumPy (below 1
the C blocks are faster). The epoch's work ``n h (f + k)`` is printed beside,
since that is what the dispatch compares with ``MAX_WORK``.

    python scripts/bench_cblocks.py
    GPUMLP_SIMD=avx2 OPENBLAS_CORETYPE=Haswell python scripts/bench_cblocks.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = [(1_600, 10, 32), (10_000, 16, 64), (30_000, 32, 64), (30_000, 32, 128),
         (100_000, 16, 64), (100_000, 32, 128), (100_000, 64, 256)]


def main(argv=None):
    from gpumlp.activations import get_activation
    from gpumlp.fastpath import cblocks
    from gpumlp.fastpath.numpy import numpy_loss_and_grads
    from gpumlp.initialization import glorot_uniform

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    isa = cblocks.chosen_isa()
    if isa is None:
        sys.exit("the C blocks are not available here (not built, or GPUMLP_SIMD=none)")
    sigmoid = get_activation("sigmoid")
    results = []
    for n, f, h in SIZES:
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n, f)).astype(np.float32)
        y = rng.standard_normal((n, 1)).astype(np.float32)
        coefs, intercepts = glorot_uniform([f, h, 1], rng)
        params = [p.astype(np.float32) for p in coefs + intercepts]
        blocks = cblocks.CBlocks(X, y, h, sigmoid, 0.0, isa)
        # About 0.2 s per timing, at least one epoch.
        epochs = int(max(1, min(64, 0.2 / (2e-9 * n * h * (f + 1) + 1e-5))))

        def c_epochs():
            blocks.run(params, [0.01] * epochs)

        def numpy_epochs():
            p = params
            for _ in range(epochs):
                _, coef_grads, intercept_grads = numpy_loss_and_grads(X, y, p[:2], p[2:],
                                                                      sigmoid)
                p = [w - 0.01 * g for w, g in zip(p, coef_grads + intercept_grads)]

        c_epochs(), numpy_epochs()
        times = {"c": [], "numpy": []}
        for i in range(args.rounds):
            for name, fn in sorted({"c": c_epochs, "numpy": numpy_epochs}.items(),
                                   reverse=bool(i % 2)):
                start = time.perf_counter()
                fn()
                times[name].append(1e3 * (time.perf_counter() - start) / epochs)
        ratio = float(np.median(np.asarray(times["c"]) / np.asarray(times["numpy"])))
        row = dict(n=n, f=f, h=h, work=n * h * (f + 1), isa=isa, c_ms=min(times["c"]),
                   numpy_ms=min(times["numpy"]), ratio=ratio)
        results.append(row)
        print(f"{str((n, f, h)):18s} work 2^{np.log2(row['work']):5.2f}  C ({isa}) "
              f"{row['c_ms']:9.4f} ms  NumPy {row['numpy_ms']:9.4f} ms  C / NumPy {ratio:.2f}",
              flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
