#!/usr/bin/env python3
"""Where the C blocks beat the NumPy fast path: the measurements behind ``cblocks.MAX_WORK``.

For each size (n, f, h), float32, one sigmoid layer, one output: the time of
one epoch of full-batch descent by the C blocks (a block of epochs in one
call, per epoch, with the kernel's two threads from 4096 rows) and by the
NumPy fast path (``numpy_loss_and_grads``, the L2-free step ``p - rate g``,
on every core), in alternating rounds; the best round of each and their
ratio C / NumPy (below 1 the C blocks are faster). The timing is ``gpumlp
calibrate``'s (``cblocks._epoch_times``) over a longer ladder, and nothing
is stored. The epoch's work ``n h (f + k)`` is printed beside, since that
is what the dispatch compares with its line.

    python scripts/bench_cblocks.py
    GPUMLP_SIMD=avx2 OPENBLAS_CORETYPE=Haswell python scripts/bench_cblocks.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: cblocks.LADDER and two sizes above it, where the NumPy path is expected to lead.
SIZES = [(1_600, 10, 32), (10_000, 16, 64), (30_000, 32, 64), (100_000, 16, 64),
         (30_000, 32, 128), (100_000, 32, 128), (100_000, 64, 256), (300_000, 32, 128),
         (1_000_000, 32, 128)]


def main(argv=None):
    from gpumlp.fastpath import calibration, cblocks

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    isa = cblocks.chosen_isa()
    if isa is None:
        sys.exit("the C blocks are not available here (not built, or GPUMLP_SIMD=none)")
    results = []
    for n, f, h in SIZES:
        # The same timing as `gpumlp calibrate` (both paths on every core).
        c, numpy_time, ratio = cblocks._epoch_times(n, f, h, isa, args.rounds, 0.2)
        row = dict(n=n, f=f, h=h, work=n * h * (f + 1), isa=isa, c_ms=1e3 * c,
                   numpy_ms=1e3 * numpy_time, ratio=ratio, load=os.getloadavg()[0])
        results.append(row)
        print(f"{str((n, f, h)):18s} work 2^{np.log2(row['work']):5.2f}  C ({isa}) "
              f"{row['c_ms']:9.4f} ms  NumPy {row['numpy_ms']:9.4f} ms  C / NumPy {ratio:.2f}"
              f"  (load {row['load']:.1f})", flush=True)
    line = calibration.crossover([(r["work"], r["ratio"]) for r in results])
    print(f"C won up to a work of {line:,d} = 2^{np.log2(max(line, 1)):.2f} "
          f"(cblocks.MAX_WORK = 2^{np.log2(cblocks.MAX_WORK):.0f})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"key": calibration.cpu_key(isa), "rows": results, "line": line},
                      handle, indent=1)


if __name__ == "__main__":
    main()
