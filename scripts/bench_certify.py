"""What certifying a fit costs, against the fit's own time (issue 19: at most 3x per replay).

Setting (the README's "Size and cost"): Friedman #1, 2000 rows, 10 features,
standardised by ``StandardizedRegressor``, one hidden layer of 64,
``max_iter=200``, on NumPy, for each solver (gd at a fixed rate, gd
``"auto"``, sgd, Adam, L-BFGS) and each fit dtype. Each repetition fits, saves
and certifies on NumPy in float32 and float64, back to back, so fit and
certify see the same load; the script prints medians over ``--repeat``
repetitions of:

* ``fit``: the fit's own time;
* ``<backend> <bits>``: the time of all the segment replays on that backend
  in that dtype (NumPy's two runs also measure the rounding), over the
  fit's time;
* ``certify/replay``: the whole certificate (every replay, the checks) over
  the fit's time, divided by the number of replays.

Usage::

    PYTHONPATH=. python scripts/bench_certify.py [--repeat 3] [--solvers lbfgs,adam] \
        [--backends numpy,torch,jax]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from gpumlp import MLPRegressor, StandardizedRegressor, certificate, save  # noqa: E402
from gpumlp.datasets import make_friedman1  # noqa: E402

SOLVERS = {
    "gd": dict(solver="gd", learning_rate_init=0.1),
    "auto": dict(solver="gd", learning_rate_init="auto"),
    "sgd": dict(solver="sgd", learning_rate_init=0.01),
    "adam": dict(solver="adam", learning_rate_init=0.001),
    "lbfgs": dict(solver="lbfgs"),
}


def _timed_segments():
    """Wrap certificate._run_segment to add each call's time to a per-dtype total."""
    totals = {}
    real = certificate._run_segment

    def timed(ctx, j, device, dtype, use_fastpath):
        start = time.perf_counter()
        try:
            return real(ctx, j, device, dtype, use_fastpath)
        finally:
            key = (device.name, dtype)
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    certificate._run_segment = timed
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--backends", default="numpy",
                        help="replay backends, e.g. numpy,torch,jax (NumPy always runs)")
    args = parser.parse_args()
    backends = args.backends.split(",")
    X, y = make_friedman1(2000, random_state=0)
    totals = _timed_segments()
    cases = [(s, d) for s in args.solvers.split(",") for d in args.dtypes.split(",")]
    results = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for solver, dtype in cases:       # interleaved: each repetition runs every case
                model = StandardizedRegressor(MLPRegressor(
                    (64,), max_iter=200, random_state=0, dtype=dtype, device="cpu",
                    **SOLVERS[solver]))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    start = time.perf_counter()
                    model.fit(X, y)
                    fit = time.perf_counter() - start
                path = os.path.join(tmp, f"{solver}-{dtype}.npz")
                save(model, path)
                totals.clear()
                start = time.perf_counter()
                cert = certificate.certify(path, X, y, backends=backends)
                whole = time.perf_counter() - start
                assert cert.outcome == "PASS", certificate.format_certificate(cert)
                replays = {key: t / fit for key, t in totals.items()}
                results[(solver, dtype)].append(
                    (fit, replays, whole / fit / len(cert.replays), model.regressor_.n_iter_))
    keys = sorted({key for runs in results.values() for r in runs for key in r[1]})
    print(f"{'solver':8s} {'fit dtype':9s} {'epochs':>6s} {'fit s':>7s} "
          + " ".join(f"{f'{b} {d[5:]}':>12s}" for b, d in keys)
          + f" {'certify/replay':>14s}  (replays in times the fit's; medians of {args.repeat})")
    for (solver, dtype), runs in results.items():
        fit, whole = (statistics.median(r[i] for r in runs) for i in (0, 2))
        ratios = [statistics.median(r[1].get(key, float("nan")) for r in runs) for key in keys]
        print(f"{solver:8s} {dtype:9s} {runs[0][3]:6d} {fit:7.3f} "
              + " ".join(f"{v:12.2f}" for v in ratios) + f" {whole:14.2f}")


if __name__ == "__main__":
    main()
