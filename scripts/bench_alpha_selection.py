"""Choosing alpha per dataset on the real-data benchmark: the measurements behind docs/real-data.md.

Every fit here is the default regressor (``gpumlp.scaling.DEFAULT_PARAMS``)
with another ``alpha``, on the benchmark's data and splits
(``bench_realdata.py``), standardised as ``StandardizedRegressor`` does.
A fit's R² is deterministic (seeded), so each way of choosing alpha can be
scored from one set of fits, without refitting:

``--mode cv`` (per dataset and split, one JSON line each):
  ``full``: the fit on all training rows for each alpha of 1, 0.3, 0.1,
  0.03, 0.01, with its test R² and time; ``k5`` and ``k2``: the fits of
  5-fold and 2-fold cross-validation for 1, 0.1, 0.01 (the folds and the
  penalty scaled to each fold's rows exactly as ``gpumlp.selection`` does),
  with their held-out R² and times.

``--mode path`` (per dataset and split): ``full`` as above, and ``kfold``:
  on each of 5 folds, a regularisation path: alpha 1 from fresh weights,
  then each smaller alpha of ``full``'s warm-started from the last (a new
  Adam, its stopping rule afresh; the penalty not scaled), with held-out R².

``--mode gate`` (the larger sets, training rows subsampled to 250 ... 3000):
  the test R² of alpha 1, 0.1 and 0.01 at each size: whether the grid's
  models come together as the rows grow.

``--summarize FILE`` scores the choices from a ``cv`` file: the fixed 0.1,
a 20% hold-out (the first of the five folds), 2-fold and 5-fold
cross-validation (the best mean, and the one-standard-error rule), each
followed by the fit with the chosen alpha on all training rows; mean R²,
datasets within 0.01 of scikit-learn's Adam pipeline (from ``--bench``, a
``bench_realdata.py --json`` file of the same splits) and an estimated
time over scikit-learn's: (choice's fits + final fit) / (fixed fit), times
the fixed default's ratio in ``--bench`` on that split.

Run ``python scripts/bench_alpha_selection.py --mode cv > cv.jsonl``
(about 20 minutes on a loaded 2-core VM), ``--mode gate > gate.jsonl``,
then ``--summarize cv.jsonl --bench scripts/results/...-realdata-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_realdata as bench  # noqa: E402

WIDE = (1.0, 0.3, 0.1, 0.03, 0.01)
GRID = (1.0, 0.1, 0.01)


def _r2(y, y_pred):
    return float(1 - np.sum((y - y_pred) ** 2) / np.sum((y - y.mean()) ** 2))


def _fit(X, y, alpha, seed):
    from gpumlp import MLPRegressor
    from gpumlp.scaling import DEFAULT_PARAMS

    start = time.perf_counter()
    net = MLPRegressor(**{**DEFAULT_PARAMS, "alpha": alpha}, random_state=seed).fit(X, y)
    return net, time.perf_counter() - start


def _standardised(X, y, train, test):
    from gpumlp.scaling import mean_scale

    x_mean, x_scale = mean_scale(X[train])
    y_mean, y_scale = (float(v[0]) for v in mean_scale(y[train][:, None]))
    return ((X[train] - x_mean) / x_scale, (y[train] - y_mean) / y_scale,
            (X[test] - x_mean) / x_scale, y_mean, y_scale)


def _folds(X, y, seed, k):
    """gpumlp.selection's folds: slices of a seeded permutation, penalty scaled to m/n."""
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    out = []
    for f in range(k):
        held = np.sort(order[f::k])
        kept = np.setdiff1d(order, held)
        row = []
        for alpha in GRID:
            net, seconds = _fit(X[kept], y[kept], alpha * len(kept) / n, seed)
            row.append(dict(alpha=alpha, r2=_r2(y[held], net.predict(X[held])),
                            seconds=seconds, n_iter=int(net.n_iter_)))
        out.append(row)
    return out


def cv(datasets):
    for name in datasets:
        X, y = bench.load(name)
        for seed in (0, 1, 2):
            train, test = bench.split(X.shape[0], seed)
            X_fit, y_fit, X_test, y_mean, y_scale = _standardised(X, y, train, test)
            row = dict(dataset=name, split=seed, n=len(train), full=[])
            for alpha in WIDE:
                net, seconds = _fit(X_fit, y_fit, alpha, seed)
                row["full"].append(dict(
                    alpha=alpha, r2=_r2(y[test], net.predict(X_test) * y_scale + y_mean),
                    seconds=seconds, n_iter=int(net.n_iter_)))
            row["k5"] = _folds(X_fit, y_fit, seed, 5)
            row["k2"] = _folds(X_fit, y_fit, seed, 2)
            print(json.dumps(row), flush=True)


def path(datasets):
    from gpumlp import MLPRegressor
    from gpumlp.scaling import DEFAULT_PARAMS

    for name in datasets:
        X, y = bench.load(name)
        for seed in (0, 1, 2):
            train, test = bench.split(X.shape[0], seed)
            X_fit, y_fit, X_test, y_mean, y_scale = _standardised(X, y, train, test)
            row = dict(dataset=name, split=seed, n=len(train), full=[], kfold=[])
            for alpha in WIDE:
                net, seconds = _fit(X_fit, y_fit, alpha, seed)
                row["full"].append(dict(
                    alpha=alpha, r2=_r2(y[test], net.predict(X_test) * y_scale + y_mean),
                    seconds=seconds, n_iter=int(net.n_iter_)))
            order = np.random.default_rng(seed).permutation(len(y_fit))
            for f in range(5):
                held = order[f::5]
                kept = np.setdiff1d(order, held)
                steps, last = [], None
                for alpha in WIDE:
                    start = time.perf_counter()
                    net = MLPRegressor(**{**DEFAULT_PARAMS, "alpha": alpha},
                                       random_state=seed, warm_start=True)
                    if last is not None:
                        net.coefs_, net.intercepts_ = last.coefs_, last.intercepts_
                    net.fit(X_fit[kept], y_fit[kept])
                    steps.append(dict(alpha=alpha, r2=_r2(y_fit[held], net.predict(X_fit[held])),
                                      seconds=time.perf_counter() - start,
                                      n_iter=int(net.n_iter_)))
                    last = net
                row["kfold"].append(steps)
            print(json.dumps(row), flush=True)


def gate(datasets):
    for name in datasets:
        X, y = bench.load(name)
        for seed in (0, 1):
            train, test = bench.split(X.shape[0], seed)
            for m in (250, 500, 1000, 2000, 3000):
                if m > len(train):
                    continue
                rows = np.sort(np.random.default_rng(seed).choice(train, m, replace=False))
                X_fit, y_fit, X_test, y_mean, y_scale = _standardised(X, y, rows, test)
                fits = []
                for alpha in GRID:
                    net, seconds = _fit(X_fit, y_fit, alpha, seed)
                    fits.append((alpha, _r2(y[test], net.predict(X_test) * y_scale + y_mean),
                                 seconds))
                print(json.dumps(dict(dataset=name, split=seed, m=m, fits=fits)), flush=True)


def _choose(row, key, folds, rule):
    chosen = row[key] if folds is None else [row[key][f] for f in folds]
    scores = np.array([[fold[i]["r2"] for fold in chosen] for i in range(len(GRID))])
    means = scores.mean(axis=1)
    best = max(range(len(GRID)), key=lambda i: (means[i], -i))
    if rule == "1se":   # the largest alpha within a standard error of the best
        diff = scores - scores[best]
        se = diff.std(axis=1, ddof=1) / math.sqrt(scores.shape[1])
        best = min(i for i in range(len(GRID)) if means[i] >= means[best] - se[i])
    return GRID[best], sum(d["seconds"] for fold in chosen for d in fold)


SCHEMES = {"fixed 0.1": None, "20% hold-out": ("k5", [0], "best"),
           "2-fold": ("k2", None, "best"), "5-fold": ("k5", None, "best"),
           "5-fold, one s.e.": ("k5", None, "1se")}


def summarize(path, bench_path):
    rows = [json.loads(line) for line in open(path) if line.startswith("{")]
    ref = {(r["runner"], r["dataset"], r["split"]): r
           for r in json.load(open(bench_path))["rows"]}
    print("| choice | mean R² | within 0.01 of sk-adam | est. fit time / sk-adam's | "
          "alphas chosen (per split) |")
    print("| --- | --- | --- | --- | --- |")
    for scheme, spec in SCHEMES.items():
        per, ratios = {}, []
        for r in rows:
            full = {d["alpha"]: d for d in r["full"]}
            alpha, cost = (0.1, 0.0) if spec is None else _choose(r, *spec)
            key = (r["dataset"], r["split"])
            fixed = ref[("gpumlp", *key)]["seconds"] / ref[("sk-adam", *key)]["seconds"]
            ratios.append((cost + full[alpha]["seconds"]) / full[0.1]["seconds"] * fixed)
            per.setdefault(r["dataset"], []).append(
                (full[alpha]["r2"], ref[("sk-adam", *key)]["r2"], alpha))
        means = {d: [np.mean([x[i] for x in v]) for i in (0, 1)] for d, v in per.items()}
        within = sum(ours >= theirs - 0.01 for ours, theirs in means.values())
        chosen = " ".join(f"{d}:{'/'.join(f'{x[2]:g}' for x in v)}" for d, v in per.items())
        print(f"| {scheme} | {np.mean([m[0] for m in means.values()]):.3f} | "
              f"{within}/{len(per)} | {math.exp(np.mean(np.log(ratios))):.2f} | {chosen} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cv", "path", "gate"))
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--summarize", metavar="CV.jsonl")
    parser.add_argument("--bench", metavar="RESULTS.json",
                        default="scripts/results/2026-12-06-realdata-cpu.json")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")   # fits that end at max_iter are counted elsewhere
    if args.summarize:
        return summarize(args.summarize, args.bench)
    if args.mode == "gate":
        return gate((args.datasets or "college,wage,randhie,bikeshare").split(","))
    if args.mode == "path":
        return path((args.datasets or ",".join(bench.DATASETS)).split(","))
    if args.mode == "cv":
        return cv((args.datasets or ",".join(bench.DATASETS)).split(","))
    parser.error("pass --mode cv, path or gate, or --summarize FILE")


if __name__ == "__main__":
    main()
