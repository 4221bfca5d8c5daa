"""The ``gpumlp`` command line: a thin layer over the estimator.

Each sub-command parses its arguments, calls the library, and turns the
library's exceptions into one-line messages on stderr with exit status 2
(bad input or environment) or 1 (training failed). Nothing here computes.
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["main"]


def _hidden(text):
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths such as 64,32, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden needs positive widths, got {text!r}")
    return sizes


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a network (by default on the embedded Friedman #1 data)",
        description=(
            "Train the specified network: one sigmoid hidden layer, a linear output, "
            "mean-squared-error loss and full-batch gradient descent. With no "
            "arguments it trains on 2000 rows of Friedman #1 generated with seed 0, "
            "standardised, and reports train/test MSE and R^2."
        ),
    )
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: $GPUMLP_DEVICE or auto)")
    p.add_argument("--hidden", type=_hidden, default=(32,), metavar="W1,W2,...",
                   help="hidden layer widths (default: 32)")
    p.add_argument("--activation", default="sigmoid",
                   choices=["sigmoid", "logistic", "tanh", "relu", "identity"])
    p.add_argument("--solver", default="gd", choices=["gd", "sgd", "adam"])
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    p.add_argument("--epochs", type=int, default=5000, help="maximum epochs (default: 5000)")
    p.add_argument("--tol", type=float, default=1e-6,
                   help="stop when the loss improves by less than this for 10 epochs")
    p.add_argument("--batch-size", type=int, default=None,
                   help="minibatch size for sgd and adam (default: min(200, n))")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--test-size", type=float, default=0.2,
                   help="fraction of rows held out for testing (default: 0.2)")
    p.add_argument("--samples", type=int, default=2000,
                   help="rows of the default dataset (default: 2000)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(run=_run_train)


def _run_train(args):
    import warnings

    import numpy as np

    from . import MLPRegressor, get_device
    from ._sklearn_compat import ConvergenceWarning
    from .datasets import make_friedman1, standardize, train_test_split

    device = get_device(args.device)
    X, y = make_friedman1(args.samples, random_state=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(X, y, args.test_size, args.seed)
    X_train, X_test, _ = standardize(X_train, X_test)
    y_mean, y_scale = float(y_train.mean()), float(y_train.std())
    model = MLPRegressor(
        args.hidden, args.activation, solver=args.solver, learning_rate_init=args.lr,
        max_iter=args.epochs, tol=args.tol, random_state=args.seed, device=device,
        dtype=args.dtype, batch_size=args.batch_size or "auto",
    )
    print(f"device: {device}  data: Friedman #1, {X_train.shape[0]} train / "
          f"{X_test.shape[0]} test rows, {X.shape[1]} features  dtype: {args.dtype}")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X_train, (y_train - y_mean) / y_scale)
    wall = time.perf_counter() - start
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def report(name, X_part, y_part):
        y_pred = np.asarray(model.predict(X_part), dtype=np.float64) * y_scale + y_mean
        mse = float(np.mean((y_part - y_pred) ** 2))
        r2 = 1.0 - mse / float(np.var(y_part))
        print(f"{name:5s} MSE {mse:10.4f}   R^2 {r2:7.4f}")

    state = "converged" if converged else "stopped at --epochs"
    print(f"epochs: {model.n_iter_} ({state})  final loss: {model.loss_curve_[-1]:.6g}")
    report("train", X_train, y_train)
    report("test", X_test, y_test)
    print(f"wall time: {wall:.2f} s")
    return 0


def _add_validate(sub):
    from .agreement import BACKENDS, TRAINING_CONFIGS

    p = sub.add_parser(
        "validate",
        help="check that every backend gives the numbers NumPy float64 gives",
        description=(
            "Run every kernel and several training runs (full-batch, minibatch, "
            "momentum, Adam; weights after 1, 10 and 100 epochs) from the same "
            "initial weights and data on each backend and dtype, compare them with "
            "NumPy in float64, and print max absolute error, normwise relative error, "
            "max ULP distance, the tolerance and PASS/FAIL. Exits 1 on any FAIL."
        ),
    )
    p.add_argument("--backends", default=None,
                   help=f"comma-separated, of {', '.join(BACKENDS)} (default: all available)")
    p.add_argument("--dtypes", default="float32,float64", help="default: float32,float64")
    p.add_argument("--configs", default=None,
                   help=f"training runs, of {', '.join(TRAINING_CONFIGS)} (default: all)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    p.set_defaults(run=_run_validate)


def _run_validate(args):
    from . import agreement

    def names(text):
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    backends = names(args.backends)
    if backends is None:
        backends, unusable = agreement.available_backends()
        for name, reason in unusable.items():
            print(f"skipping backend {name}: {reason}")
    else:
        for name in backends:
            try:
                agreement.backend_device(name)
            except agreement.BackendUnavailableError as exc:
                raise ValueError(f"backend {name!r} is not available: {exc}") from None
    dtypes = names(args.dtypes)
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"--dtypes takes float32 and/or float64, got {dtype!r}")
    configs = names(args.configs)
    for config in configs or ():
        if config not in agreement.TRAINING_CONFIGS:
            raise ValueError(f"unknown --configs entry {config!r}; choose from "
                             f"{', '.join(agreement.TRAINING_CONFIGS)}")
    results = agreement.validate(backends, dtypes, configs)
    print(agreement.format_table(results))
    if args.json:
        from .io import write_text_atomic

        write_text_atomic(args.json, agreement.to_json(results))
        print(f"wrote {args.json}")
    return 0 if all(r.passed for r in results) else 1


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="gpumlp",
        description="Train and check an MLP regressor on the CPU (NumPy) or a CUDA GPU (CuPy).",
    )
    parser.add_argument("--version", action="version", version=f"gpumlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_validate(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    from .devices import CUDAUnavailableError
    from .training import TrainingDivergedError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, TypeError, CUDAUnavailableError, OSError) as exc:
        status = 1 if isinstance(exc, TrainingDivergedError) else 2
        print(f"gpumlp {args.command}: error: {exc}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"gpumlp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
