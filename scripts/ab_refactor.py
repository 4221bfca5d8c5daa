#!/usr/bin/env python3
"""A/B of the one-fit-flow refactor (issue 9): steps and minibatch epochs, before and after.

The package as it stood before the refactor (commit 848cf2e) is imported as
``gpumlp_base`` beside the current ``gpumlp``, in the same process, and the
two are timed alternately, seven times each; the minimum over the
alternations is compared. On this project's VM, separate runs of
``scripts/bench.py`` for each tree moved by up to 2x from run to run (its
memory bandwidth varies), which drowns a 5% criterion; alternating in one
process does not.

    git worktree add /tmp/base 848cf2e && mkdir -p /tmp/pkgs
    cp -r /tmp/base/gpumlp /tmp/pkgs/gpumlp_base
    PYTHONPATH=/tmp/pkgs python scripts/ab_refactor.py --sizes small,medium,large
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SIZES = {"small": (10_000, 16, 64), "medium": (100_000, 64, 256),
         "large": (1_000_000, 32, 128)}
REPEATS = {"small": 50, "medium": 8, "large": 3}


def alternate(before, after, repeats, rounds=7):
    """Minimum time per call (ms) of each, timed alternately."""
    times = ([], [])
    for _ in range(rounds):
        for fn, out in zip((before, after), times):
            fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            out.append((time.perf_counter() - start) / repeats * 1e3)
    return min(times[0]), min(times[1])


def trainers(X, y, dtype, h):
    from gpumlp_base.training import GDSolver
    from gpumlp_base.training import Trainer as Before

    from gpumlp.activations import get_activation
    from gpumlp.devices import Device
    from gpumlp.initialization import glorot_uniform
    from gpumlp.solvers import GradientDescent
    from gpumlp.sources import ArraySource, Network
    from gpumlp.training import Trainer, compiled_step

    f = X.shape[1]
    coefs, intercepts = glorot_uniform([f, h, 1], np.random.default_rng(0), dtype)
    old = Before("sigmoid", GDSolver(0.01), 0.0, 2)
    old.params = [p.copy() for p in coefs + intercepts]
    solver, params = GradientDescent(0.01), [p.copy() for p in coefs + intercepts]
    new = Trainer(Network(2, get_activation("sigmoid"), True), solver, 0.0, params,
                  solver.init_state(params))
    step = compiled_step(Device("cpu"), new.network, solver, 0.0, 1)
    source = ArraySource(X, y, Device("cpu"))
    return old, new, step, source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small,medium,large")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    for size in args.sizes.split(","):
        n, f, h = SIZES[size]
        for dtype in ("float32", "float64"):
            X = rng.standard_normal((n, f)).astype(dtype)
            y = np.sin(X[:, :1]).astype(dtype)
            old, new, step, source = trainers(X, y, dtype, h)

            def old_step():
                loss, grads = old.batch_loss_and_grads(X, y)
                old.params = old.solver.update(old.params, grads)

            def new_step():
                new.params, new.state, _ = step(new.params, new.state, X, y, None)

            before, after = alternate(old_step, new_step, REPEATS[size])
            print(f"{str((n, f, h)):18s} {dtype} step   before {before:9.3f} ms  "
                  f"after {after:9.3f} ms  after/before {after / before:.3f}", flush=True)
            if size == "large":
                continue  # a minibatch epoch of 1M rows takes seconds: steps suffice
            order = np.random.default_rng(0)
            before, after = alternate(
                lambda: old.epoch(X, y, 1000, None),
                lambda: new.epoch(source, source.batches(order, 1000, False)),
                max(1, REPEATS[size] // 5))
            print(f"{str((n, f, h)):18s} {dtype} epoch  before {before:9.3f} ms  "
                  f"after {after:9.3f} ms  after/before {after / before:.3f}", flush=True)


if __name__ == "__main__":
    main()
