#!/usr/bin/env python3
"""Distributed benchmark: a full-batch step on a local Dask cluster against in-process.

Both sides take the same step, the trainer's: the solver's update of the
weights with the batch's loss and gradients (``Trainer.objective``), once on a
:class:`gpumlp.distributed.ChunkSource` (the workers' shards compute, the
driver adds and updates) and once on an in-process NumPy
:class:`gpumlp.sources.ArraySource`. Steps are timed in short interleaved
rounds (a few in-process steps, then a few cluster steps, repeated), so that
a machine shared with other work loads both alike; the figures are medians
over all timed steps, and their ratio.

* the fixed cost per step: (n, f, h) = (10,000, 16, 64) float32, in 8 chunks,
  on 2, 4 and 8 local worker processes (one thread each);
* a large full-batch step: 2,000,000 rows (f = 16, h = 64, float32, chunks
  of 250,000 rows, generated on the workers) on 2 local workers;
* each worker's peak resident memory, and this process's;
* blocks of epochs on one worker that holds every chunk (10,000 rows in 8
  chunks, blocks of 8 epochs, about what a fit's blocks hold there,
  :class:`gpumlp.distributed.ShardBlocks`): the
  time per epoch, against one round trip per epoch and in-process.

The clusters are those ``gpumlp train --cluster local:N`` starts
(:func:`gpumlp.distributed.local_cluster`); ``--dask-defaults`` starts them
with Dask's default settings instead, as a user's own ``LocalCluster`` would be.

    python scripts/bench_dask.py [--workers 2,4,8] [--rounds 7] [--dask-defaults]
                                 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _trainer(f, h, fast=True):
    from gpumlp.activations import get_activation
    from gpumlp.initialization import glorot_uniform
    from gpumlp.solvers import GradientDescent
    from gpumlp.sources import Network
    from gpumlp.training import Trainer

    coefs, intercepts = glorot_uniform([f, h, 1], np.random.default_rng(0), "float32")
    params = [np.asarray(p) for p in coefs + intercepts]
    solver = GradientDescent(0.01)
    return Trainer(Network(2, get_activation("sigmoid"), fast), solver, 0.0, params,
                   solver.init_state(params))


def _stepper(source, f, h):
    """``step() -> seconds`` of one full-batch trainer step on ``source``."""
    trainer = _trainer(f, h)
    whole = source.batches(np.random.default_rng(0), source.n_samples, shuffle=False)[0]

    def step():
        start = time.perf_counter()
        trainer.params, trainer.state, loss = trainer.solver.update(
            trainer.params, trainer.state, trainer.objective(source, whole))
        float(loss)
        return time.perf_counter() - start

    return step


def _block_stepper(source, f, h, epochs=8):
    """``step() -> seconds per epoch`` of a block of ``epochs`` full-batch epochs."""
    from gpumlp.distributed import ShardBlocks

    trainer = _trainer(f, h)
    blocks = ShardBlocks(source, trainer.network, trainer.solver, 0.0)

    def step():
        start = time.perf_counter()
        float(blocks.run(trainer.params, [0.01] * epochs)[-1][1])
        return (time.perf_counter() - start) / epochs

    return step


def _in_process(n, f, seed=0):
    from gpumlp.devices import Device
    from gpumlp.sources import ArraySource

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f), dtype=np.float32)
    y = (np.sin(X[:, :1]) + np.float32(0.1) * rng.standard_normal((n, 1), dtype=np.float32))
    return ArraySource(X, y, Device("cpu"))


def _on_cluster(client, n, f, chunk_rows):
    import dask.array as da

    from gpumlp.distributed import ChunkSource

    rng = da.random.default_rng(0)
    X = rng.standard_normal((n, f), chunks=(chunk_rows, f), dtype=np.float32)
    y = da.sin(X[:, 0]) + 0.1 * rng.standard_normal(n, chunks=chunk_rows, dtype=np.float32)
    source = ChunkSource.from_arrays(X, y.astype(np.float32), client)
    source.dtype = "float32"
    return source


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_per_step(client, step, steps=200):
    """Milliseconds of CPU per ``step()``: this process's, and all workers' together.

    Less sensitive to other work on the machine than the time: what a step
    costs, not how long it waited. Both include the processes' background (the
    scheduler and nannies live in this process) over the steps' duration.
    """
    workers = client.run(_cpu_seconds)
    driver = time.process_time()
    for _ in range(steps):
        step()
    driver = time.process_time() - driver
    after = client.run(_cpu_seconds)
    return 1e3 * driver / steps, 1e3 * sum(after[w] - workers[w] for w in workers) / steps


def interleaved(steps, rounds, per_round):
    """Each named step timed ``per_round`` times a round, the steps taking turns."""
    times = {name: [] for name in steps}
    for step in steps.values():
        step()  # warm-up: imports, the shards' placement, first-touch memory
    for _ in range(rounds):
        for name, step in steps.items():
            times[name] += [step() for _ in range(per_round)]
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="2,4,8",
                        help="worker counts for the fixed cost (default: 2,4,8)")
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dask-defaults", action="store_true",
                        help="start the clusters with Dask's default settings, not gpumlp's")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    from gpumlp.distributed import LOCAL_CLUSTER_CONFIG, local_cluster

    def cluster(workers):
        if args.dask_defaults:
            return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                host="127.0.0.1", dashboard_address=None,
                                silence_logs=logging.CRITICAL)
        return local_cluster(workers, silence_logs=logging.CRITICAL)

    small, f_small, h = 10_000, 16, 64
    results = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "processor": platform.processor() or platform.machine(),
                           "load_average_at_start": os.getloadavg(),
                           "date": time.strftime("%Y-%m-%d %H:%M")},
               "cluster_config": "dask defaults" if args.dask_defaults else LOCAL_CLUSTER_CONFIG,
               "fixed_cost": [], "large": None}
    local_small = _in_process(small, f_small)
    for workers in (int(w) for w in args.workers.split(",")):
        with cluster(workers) as local, Client(local) as client:
            remote = _on_cluster(client, small, f_small, small // 8)
            on_cluster = _stepper(remote, f_small, h)
            medians = interleaved({"in_process": _stepper(local_small, f_small, h),
                                   "cluster": on_cluster}, args.rounds, 10)
            driver_cpu, workers_cpu = cpu_per_step(client, on_cluster)
        row = {"workers": workers, "size": [small, f_small, h], "chunks": 8,
               "in_process_ms": medians["in_process"], "cluster_ms": medians["cluster"],
               "ratio": medians["cluster"] / medians["in_process"],
               "driver_cpu_ms_per_step": driver_cpu, "workers_cpu_ms_per_step": workers_cpu}
        results["fixed_cost"].append(row)
        print(f"(10k, 16, 64) on {workers} workers: step {row['cluster_ms']:7.2f} ms, "
              f"in-process {row['in_process_ms']:6.2f} ms, ratio {row['ratio']:5.2f}; CPU "
              f"per step: driver {driver_cpu:5.2f} ms, workers {workers_cpu:5.2f} ms",
              flush=True)
    with cluster(1) as local, Client(local) as client:
        remote = _on_cluster(client, small, f_small, small // 8)
        round_trip, block = _stepper(remote, f_small, h), _block_stepper(remote, f_small, h)
        medians = interleaved({"in_process": _stepper(local_small, f_small, h),
                               "round_trip": round_trip, "block": block}, args.rounds, 5)
        cpu = {"round_trip": cpu_per_step(client, round_trip, 320),
               "block": tuple(t / 8 for t in cpu_per_step(client, block, 40))}
    results["blocks"] = {"workers": 1, "size": [small, f_small, h], "chunks": 8,
                         "epochs_per_block": 8, "in_process_ms": medians["in_process"],
                         "round_trip_ms": medians["round_trip"],
                         "block_epoch_ms": medians["block"],
                         "cpu_ms_per_epoch": {k: {"driver": v[0], "workers": v[1]}
                                              for k, v in cpu.items()}}
    print(f"(10k, 16, 64) on 1 worker: an epoch in blocks of 8 {medians['block']:6.2f} ms, "
          f"one round trip {medians['round_trip']:6.2f} ms, in-process "
          f"{medians['in_process']:6.2f} ms; CPU per epoch (driver + worker): blocks "
          f"{sum(cpu['block']):5.2f} ms, round trips {sum(cpu['round_trip']):5.2f} ms",
          flush=True)
    del local_small
    f_large = 16
    with cluster(2) as local, Client(local) as client:
        remote = _on_cluster(client, args.rows, f_large, args.chunk_rows)
        local_large = _in_process(args.rows, f_large)
        medians = interleaved({"in_process": _stepper(local_large, f_large, h),
                               "cluster": _stepper(remote, f_large, h)},
                              max(3, args.rounds // 2), 2)
        worker_rss = sorted(client.run(_peak_rss_mb).values())
    results["large"] = {"workers": 2, "size": [args.rows, f_large, h],
                        "chunk_rows": args.chunk_rows,
                        "in_process_ms": medians["in_process"], "cluster_ms": medians["cluster"],
                        "ratio": medians["cluster"] / medians["in_process"],
                        "worker_peak_rss_mb": worker_rss,
                        "driver_peak_rss_mb": _peak_rss_mb()}
    large = results["large"]
    results["machine"]["load_average_at_end"] = os.getloadavg()
    print(f"({args.rows}, {f_large}, {h}) on 2 workers: step {large['cluster_ms']:7.1f} ms, "
          f"in-process {large['in_process_ms']:7.1f} ms, ratio {large['ratio']:5.2f}")
    print("peak RSS: workers " + ", ".join(f"{v:.0f} MB" for v in worker_rss)
          + f"; driver {large['driver_peak_rss_mb']:.0f} MB")
    print(f"load average: {results['machine']['load_average_at_start']} at start, "
          f"{results['machine']['load_average_at_end']} at end")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
