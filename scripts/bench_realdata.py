"""Real-data benchmark: gpumlp's defaults against the tools a user would otherwise pick.

Twelve real regression datasets that ship inside Python packages (nothing is
downloaded at run time), three 75/25 splits each, light preparation (rows
with a missing value dropped, text columns one-hot encoded, identifiers and
leaking columns dropped, sets over ``--max-rows`` rows subsampled). Each
runner fits on the training rows and is scored by R² on the test rows; the
fit time is the wall time of ``fit``. Runners take turns within every split
(their order rotates), so a slow spell of a shared machine falls on all.

Runners:

* ``gpumlp``: ``StandardizedRegressor()``, the user-facing default;
* ``gpumlp-cv``: the same with ``alphas=(1.0, 0.1, 0.01)``: alpha chosen by
  5-fold cross-validation, then refitted (``gpumlp.selection``; opt-in);
* ``gpumlp-gd``: ``StandardizedRegressor(MLPRegressor(alpha=1.0))``: full-batch
  gradient descent with the "auto" step, stopped by its rule (``tol=1e-4`` of
  the loss), up to ``max_iter="auto"`` (5000) steps;
* ``gpumlp-gd-1e-3``: the same with ``tol=1e-3`` (each of the last steps
  expected to gain at most 0.1% of the loss);
* ``sk-adam``, ``sk-lbfgs``: scikit-learn's ``MLPRegressor`` (defaults, but
  ``max_iter=2000``) between ``StandardScaler``s of X and y;
* ``torch``: a PyTorch MLP (100 ReLU units, Adam at 1e-3, minibatches of 200,
  200 epochs) on standardised X and y;
* ``hgb``: scikit-learn's ``HistGradientBoostingRegressor``, defaults;
* ``gpumlp-mlp``: ``gpumlp.MLPRegressor()`` alone, on unscaled data (what a
  scikit-learn user's drop-in gets; warns).

Where each dataset comes from (package, file, target):

=============  ===============================================  ==========================
name           source                                           target
=============  ===============================================  ==========================
diabetes       scikit-learn, ``load_diabetes`` (bundled)        disease progression
auto           ISLP wheel, ``ISLP/data/Auto.csv``               mpg (``name`` dropped)
bikeshare      ISLP, ``Bikeshare.csv``                          bikers (casual, registered
                                                                dropped: they sum to it)
boston         ISLP, ``Boston.csv``                             medv
carseats       ISLP, ``Carseats.csv``                           Sales
college        ISLP, ``College.csv``                            Outstate
credit         ISLP, ``Credit.csv``                             Balance (``ID`` dropped)
hitters        ISLP, ``Hitters.csv``                            log(Salary)
wage           ISLP, ``Wage.csv``                               wage (logwage dropped)
penguins       palmerpenguins wheel, ``data/penguins.csv``      body_mass_g
star98         statsmodels, ``datasets/star98/star98.csv``      NABOVE / (NABOVE + NBELOW)
randhie        statsmodels, ``datasets/randhie/randhie.csv``    log(1 + mdvis)
=============  ===============================================  ==========================

Install what it needs (not a dependency of gpumlp: the ``bench`` extra names
them): ``pip install 'gpumlp[bench]'`` and ``pip install --no-deps ISLP``
(ISLP's own dependencies, PyTorch Lightning among them, are not needed to
read its CSVs).

Run ``python scripts/bench_realdata.py --json results.json``; ``--datasets``
and ``--runners`` take comma-separated subsets, ``--splits`` the number of
splits (seeds 0, 1, ...: the first three are the benchmark's; ``--first-split``
starts elsewhere). Besides the
mean R² per dataset it prints each runner's R² minus scikit-learn's Adam's
split by split, as a mean ± its standard error, which says whether a gap is
more than the splits' noise. ``--summarize results.json`` prints the tables
of a stored run again.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
import warnings

import numpy as np

MAX_ROWS = 4000
#: The penalty of the ``gpumlp-gd`` runner (gd's best of 0.1, 0.3 and 1 here).
GD_ALPHA = 1.0


def _package_file(package, *parts):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the package {package} is not installed (see this script's docs)")
    return os.path.join(list(spec.submodule_search_locations)[0], *parts)


def _frame(package, *parts):
    import pandas as pd

    return pd.read_csv(_package_file(package, *parts))


def _prepare(frame, target, drop=()):
    """X (one-hot text columns, rows with a missing value dropped) and y, as float64."""
    import pandas as pd

    frame = frame.drop(columns=list(drop)).dropna()
    y = frame.pop(target).to_numpy(dtype=np.float64)
    text = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
            or pd.api.types.is_bool_dtype(frame[c])]
    X = pd.get_dummies(frame, columns=text, drop_first=True, dtype=np.float64)
    return X.to_numpy(dtype=np.float64), y


def _diabetes():
    from sklearn.datasets import load_diabetes

    return load_diabetes(return_X_y=True)


def _islp(name, target, drop=(), transform=None):
    def load():
        frame = _frame("ISLP", "data", f"{name}.csv")
        frame = frame.loc[:, ~frame.columns.str.startswith("Unnamed")]
        if transform is not None:
            frame = transform(frame)
        return _prepare(frame, target, drop)
    return load


def _log_column(column):
    def transform(frame):
        frame = frame.dropna(subset=[column]).copy()
        frame[column] = np.log(frame[column])
        return frame
    return transform


def _penguins():
    return _prepare(_frame("palmerpenguins", "data", "penguins.csv"), "body_mass_g")


def _star98():
    frame = _frame("statsmodels", "datasets", "star98", "star98.csv")
    # MATHTOT students took the test, PR50M scored above the median.
    frame["share"] = frame["PR50M"] / frame["MATHTOT"]
    return _prepare(frame, "share", drop=("PR50M", "MATHTOT"))


def _randhie():
    frame = _frame("statsmodels", "datasets", "randhie", "randhie.csv")
    frame["mdvis"] = np.log1p(frame["mdvis"])
    return _prepare(frame, "mdvis")


DATASETS = {
    "diabetes": _diabetes,
    "auto": _islp("Auto", "mpg", drop=("name",)),
    "bikeshare": _islp("Bikeshare", "bikers", drop=("casual", "registered")),
    "boston": _islp("Boston", "medv"),
    "carseats": _islp("Carseats", "Sales"),
    "college": _islp("College", "Outstate"),
    "credit": _islp("Credit", "Balance", drop=("ID",)),
    "hitters": _islp("Hitters", "Salary", transform=_log_column("Salary")),
    "wage": _islp("Wage", "wage", drop=("logwage",)),
    "penguins": _penguins,
    "star98": _star98,
    "randhie": _randhie,
}


def load(name, max_rows=MAX_ROWS):
    """A dataset's X and y, subsampled (seed 0) to at most ``max_rows`` rows."""
    X, y = DATASETS[name]()
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if X.shape[0] > max_rows:
        keep = np.sort(np.random.default_rng(0).choice(X.shape[0], max_rows, replace=False))
        X, y = X[keep], y[keep]
    # Constant columns carry nothing (and a dummy can be constant after dropna).
    varying = np.ptp(X, axis=0) > 0
    return X[:, varying], y


# ------------------------------------------------------------------ runners
def _sklearn_mlp(solver):
    def make(seed):
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.neural_network import MLPRegressor
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return TransformedTargetRegressor(
            make_pipeline(StandardScaler(), MLPRegressor(solver=solver, max_iter=2000,
                                                         random_state=seed)),
            transformer=StandardScaler())
    return make


class TorchMLP:
    """100 ReLU units, Adam at 1e-3, minibatches of 200, 200 epochs, on standardised X and y."""

    def __init__(self, seed, epochs=200, batch_size=200, hidden=100, lr=1e-3):
        self.seed, self.epochs, self.batch_size = seed, epochs, batch_size
        self.hidden, self.lr = hidden, lr

    def fit(self, X, y):
        import torch

        torch.manual_seed(self.seed)
        self.x_mean, self.x_scale = X.mean(0), np.where(X.std(0) > 0, X.std(0), 1.0)
        self.y_mean, self.y_scale = y.mean(), y.std() or 1.0
        Xt = torch.tensor((X - self.x_mean) / self.x_scale, dtype=torch.float32)
        yt = torch.tensor((y - self.y_mean) / self.y_scale, dtype=torch.float32)[:, None]
        self.net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], self.hidden),
                                       torch.nn.ReLU(), torch.nn.Linear(self.hidden, 1))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        n = Xt.shape[0]
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, self.batch_size):
                rows = order[start:start + self.batch_size]
                optimizer.zero_grad()
                loss = torch.mean((self.net(Xt[rows]) - yt[rows]) ** 2)
                loss.backward()
                optimizer.step()
        return self

    def predict(self, X):
        import torch

        with torch.no_grad():
            out = self.net(torch.tensor((X - self.x_mean) / self.x_scale, dtype=torch.float32))
        return out.numpy()[:, 0].astype(np.float64) * self.y_scale + self.y_mean


def _gpumlp_default(seed):
    from gpumlp import StandardizedRegressor
    from gpumlp.scaling import default_regressor

    return StandardizedRegressor(default_regressor().set_params(random_state=seed))


def _gpumlp_cv(seed):
    from gpumlp import StandardizedRegressor
    from gpumlp.scaling import default_regressor
    from gpumlp.selection import DEFAULT_ALPHAS

    return StandardizedRegressor(default_regressor().set_params(random_state=seed),
                                 alphas=DEFAULT_ALPHAS)


def _gpumlp_gd(seed):
    from gpumlp import MLPRegressor, StandardizedRegressor

    return StandardizedRegressor(MLPRegressor(alpha=GD_ALPHA, random_state=seed))


def _gpumlp_gd_loose(seed):
    from gpumlp import MLPRegressor, StandardizedRegressor

    return StandardizedRegressor(MLPRegressor(alpha=GD_ALPHA, tol=1e-3, random_state=seed))


def _gpumlp_plain(seed):
    from gpumlp import MLPRegressor

    return MLPRegressor(random_state=seed)


def _gpumlp_variant(spec):
    """``gpumlp[key=value;...]``: the default StandardizedRegressor with these parameters."""
    def make(seed):
        from gpumlp import StandardizedRegressor
        from gpumlp.scaling import default_regressor

        params = {}
        for item in spec.split(";"):
            key, value = item.split("=")
            params[key] = json.loads(value) if value[:1] in "0123456789-[{tfn\"" else value
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in params.items()}
        return StandardizedRegressor(default_regressor().set_params(random_state=seed,
                                                                    **params))
    return make


def _hgb(seed):
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=seed)


RUNNERS = {
    "gpumlp": _gpumlp_default,
    "gpumlp-cv": _gpumlp_cv,
    "gpumlp-gd": _gpumlp_gd,
    "gpumlp-gd-1e-3": _gpumlp_gd_loose,
    "sk-adam": _sklearn_mlp("adam"),
    "sk-lbfgs": _sklearn_mlp("lbfgs"),
    "torch": TorchMLP,
    "hgb": _hgb,
    "gpumlp-mlp": _gpumlp_plain,
}


def _runner(name):
    if name.startswith("gpumlp[") and name.endswith("]"):
        return _gpumlp_variant(name[len("gpumlp["):-1])
    return RUNNERS[name]


def r2(y, y_pred):
    return 1.0 - float(np.sum((y - y_pred) ** 2)) / float(np.sum((y - np.mean(y)) ** 2))


def split(n, seed, test_size=0.25):
    order = np.random.default_rng(1000 + seed).permutation(n)
    n_test = int(round(test_size * n))
    return order[n_test:], order[:n_test]


def run(datasets, runners, splits, max_rows=MAX_ROWS, out=sys.stdout, first_split=0):
    """Every runner on every split of every dataset; a list of result rows (dicts)."""
    rows, turn = [], 0
    for name in datasets:
        X, y = load(name, max_rows)
        for seed in range(first_split, first_split + splits):
            train, test = split(X.shape[0], seed)
            order = runners[turn % len(runners):] + runners[:turn % len(runners)]
            turn += 1
            for runner in order:
                model = _runner(runner)(seed)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    start = time.perf_counter()
                    model.fit(X[train], y[train])
                    seconds = time.perf_counter() - start
                score = r2(y[test], np.asarray(model.predict(X[test]), dtype=np.float64))
                kinds = sorted({w.category.__name__ for w in caught})
                row = dict(dataset=name, split=seed, runner=runner, r2=score,
                           seconds=seconds, n=int(X.shape[0]), f=int(X.shape[1]),
                           warnings=kinds)
                rows.append(row)
                print(f"{name:10s} {seed} {runner:11s} R2 {score:8.4f}  {seconds:7.2f} s  "
                      f"{','.join(kinds)}", file=out, flush=True)
    return rows


def summary(rows, reference="sk-adam", within=0.01):
    """Per runner: mean R², the datasets within ``within`` of ``reference``, time ratio."""
    runners = list(dict.fromkeys(r["runner"] for r in rows))
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))

    def mean(runner, dataset, key):
        values = [r[key] for r in rows if r["runner"] == runner and r["dataset"] == dataset]
        return float(np.mean(values)) if values else math.nan

    def paired(runner, dataset):
        # The split decides much of a small set's score, for every runner alike,
        # so runners are compared split by split: the mean difference and its
        # standard error over the splits (NaN with one split).
        ref = {r["split"]: r["r2"] for r in rows
               if r["runner"] == reference and r["dataset"] == dataset}
        diff = [r["r2"] - ref[r["split"]] for r in rows if r["runner"] == runner
                and r["dataset"] == dataset and r["split"] in ref]
        if not diff:
            return [math.nan, math.nan]
        se = float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
        return [float(np.mean(diff)), se]

    table = {}
    for runner in runners:
        scores = [mean(runner, d, "r2") for d in datasets]
        ref = [mean(reference, d, "r2") for d in datasets]
        ratios = [r["seconds"] / s["seconds"] for r in rows if r["runner"] == runner
                  for s in rows if s["runner"] == reference and s["dataset"] == r["dataset"]
                  and s["split"] == r["split"]]
        table[runner] = dict(
            mean_r2=float(np.mean(scores)),
            within=sum(s >= q - within for s, q in zip(scores, ref)),
            n_datasets=len(datasets),
            time_ratio=float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan,
            mean_seconds=float(np.mean([r["seconds"] for r in rows if r["runner"] == runner])),
            not_converged=sum("ConvergenceWarning" in r["warnings"] for r in rows
                              if r["runner"] == runner),
            fits=sum(r["runner"] == runner for r in rows),
            per_dataset=dict(zip(datasets, scores)),
            paired=dict(zip(datasets, (paired(runner, d) for d in datasets))),
        )
    return table


def format_summary(table, reference="sk-adam"):
    datasets = list(next(iter(table.values()))["per_dataset"])
    lines = ["| dataset | " + " | ".join(table) + " |",
             "| --- |" + " --- |" * len(table)]
    for d in datasets:
        lines.append(f"| {d} | " + " | ".join(f"{t['per_dataset'][d]:.3f}"
                                              for t in table.values()) + " |")
    lines.append("| **mean R²** | " + " | ".join(f"**{t['mean_r2']:.3f}**"
                                                for t in table.values()) + " |")
    lines.append(f"| within 0.01 of {reference} | " + " | ".join(
        f"{t['within']}/{t['n_datasets']}" for t in table.values()) + " |")
    lines.append(f"| fit time / {reference}'s (geometric mean) | " + " | ".join(
        f"{t['time_ratio']:.2f}" for t in table.values()) + " |")
    lines.append("| mean fit time (s) | " + " | ".join(
        f"{t['mean_seconds']:.2f}" for t in table.values()) + " |")
    lines.append("| fits ending with a ConvergenceWarning | " + " | ".join(
        f"{t['not_converged']}/{t['fits']}" for t in table.values()) + " |")
    return "\n".join(lines)


def format_paired(table, reference="sk-adam"):
    """Per dataset, each runner's R² minus ``reference``'s on the same split:
    the mean over the splits ± its standard error."""
    others = [r for r in table if r != reference]
    datasets = list(next(iter(table.values()))["per_dataset"])
    lines = [f"| R² − {reference}'s, per split: mean ± s.e. | " + " | ".join(others) + " |",
             "| --- |" + " --- |" * len(others)]
    for d in datasets:
        lines.append(f"| {d} | " + " | ".join(
            "{:+.3f} ± {:.3f}".format(*table[r]["paired"][d]) for r in others) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--runners",
                        default="gpumlp,gpumlp-gd,gpumlp-gd-1e-3,sk-adam,sk-lbfgs,torch,hgb")
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--first-split", type=int, default=0,
                        help="the seed of the first split (3 with --splits 6: the six "
                             "beyond the benchmark's three)")
    parser.add_argument("--variants", default="",
                        help="extra gpumlp runners, '|'-separated, each 'key=value;...' "
                             "over the default regressor's parameters")
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS)
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--summarize", metavar="FILE",
                        help="print the tables of a run stored with --json, fitting nothing")
    args = parser.parse_args(argv)
    if args.summarize:
        with open(args.summarize) as handle:
            table = summary(json.load(handle)["rows"])
        print(format_summary(table))
        if "sk-adam" in table and len(table) > 1:
            print()
            print(format_paired(table))
        return
    datasets = [d for d in args.datasets.split(",") if d]
    runners = [r for r in args.runners.split(",") if r]
    if args.variants:
        runners += [f"gpumlp[{v}]" for v in args.variants.split("|") if v]
    for name in datasets:
        if name not in DATASETS:
            parser.error(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    for name in runners:
        if name not in RUNNERS and not name.startswith("gpumlp["):
            parser.error(f"unknown runner {name!r}; choose from {', '.join(RUNNERS)}")
    rows = run(datasets, runners, args.splits, args.max_rows, first_split=args.first_split)
    table = summary(rows)
    print(format_summary(table))
    if "sk-adam" in table and len(table) > 1:
        print()
        print(format_paired(table))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "summary": table}, handle, indent=1)


if __name__ == "__main__":
    main()
