#!/usr/bin/env python3
"""Distributed benchmark: a full-batch step on a Dask cluster against in-process.

Times, as medians over repeats after a warm-up:

* one full-batch gradient-descent step at n = 2M (f = 32, h = 64, float32) on
  a local Dask cluster (data generated on the workers, chunked by rows), and
  the same step in-process on NumPy (fast path and generic path);
* the fixed per-step overhead of the cluster: the same step at n = 10,000;
* peak resident memory of each worker process.

    python scripts/bench_dask.py [--workers 2] [--json out/bench-dask.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_distributed(client, n, f, h, chunk_rows, repeats):
    import dask.array as da

    from gpumlp import MLPRegressor

    rng = da.random.default_rng(0)
    X = rng.standard_normal((n, f), chunks=(chunk_rows, f), dtype=np.float32)
    y = da.sin(X[:, 0]) + 0.1 * rng.standard_normal(n, chunks=chunk_rows, dtype=np.float32)
    def fit_seconds(epochs):
        model = MLPRegressor((h,), max_iter=epochs, tol=0, random_state=0,
                             learning_rate_init=0.01)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y, client=client)
        return time.perf_counter() - start

    # A fit first computes the chunks onto the workers; the difference of two
    # fits leaves the time per full-batch step (one epoch each).
    fit_seconds(1)  # warm-up: imports and compilation on the workers
    one = statistics.median(fit_seconds(1) for _ in range(3))
    many = statistics.median(fit_seconds(1 + repeats) for _ in range(3))
    return 1e3 * (many - one) / repeats


def time_in_process(n, f, h, repeats, fast):
    from gpumlp.activations import get_activation
    from gpumlp.devices import Device
    from gpumlp.initialization import glorot_uniform
    from gpumlp.solvers import GradientDescent
    from gpumlp.sources import ArraySource, Network
    from gpumlp.training import Trainer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, f)).astype(np.float32)
    y = (np.sin(X[:, :1]) + 0.1 * rng.standard_normal((n, 1))).astype(np.float32)
    coefs, intercepts = glorot_uniform([f, h, 1], rng, "float32")
    source = ArraySource(X, y, Device("cpu"))
    params = [Device("cpu").asarray(p) for p in coefs + intercepts]
    solver = GradientDescent(0.01)
    trainer = Trainer(Network(2, get_activation("sigmoid"), fast), solver, 0.0, params,
                      solver.init_state(params))
    whole = source.batches(rng, n, shuffle=False)[0]
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        trainer.params, trainer.state, _ = trainer.solver.update(
            trainer.params, trainer.state, trainer.objective(source, whole))
        if i:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    f, h = 32, 64
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    client = Client(cluster)
    try:
        results = {
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "date": time.strftime("%Y-%m-%d"), "workers": args.workers},
            "size": [args.rows, f, h], "chunk_rows": args.chunk_rows,
            "distributed_step_ms": time_distributed(client, args.rows, f, h,
                                                    args.chunk_rows, args.repeats),
            "distributed_small_step_ms": time_distributed(client, 10_000, f, h, 5_000,
                                                          args.repeats),
            "worker_peak_rss_mb": sorted(client.run(_peak_rss_mb).values()),
        }
    finally:
        client.close()
        cluster.close()
    results["in_process_fast_ms"] = time_in_process(args.rows, f, h, args.repeats, True)
    results["in_process_generic_ms"] = time_in_process(args.rows, f, h, args.repeats, False)
    data_mb = args.rows * (f + 1) * 4 / 2**20
    print(f"data: {args.rows} x {f} float32 + target = {data_mb:.0f} MB, chunks of "
          f"{args.chunk_rows} rows, {args.workers} worker processes")
    print(f"full-batch step on Dask           {results['distributed_step_ms']:9.1f} ms")
    print(f"  in-process, NumPy fast path     {results['in_process_fast_ms']:9.1f} ms")
    print(f"  in-process, generic kernels     {results['in_process_generic_ms']:9.1f} ms")
    print(f"per-step overhead (n = 10,000)    {results['distributed_small_step_ms']:9.1f} ms")
    print("peak RSS per worker               "
          + ", ".join(f"{v:.0f} MB" for v in results["worker_peak_rss_mb"]))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
