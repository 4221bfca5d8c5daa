#!/usr/bin/env python3
"""What the data fingerprint adds to a fit, against one epoch (issue 23 section 3).

``fit`` on n x f float32 (default 1M x 32), one sigmoid layer of h = 128,
plain full-batch gradient descent, a few epochs, timed in interleaved
rounds: the fit as it is, the same fit with the fingerprint replaced by a
constant, and a one-epoch fit (so that ``(fit(E) - fit(1)) / (E - 1)`` is
one epoch); and, in the same rounds, the fingerprint call alone by each
algorithm (``fingerprint`` with BLAKE3 on every core, BLAKE3 on one thread
as the fit's background thread runs it, SHA-256 as where ``blake3`` is
missing), and the single-threaded checks of the data that the fit runs
while its background thread hashes (``check_dtype_limits`` and the scale
warning's statistics): on a machine with a core to spare, a hash shorter
than those checks costs the fit nothing (``checks_beside_the_hash``: the
checks with the fingerprint's thread started first, as the fit does). Wall
and CPU (``time.process_time``: all threads) times; the ratios are the
medians of the within-round ratios, so that a loaded machine's drift
cancels as far as it can. Nothing is asserted.

    python scripts/bench_fingerprint.py --rounds 7 --json scripts/results/DATE-fingerprint.json

With ``--ready``, instead: one-epoch fits, each reporting when the
fingerprint's thread started and ended and when training began, so as to
show whether the hash is done before the first epoch (it then competes
with the fit's checks only, never with its epochs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    import gpumlp.estimator as estimator
    from gpumlp import MLPRegressor
    from gpumlp import _fitrecord as fitrecord

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--ready", action="store_true",
                        help="time when the hash ends against when training starts")
    args = parser.parse_args(argv)
    n, f, h = args.rows, args.features, args.hidden
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, f)).astype(np.float32)
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2 % f]).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    if args.ready:
        return ready(X, y, h, args.rounds)
    real = estimator.PendingFingerprint

    class Constant:
        def __init__(self, *args, **kwargs):
            pass

        def result(self):
            return "0" * 64

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    def fit(epochs, pending):
        estimator.PendingFingerprint = pending
        model = MLPRegressor((h,), solver="gd", learning_rate_init=0.01, batch_size=n,
                             max_iter=epochs, tol=0.0, n_iter_no_change=10**6, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return timed(lambda: model.fit(X, y))

    from gpumlp._checks import check_dtype_limits
    from gpumlp.estimator import _warn_if_unscaled

    def checks():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_dtype_limits(MLPRegressor(), "float32", X, y, None)
            _warn_if_unscaled(X, y, "squared_error")

    blake3 = fitrecord._blake3()
    hashes = {"sha256": lambda: fitrecord.fingerprint(X, y, like="0" * 64)}
    if blake3 is not None:
        hashes["blake3"] = lambda: fitrecord.fingerprint(X, y)
        hashes["blake3_1thread"] = lambda: fitrecord._fingerprint(X, y, None, None, None,
                                                                  every_core=False)
    hashes["checks"] = checks

    def checks_beside_the_hash():
        pending = fitrecord.PendingFingerprint(X, y)    # as the fit starts it
        checks()
        pending.result()

    hashes["checks_beside_the_hash"] = checks_beside_the_hash
    default = "blake3" if blake3 is not None else "sha256"
    fit(1, Constant)
    rounds = []
    for i in range(args.rounds):
        row = {"load": os.getloadavg()[0]}
        row["one_epoch_fit"] = fit(1, Constant)
        order = [("off", Constant), ("on", real)]
        for name, pending in (order if i % 2 == 0 else order[::-1]):
            row[name] = fit(args.epochs, pending)
        # Alternate the order: the first large temporary of a round pays its page
        # faults (the checks' statistics allocate one), the next reuses the heap.
        for name, fn in (list(hashes.items()) if i % 2 == 0 else list(hashes.items())[::-1]):
            row[name] = timed(fn)
        epoch = [(row["off"][k] - row["one_epoch_fit"][k]) / (args.epochs - 1) for k in (0, 1)]
        row["epoch"] = epoch
        row["added"] = [row["on"][k] - row["off"][k] for k in (0, 1)]
        rounds.append(row)
        print(f"round {i} (load {row['load']:.1f}): epoch {1e3 * epoch[0]:.0f} ms wall "
              f"({1e3 * epoch[1]:.0f} CPU); fit {args.epochs} epochs {1e3 * row['on'][0]:.0f} "
              f"ms, without the fingerprint {1e3 * row['off'][0]:.0f}; "
              + "; ".join(f"{k} alone {1e3 * row[k][0]:.1f} ms ({1e3 * row[k][1]:.1f} CPU)"
                          for k in hashes), flush=True)

    def median(values):
        return float(np.median(values))

    summary = {"fit_added_over_epoch_wall": median([r["added"][0] / r["epoch"][0]
                                                    for r in rounds]),
               "default": default}
    for k in hashes:
        summary[f"{k}_over_epoch_wall"] = median([r[k][0] / r["epoch"][0] for r in rounds])
        summary[f"{k}_over_epoch_cpu"] = median([r[k][1] / r["epoch"][1] for r in rounds])
        summary[f"{k}_ms_best"] = 1e3 * min(r[k][0] for r in rounds)
    summary["epoch_ms_best"] = 1e3 * min(r["epoch"][0] for r in rounds)
    # What the background hash adds to the checks it runs beside, against an epoch.
    summary["hash_beside_checks_added_over_epoch_wall"] = median(
        [(r["checks_beside_the_hash"][0] - r["checks"][0]) / r["epoch"][0] for r in rounds])
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "size": [n, f, h], "epochs": args.epochs,
                       "rounds": rounds, "summary": summary}, handle, indent=1)


def ready(X, y, h, rounds):
    """Per one-epoch fit: the hash's wall time and how long before training it ended."""
    from gpumlp import MLPRegressor, training
    from gpumlp import _fitrecord as fitrecord

    marks = {}
    hash_data, train = fitrecord._fingerprint, training.Trainer.fit

    def timed_hash(*args, **kwargs):
        marks["hash_start"] = time.perf_counter()
        digest = hash_data(*args, **kwargs)
        marks["hash_end"] = time.perf_counter()
        return digest

    def timed_train(self, *args, **kwargs):
        marks["train_start"] = time.perf_counter()
        return train(self, *args, **kwargs)

    fitrecord._fingerprint, training.Trainer.fit = timed_hash, timed_train
    algorithm = "blake3" if fitrecord._blake3() is not None else "sha256"
    for _ in range(rounds):
        model = MLPRegressor((h,), solver="gd", learning_rate_init=0.01, batch_size=len(X),
                             max_iter=1, tol=0.0, random_state=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        print(f"load {os.getloadavg()[0]:.1f}: {algorithm} in the fit's thread "
              f"{1e3 * (marks['hash_end'] - marks['hash_start']):.0f} ms wall, from "
              f"{1e3 * (marks['hash_start'] - start):.0f} ms into the fit; training from "
              f"{1e3 * (marks['train_start'] - start):.0f} ms: the hash ended "
              f"{1e3 * (marks['train_start'] - marks['hash_end']):.0f} ms before it", flush=True)


if __name__ == "__main__":
    main()
