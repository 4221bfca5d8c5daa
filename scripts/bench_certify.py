"""What certifying a fit costs, against the fit's own time (issue 19: at most 3x per replay).

Setting (the README's "Size and cost"): Friedman #1, 2000 rows (``--rows``), 10 features,
standardised by ``StandardizedRegressor``, one hidden layer of 64,
``max_iter=200``, on NumPy, for each solver (gd at a fixed rate, gd
``"auto"``, sgd, Adam, L-BFGS) and each fit dtype. Each repetition fits, saves
and certifies on NumPy in float32 and float64 (and on ``--backends``), back
to back, so fit and certify see the same load; the script prints, over
``--repeat`` repetitions (cases interleaved):

* ``fit``: the fit's own time (median);
* ``<backend> <bits>``: the time of all the segment replays on that backend
  in that dtype (NumPy's two runs also measure the rounding; ``numpy 32
  reordered``: its float32 runs with each batch's rows in another order and
  the activation perturbed, the extra rounding samples taken when another
  backend replays, two and 8 more per segment a replay leaves), over the
  fit's time: the median over the repetitions after the first (the
  compiled programs of JAX reused, as in any certificate after the first of
  a process), and, in a second table, the first repetition's (JAX compiling
  each program: its import and XLA's compilations, a fixed cost per process
  and shape that does not grow with the fit);
* ``certify/replay``: the whole certificate (every replay, the checks) over
  the fit's time, divided by the number of replays;
* with ``--native-fits``: a fit of the same model on each backend and
  dtype the certificate replayed on (the median of the repetitions after
  the first), over the NumPy fit's time: what the replay's backend costs
  for the same work; and ``certify/own fits``, the whole certificate over
  the sum of those fits' times: the certificate's cost against the fit's
  own time on each backend and dtype it replays (issue 19's bar, read
  per backend: a replay cannot be cheaper than its backend's own fit).

``--json PATH`` writes every measurement, with the machine and its load.

Usage::

    PYTHONPATH=. python scripts/bench_certify.py [--repeat 3] [--solvers lbfgs,adam] \
        [--backends numpy,torch,jax] [--native-fits] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
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

    def timed(ctx, j, device, dtype, use_fastpath, **kwargs):
        start = time.perf_counter()
        try:
            return real(ctx, j, device, dtype, use_fastpath, **kwargs)
        finally:
            # NumPy's float32 runs with the rows reordered (and the activation
            # perturbed) are the extra rounding samples a certificate takes when
            # another backend replays: apart.
            sample = kwargs.get("sample")
            key = (device.name, dtype if sample is None else f"{dtype} reordered")
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    certificate._run_segment = timed
    return totals


def _median(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--backends", default="numpy",
                        help="replay backends, e.g. numpy,torch,jax (NumPy always runs)")
    parser.add_argument("--native-fits", action="store_true",
                        help="also time a fit of the same model on each other backend")
    parser.add_argument("--rows", type=int, default=2000,
                        help="Friedman #1 rows (default 2000, the README's setting)")
    parser.add_argument("--json", default=None, help="write every measurement here")
    args = parser.parse_args()
    backends = args.backends.split(",")
    X, y = make_friedman1(args.rows, random_state=0)
    totals = _timed_segments()
    cases = [(s, d) for s in args.solvers.split(",") for d in args.dtypes.split(",")]
    results = {case: [] for case in cases}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for solver, dtype in cases:       # interleaved: each repetition runs every case
                def fitted(backend, dtype=dtype):
                    model = StandardizedRegressor(MLPRegressor(
                        (64,), max_iter=200, random_state=0, dtype=dtype, device="cpu",
                        backend=backend, **SOLVERS[solver]))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        start = time.perf_counter()
                        model.fit(X, y)
                    return model, time.perf_counter() - start

                model, fit = fitted("numpy")
                path = os.path.join(tmp, f"{solver}-{dtype}.npz")
                save(model, path)
                totals.clear()
                start = time.perf_counter()
                cert = certificate.certify(path, X, y, backends=backends)
                whole = time.perf_counter() - start
                assert cert.outcome == "PASS", certificate.format_certificate(cert)
                replays = {f"{b} {d}": t / fit for (b, d), t in totals.items()}
                native = {f"{r.backend} {r.dtype}": fitted(r.backend, r.dtype)[1] / fit
                          for r in cert.replays} if args.native_fits else {}
                results[(solver, dtype)].append(
                    {"fit_s": fit, "replays": replays, "native_fits": native,
                     "certify_per_replay": whole / fit / len(cert.replays),
                     "certify_per_own_fits": whole / fit / sum(native.values())
                     if native else None,
                     "epochs": model.regressor_.n_iter_})
                loads.append(os.getloadavg()[0])
    keys = sorted({key for runs in results.values() for r in runs for key in r["replays"]})
    others = sorted({b for runs in results.values() for r in runs for b in r["native_fits"]})
    for title, pick in (("after the first repetition (programs compiled)", slice(1, None)),
                        ("first repetition (JAX compiling)", slice(0, 1))):
        print(f"\n{title}: replays in times the fit's, medians of "
              f"{len(range(args.repeat)[pick])}")
        print(f"{'solver':8s} {'fit dtype':9s} {'epochs':>6s} {'fit s':>7s} "
              + " ".join(f"{k.replace('float', ''):>10s}" for k in keys)
              + " ".join(f" {b.replace('float', '') + ' fit':>11s}" for b in others)
              + f" {'certify/replay':>14s}" + (f" {'certify/own fits':>16s}" if others else ""))
        for (solver, dtype), runs in results.items():
            chosen = runs[pick] or runs
            fit = _median(r["fit_s"] for r in runs)
            ratios = [_median(r["replays"].get(k, float("nan")) for r in chosen) for k in keys]
            fits = [_median(r["native_fits"].get(b, float("nan")) for r in chosen)
                    for b in others]
            whole = _median(r["certify_per_replay"] for r in chosen)
            own = _median(r["certify_per_own_fits"] for r in chosen
                          if r["certify_per_own_fits"] is not None)
            print(f"{solver:8s} {dtype:9s} {runs[0]['epochs']:6d} {fit:7.3f} "
                  + " ".join(f"{v:10.2f}" for v in ratios)
                  + " ".join(f" {v:11.2f}" for v in fits) + f" {whole:14.2f}"
                  + (f" {own:16.2f}" if others else ""))
    print(f"\nload average (1 min) during the run: {min(loads):.1f} to {max(loads):.1f}")
    if args.json:
        import platform

        out = {"machine": f"{platform.machine()} {os.cpu_count()} cores, "
                          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(native)')}",
               "load_average": [min(loads), max(loads)], "repeat": args.repeat,
               "setting": f"Friedman #1, {args.rows} rows, 10 features, StandardizedRegressor, "
                          "hidden (64,), max_iter=200, fit on NumPy",
               "cases": [{"solver": s, "dtype": d, "runs": runs}
                         for (s, d), runs in results.items()]}
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
