#!/usr/bin/env python3
"""``learning_rate_init="auto"`` against every fixed rate of a grid, for full-batch descent.

Cases: three standardised datasets (Friedman #1, 2000 rows; scikit-learn's
diabetes, 442 rows, a real one; "sines", 2000 rows of a smooth synthetic
target) times the widths given (default 8, 32, 128, 512), one sigmoid hidden
layer, float64, the same seeded initial weights for every rate.

For each case every rate runs ``--epochs`` epochs with no stopping rule.
Reported per case and rate:

* the final training loss: the loss (with its L2 penalty) at the weights
  the fit returns, after ``--epochs`` epochs (for "auto", the point of
  lowest loss the fit accepted; for a fixed rate, the last step's), and its
  ratio to the best fixed rate's;
* the epochs, and the wall time, to reach a target loss: ``--target`` times
  the best fixed rate's final loss ("-" when never reached, "div" when the
  fit diverged). For "auto" the wall time includes the start-up curvature
  estimate (18 gradient evaluations).

Then, with ``--r2``, the default-network check of issue 14: on Friedman #1
(2000 rows, standardised, 20% held out), ``MLPRegressor(max_iter=5000)``
with its other defaults (width 100, ``tol=1e-4``, ``n_iter_no_change=10``)
against every fixed rate of the grid at the same width and stopping rule:
epochs run and test R².

With ``--stopping TOL``: 24 fits (the three datasets, widths 8, 32, 100 and
512, initial weights 0 and 1, 20% held out) with the default stopping rule
at that ``tol``, "auto" against its monotone form (``step_size.MEMORY = 0``:
the loss never rises, one plateau stops): mean train and test R², median
epochs.

This is a benchmark, not a test: nothing here asserts.

    python scripts/bench_step_size.py                 # 12 cases, 400 epochs (a few minutes)
    python scripts/bench_step_size.py --widths 8,32 --epochs 200
    python scripts/bench_step_size.py --widths 16,64,256         # more cases:
    python scripts/bench_step_size.py --seed 1                   # other weights
    python scripts/bench_step_size.py --r2            # also the default-network check
    python scripts/bench_step_size.py --widths 8 --stopping 1e-4 --stopping 1e-6
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gpumlp import MLPRegressor  # noqa: E402
from gpumlp.datasets import make_friedman1  # noqa: E402
from gpumlp.kernels import l2_penalty  # noqa: E402
from gpumlp.training import TrainingDivergedError  # noqa: E402

GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _standardise(X, y):
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def datasets():
    """``{name: (X, y)}``, standardised."""
    from sklearn.datasets import load_diabetes

    rng = np.random.default_rng(1)
    X = rng.standard_normal((2000, 8))
    y = np.sin(1.5 * X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * np.cos(X[:, 3]) \
        + 0.1 * rng.standard_normal(2000)
    diabetes = load_diabetes()
    return {
        "friedman1": _standardise(*make_friedman1(2000, random_state=0)),
        "diabetes": _standardise(diabetes.data, diabetes.target),
        "sines": _standardise(X, y),
    }


def returned_loss(model, X, y):
    """The training loss at the weights ``model`` holds, as training measures it."""
    mse = float(np.mean((model.predict(X) - y) ** 2))
    return mse + float(l2_penalty(model.coefs_, model.alpha, X.shape[0]))


def run(X, y, width, rate, epochs, seed=0):
    """``(loss_curve, times, final)``: each epoch's loss and the wall time at its end, and
    :func:`returned_loss`; ``(None, None, None)`` if diverged."""
    model = MLPRegressor((width,), learning_rate_init=rate, max_iter=epochs, tol=0.0,
                         n_iter_no_change=epochs + 1, random_state=seed, device="cpu",
                         dtype="float64")
    times = []
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y, callback=lambda *_: times.append(time.perf_counter() - start))
    except TrainingDivergedError:
        return None, None, None
    return np.asarray(model.loss_curve_), np.asarray(times), returned_loss(model, X, y)


def reached(curve, times, target):
    """``(epochs, seconds)`` to a loss at or below ``target``, or None."""
    hits = np.flatnonzero(curve <= target)
    return None if hits.size == 0 else (int(hits[0]) + 1, float(times[hits[0]]))


def bench(names, widths, epochs, target_factor, seed=0):
    data = datasets()
    ratios = []
    print(f"{epochs} epochs; target loss = {target_factor} x the best fixed rate's final loss; "
          f"initial weights from random_state={seed}")
    header = f"{'dataset':10s} {'width':>5s} {'rate':>6s} {'final loss':>11s} " \
             f"{'/best':>6s} {'epochs to target':>16s} {'s to target':>11s}"
    print(header)
    for name in names:
        X, y = data[name]
        for width in widths:
            runs = {rate: run(X, y, width, rate, epochs, seed) for rate in ("auto", *GRID)}
            finals = {rate: final for rate, (_, _, final) in runs.items()
                      if final is not None and np.isfinite(final)}
            best = min(v for rate, v in finals.items() if rate != "auto")
            target = target_factor * best
            for rate, (curve, times, final) in runs.items():
                if curve is None:
                    print(f"{name:10s} {width:5d} {rate!s:>6s} {'div':>11s}")
                    continue
                hit = reached(curve, times, target)
                to_target = ("-", "-") if hit is None else (str(hit[0]), f"{hit[1]:.2f}")
                print(f"{name:10s} {width:5d} {rate!s:>6s} {final:11.5f} "
                      f"{final / best:6.3f} {to_target[0]:>16s} {to_target[1]:>11s}")
            ratios.append((name, width, finals.get("auto", np.inf) / best))
            sys.stdout.flush()
    worst = max(r for *_, r in ratios)
    print(f"\nauto / best fixed final loss: worst {worst:.3f}, "
          f"better in {sum(r < 1 for *_, r in ratios)} of {len(ratios)} cases")
    return ratios


def r2_check():
    from gpumlp.splitting import train_test_split

    X, y = make_friedman1(2000, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, 0.2, 0)
    mean, std = X_train.mean(0), X_train.std(0)
    y_mean, y_std = y_train.mean(), y_train.std()
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    y_train, y_test = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std
    print("\nFriedman #1, 2000 rows (1600 train / 400 test), width 100, max_iter=5000, "
          "default stopping rule")
    for rate in ("auto", *GRID):
        model = MLPRegressor(max_iter=5000, learning_rate_init=rate, random_state=0,
                             device="cpu", dtype="float64")
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X_train, y_train)
            r2 = f"{model.score(X_test, y_test):8.4f}"
            n_iter = model.n_iter_
        except TrainingDivergedError:
            r2, n_iter = "     div", model.n_iter_
        print(f"rate {rate!s:>6s}: {n_iter:5d} epochs, test R^2 {r2}, "
              f"{time.perf_counter() - start:.1f} s")


def stopping_check(tol):
    """The default stopping rule on 24 fits: the rule against its monotone form (MEMORY = 0)."""
    from gpumlp import step_size
    from gpumlp.splitting import train_test_split

    print(f"\nDefault stopping rule (tol={tol:g}, n_iter_no_change=10, max_iter=5000), "
          f"80/20 split, widths 8/32/100/512, random_state 0 and 1")
    print(f"{'dataset':10s} {'rule':>10s} {'mean train R^2':>15s} {'mean test R^2':>14s} "
          f"{'median epochs':>14s}")
    memory = step_size.MEMORY
    try:
        for name, (X, y) in datasets().items():
            X_train, X_test, y_train, y_test = train_test_split(X, y, 0.2, 0)
            for label, value in (("monotone", 0), ("auto", memory)):
                step_size.MEMORY = value
                scores = []
                for width in (8, 32, 100, 512):
                    for seed in (0, 1):
                        model = MLPRegressor((width,), max_iter=5000, tol=tol,
                                             random_state=seed, device="cpu", dtype="float64")
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            model.fit(X_train, y_train)
                        scores.append((model.score(X_train, y_train),
                                       model.score(X_test, y_test), model.n_iter_))
                train, test, epochs = np.asarray(scores).T
                print(f"{name:10s} {label:>10s} {train.mean():15.4f} {test.mean():14.4f} "
                      f"{np.median(epochs):14.0f}")
                sys.stdout.flush()
    finally:
        step_size.MEMORY = memory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="friedman1,diabetes,sines")
    parser.add_argument("--widths", default="8,32,128,512")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--target", type=float, default=1.10)
    parser.add_argument("--seed", type=int, default=0, help="random_state of the weights")
    parser.add_argument("--r2", action="store_true", help="also the default-network check")
    parser.add_argument("--stopping", type=float, metavar="TOL", action="append",
                        help="also 24 fits with the default stopping rule at this tol, "
                             "against the monotone test (repeatable)")
    args = parser.parse_args(argv)
    bench(args.datasets.split(","), [int(w) for w in args.widths.split(",")], args.epochs,
          args.target, args.seed)
    if args.r2:
        r2_check()
    for tol in args.stopping or ():
        stopping_check(tol)


if __name__ == "__main__":
    main()
