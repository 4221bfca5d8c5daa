#!/usr/bin/env python3
"""Fit-mode benchmark: the time per epoch of a whole fit, with the stopping rule on.

Full-batch gradient descent runs thousands of epochs, so at the sizes most
regression tables have, a fixed cost per epoch decides the wall time. For
each size (n, f, h), float32, one sigmoid hidden layer, every runner trains
for the same epochs (the rule is evaluated after each one, with a tolerance
small enough that it does not stop early) and reports wall time / epochs:

* gpumlp: ``MLPRegressor(solver="gd")`` at a fixed rate, as a user calls it
  (on NumPy: the C blocks where they are built and serve the size, issue 23);
  ``gpumlp-numpy``: the same without the C blocks (``GPUMLP_SIMD=none``), the
  NumPy fast path epoch by epoch;
* gpumlp, backend jax: the same on JAX arrays (``backend="jax"``, the CPU),
  each block of epochs one compiled program; and, as before issue 10's
  item 4, one jitted step per epoch (``gpumlp-jax-steps``);
* jax.jit, host read each epoch: a jitted step, the loss read back and the
  rule applied in Python after every epoch;
* jax.jit, 100 epochs per loop: ``lax.fori_loop`` over 100 steps, the
  losses kept on the device and read once per 100 epochs;
* torch eager: autograd, ``loss.item()`` each epoch;
* scikit-learn: ``MLPRegressor(solver="sgd", batch_size=n)``, no momentum.

It also times the default ``gpumlp train`` as a whole process (start-up
included) and prints its test R². Nothing here asserts a time.

    python scripts/bench_fit.py                  # or: python scripts/bench.py --mode fit
    python scripts/bench_fit.py --sizes tiny,small --json out/fit.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: (n, f, h) and the epochs each runner trains for.
SIZES = {"tiny": ((1_600, 10, 32), 2000), "small": ((10_000, 16, 64), 500),
         "medium": ((100_000, 64, 256), 40)}
TOL = 1e-12          # the rule runs, but does not stop these fits early
PATIENCE = 10


def make_data(n, f, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f)).astype(np.float32)
    y = (np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2 % f]).astype(np.float32)
    return X, ((y - y.mean()) / y.std()).astype(np.float32)


def rate(h):
    """A fixed step that is stable for a sigmoid layer of width h (about 2/h)."""
    return 2.0 / h


class Rule:
    """scikit-learn's stopping rule, applied in Python by the peers."""

    def __init__(self):
        self.best, self.count = np.inf, 0

    def stop(self, loss):
        self.count = 0 if loss < self.best - TOL else self.count + 1
        self.best = min(self.best, loss)
        return self.count > PATIENCE


def per_epoch_ms(fn):
    """One whole fit's wall time per epoch, in ms."""
    start = time.perf_counter()
    epochs = fn()
    return 1e3 * (time.perf_counter() - start) / epochs


def interleaved(fits, rounds):
    """``{name: [ms per epoch, one per round]}``, the runners taking turns.

    Each round runs every fit once, the order rotating from round to round, so
    that a slow spell of the machine (this VM's figures drift by up to 2x over
    minutes) falls on every runner alike rather than on whichever ran then.
    """
    names = list(fits)
    times = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            times[name].append(per_epoch_ms(fits[name]))
    return times


def run_gpumlp(X, y, h, epochs, **backend):
    from gpumlp import MLPRegressor

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLPRegressor((h,), solver="gd", learning_rate_init=rate(h), max_iter=epochs,
                                 tol=TOL, n_iter_no_change=PATIENCE, device="cpu",
                                 random_state=0, **backend).fit(X, y)
        return model.n_iter_

    return fit


def run_gpumlp_numpy(X, y, h, epochs):
    """``run_gpumlp`` without the C blocks: the NumPy fast path epoch by epoch."""
    from gpumlp.fastpath import cblocks

    fit = run_gpumlp(X, y, h, epochs)

    def numpy_fit():
        with cblocks.simd("none"):
            return fit()

    return numpy_fit


def run_gpumlp_jax(X, y, h, epochs):
    """gpumlp on JAX arrays (``backend="jax"``), the CPU, otherwise as ``run_gpumlp``."""
    try:
        import jax  # noqa: F401
    except ImportError:
        return None
    return run_gpumlp(X, y, h, epochs, backend="jax")


def run_gpumlp_jax_steps(X, y, h, epochs):
    """``run_gpumlp_jax`` epoch by epoch: one jitted step each, no compiled blocks.

    (``gpumlp.fastpath.disabled()``, which on JAX turns off only the blocks.)
    """
    fit = run_gpumlp_jax(X, y, h, epochs)
    if fit is None:
        return None
    from gpumlp import fastpath

    def steps():
        with fastpath.disabled():
            return fit()

    return steps


def _jax_setup(X, y, h):
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    f = X.shape[1]
    params = [jnp.asarray(rng.uniform(-0.3, 0.3, s).astype(np.float32))
              for s in ((f, h), (h,), (h, 1), (1,))]
    Xj, yj = jnp.asarray(X), jnp.asarray(y[:, None])
    lr = rate(h)

    def loss(p):
        a1 = jax.nn.sigmoid(Xj @ p[0] + p[1])
        return jnp.mean((a1 @ p[2] + p[3] - yj) ** 2)

    def step(p):
        value, grads = jax.value_and_grad(loss)(p)
        return [w - lr * g for w, g in zip(p, grads)], value

    return jax, jnp, params, step


def run_jax_each(X, y, h, epochs):
    try:
        jax, _, params, step = _jax_setup(X, y, h)
    except ImportError:
        return None
    jitted = jax.jit(step)
    jitted(params)  # compile outside the timing

    def fit():
        p, rule = params, Rule()
        for epoch in range(1, epochs + 1):
            p, value = jitted(p)
            if rule.stop(float(value)):
                return epoch
        return epochs

    return fit


def run_jax_blocks(X, y, h, epochs, block=100):
    try:
        jax, jnp, params, step = _jax_setup(X, y, h)
    except ImportError:
        return None

    @jax.jit
    def run_block(p):
        def body(i, carry):
            p, losses = carry
            p, value = step(p)
            return p, losses.at[i].set(value)

        return jax.lax.fori_loop(0, block, body, (p, jnp.zeros(block, jnp.float32)))

    run_block(params)

    def fit():
        p, rule, done = params, Rule(), 0
        while done < epochs:
            p, losses = run_block(p)
            for value in np.asarray(losses):
                done += 1
                if rule.stop(float(value)) or done == epochs:
                    return done
        return done

    return fit


def run_torch(X, y, h, epochs):
    try:
        import torch
    except ImportError:
        return None
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y[:, None])
    rng = np.random.default_rng(0)
    shapes = ((X.shape[1], h), (h,), (h, 1), (1,))
    start = [rng.uniform(-0.3, 0.3, s).astype(np.float32) for s in shapes]
    lr = rate(h)

    def fit():
        p = [torch.tensor(a, requires_grad=True) for a in start]
        rule = Rule()
        for epoch in range(1, epochs + 1):
            loss = torch.mean((torch.sigmoid(Xt @ p[0] + p[1]) @ p[2] + p[3] - yt) ** 2)
            grads = torch.autograd.grad(loss, p)
            with torch.no_grad():
                for w, g in zip(p, grads):
                    w -= lr * g
            if rule.stop(loss.item()):
                return epoch
        return epochs

    return fit


def run_sklearn(X, y, h, epochs):
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor
    except ImportError:
        return None

    def fit():
        # Its loss is half the MSE: twice the rate takes the same step.
        model = MLPRegressor(hidden_layer_sizes=(h,), activation="logistic", solver="sgd",
                             batch_size=len(X),
                             momentum=0.0, learning_rate_init=2 * rate(h), max_iter=epochs,
                             tol=TOL / 2, n_iter_no_change=PATIENCE, shuffle=False,
                             random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return model.n_iter_

    return fit


#: name -> (runner, what it is)
RUNNERS = {"gpumlp": run_gpumlp, "gpumlp-numpy": run_gpumlp_numpy, "gpumlp-jax": run_gpumlp_jax,
           "gpumlp-jax-steps": run_gpumlp_jax_steps, "jax-each": run_jax_each,
           "jax-blocks": run_jax_blocks,
           "torch": run_torch, "sklearn": run_sklearn}
LABELS = {"gpumlp": "gpumlp", "gpumlp-numpy": "gpumlp, NumPy path (no C)",
          "gpumlp-jax": "gpumlp, backend jax",
          "gpumlp-jax-steps": "gpumlp, jax, jit per step",
          "jax-each": "jax.jit, host read each epoch",
          "jax-blocks": "jax.jit, 100 epochs per loop", "torch": "torch eager",
          "sklearn": "scikit-learn"}


def default_train():
    """Wall time of the default ``gpumlp train`` as a whole process, and its test R²."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "gpumlp", "train", "--quiet"],
                          capture_output=True, text=True, check=True,
                          cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    wall = time.perf_counter() - start
    line = next(line for line in done.stdout.splitlines() if line.startswith("test "))
    return wall, float(line.split("R^2")[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="tiny,small,medium",
                        help=f"of {', '.join(f'{k} {v[0]}' for k, v in SIZES.items())}")
    parser.add_argument("--runners", default=",".join(RUNNERS),
                        help=f"comma-separated, of {', '.join(RUNNERS)}")
    parser.add_argument("--repeats", type=int, default=5,
                        help="rounds, the runners taking turns; best of (default: 5)")
    parser.add_argument("--no-train", action="store_true",
                        help="skip timing the default gpumlp train process")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    names = [r.strip() for r in args.runners.split(",") if r.strip()]
    results, ratios = {}, {}
    # Ratios are taken against the first gpumlp runner named.
    reference = next((name for name in names if name.startswith("gpumlp")), None)
    for size in args.sizes.split(","):
        (n, f, h), epochs = SIZES[size]
        X, y = make_data(n, f)
        fits = {}
        for name in names:
            fit = RUNNERS[name](X, y, h, epochs)
            if fit is None:
                print(f"{(n, f, h)} {LABELS[name]}: not installed, skipped")
                continue
            fit()  # warm-up: imports, compilation, caches
            fits[name] = fit
        times = interleaved(fits, args.repeats)
        for name, values in times.items():
            results[(size, name)] = min(values)
            print(f"{str((n, f, h)):18s} {LABELS[name]:30s} {min(values):9.4f} ms/epoch "
                  f"(rounds: {', '.join(f'{v:.4g}' for v in values)})", flush=True)
            if reference in times and name != reference:
                # gpumlp / peer within each round: the drift cancels.
                ratios[(size, name)] = float(np.median(
                    np.asarray(times[reference]) / np.asarray(values)))
    print(f"\nper epoch, ms, best round (ratio = {reference} / peer, the median over rounds "
          f"of the ratio within a round; below 1 {reference} is faster)")
    for size in args.sizes.split(","):
        cells = [f"{LABELS[name]}: {results[(size, name)]:.4g}"
                 + (f" ({ratios[(size, name)]:.2f})" if (size, name) in ratios else "")
                 for name in names if (size, name) in results]
        print(f"{SIZES[size][0]}: " + "; ".join(cells))
    train = None
    if not args.no_train:
        train = default_train()
        print(f"\ndefault gpumlp train, whole process: {train[0]:.2f} s, test R^2 {train[1]:.4f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"per_epoch_ms": {f"{s}/{r}": v for (s, r), v in results.items()},
                       "ratio_median": {f"{s}/{r}": v for (s, r), v in ratios.items()},
                       "default_train": train}, handle, indent=1)


if __name__ == "__main__":
    main()
