"""The ``gpumlp`` command line: a thin layer over the library.

Each sub-command parses its arguments, calls the library, and turns the
library's exceptions into one-line messages on stderr: exit status 2 for bad
input or environment, 1 for a training that failed or a validation that found
a disagreement, 130 for Ctrl-C. Nothing here computes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error here."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bounded(kind, low, *, low_open=False, below=None):
    """An argparse type: a finite ``kind`` (int or float) >= ``low`` (or > it), < ``below``."""
    what = "an integer" if kind is int else "a number"
    bound = f"{'>' if low_open else '>='} {low}" + (f" and < {below}" if below else "")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}")
        return value

    return parse


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file, however they are spelled."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _check_outputs(inputs, outputs):
    """Refuse, before any work, an output that cannot be written or would destroy a file.

    ``inputs`` and ``outputs`` are ``(option, path)`` pairs; a path of None is
    skipped. An output must not be an input or another output (compared as
    files, not as spellings), must not be a directory, and its folder must
    exist and be writable.
    """
    inputs = [(option, path) for option, path in inputs if path is not None]
    written = []
    for option, path in outputs:
        if path is None:
            continue
        for other_option, other in inputs:
            if _same_file(path, other):
                raise ValueError(f"{option} {path} is the same file as {other_option} "
                                 f"{other}, which writing it would destroy; choose another "
                                 f"{option} path.")
        for other_option, other in written:
            if _same_file(path, other):
                raise ValueError(f"{option} {path} is the same file as {other_option} "
                                 f"{other}, so one would overwrite the other; choose "
                                 f"another {option} path.")
        if os.path.isdir(path):
            raise ValueError(f"{option} {path} is a directory; give a file path.")
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            problem = "is not a folder" if os.path.exists(folder) else "does not exist"
            raise ValueError(f"{option} {path}: {folder} {problem}; create the folder or "
                             f"choose another path.")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: the folder {folder} is not writable; "
                             f"choose another path.")
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise ValueError(f"{option} {path} exists and is read-only; make it writable "
                             f"or choose another path.")
        written.append((option, path))


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


_BACKEND_CHOICES = ["auto", "numpy", "cupy", "torch", "jax"]
_BACKEND_HELP = ("the array library: auto (NumPy on the CPU, CuPy on CUDA), numpy, cupy, torch "
                 "(devices cpu, cuda:N, mps, xpu) or jax (cpu, gpu:N, tpu) (default: "
                 "$GPUMLP_BACKEND or auto)")


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a network on a data file (default: embedded Friedman #1 data)",
        description=(
            "Train the specified network (by default one sigmoid hidden layer, a linear "
            "output, mean-squared-error loss and full-batch gradient descent) and report "
            "train/test MSE and R^2 in the target's units. Without --data it trains on "
            "2000 rows of Friedman #1 generated with --seed. X and y are standardised "
            "with statistics of the training split, which are saved with the model."
        ),
        epilog=(
            "Data files: CSV with a header row (target: --target, default the last column); "
            ".npy, a 2-D array whose last column is the target; .npz with arrays X and y. "
            "A directory or glob of .npy/.npz files, a .zarr store or a .parquet dataset "
            "trains on Dask (--cluster local:N, the default with N = cores, or "
            "--scheduler ADDRESS), reading the data on the workers; the test rows are "
            "then the last --test-size of the chunks."
        ),
    )
    p.add_argument("--data", metavar="FILE", help="a .csv, .npy or .npz file")
    p.add_argument("--target", metavar="NAME", help="CSV target column (default: the last)")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: $GPUMLP_DEVICE or auto)")
    p.add_argument("--backend", default=None, choices=_BACKEND_CHOICES, help=_BACKEND_HELP)
    p.add_argument("--hidden", type=_hidden, default=(32,), metavar="W1,W2,...",
                   help="hidden layer widths (default: 32)")
    p.add_argument("--activation", default="sigmoid",
                   choices=["sigmoid", "logistic", "tanh", "relu", "identity"])
    p.add_argument("--solver", default="gd", choices=["gd", "sgd", "adam"],
                   help="gd: full-batch gradient descent (default); sgd; adam")
    p.add_argument("--lr", type=_bounded(float, 0, low_open=True), default=0.1,
                   help="learning rate (default: 0.1)")
    p.add_argument("--epochs", type=_bounded(int, 1), default=5000,
                   help="maximum epochs (default: 5000)")
    p.add_argument("--tol", type=_bounded(float, 0), default=1e-6,
                   help="stop when the loss improves by less than this for 10 epochs "
                        "(default: 1e-6)")
    p.add_argument("--batch-size", type=_bounded(int, 1), default=None,
                   help="minibatch size for sgd and adam (default: min(200, n))")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--test-size", type=_bounded(float, 0, below=1), default=0.2,
                   help="fraction of rows held out for testing (default: 0.2)")
    p.add_argument("--no-standardize", action="store_true",
                   help="train on X and y as they are")
    p.add_argument("--samples", type=_bounded(int, 1), default=2000,
                   help="rows of the embedded dataset, without --data (default: 2000)")
    p.add_argument("--out", metavar="MODEL.npz", help="save the trained model here")
    p.add_argument("--plot", metavar="LOSS.png",
                   help="write a plot of the training and held-out loss (needs matplotlib)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--cluster", metavar="local:N",
                   help="train on Dask: start a local cluster of N worker processes "
                        "(local-cuda: one worker per GPU, needs dask-cuda)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="train on Dask: join the cluster at this scheduler address, "
                        "e.g. tcp://host:8786")
    p.set_defaults(run=_run_train)


class _Progress:
    """A tqdm bar over epochs: loss, held-out loss, samples per second and ETA."""

    def __init__(self, total, n_rows, enabled):
        self.n_rows = n_rows
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, unit="epoch", file=sys.stderr, dynamic_ncols=True,
                            desc="training")
        self.start = time.perf_counter()

    def __call__(self, epoch, loss, validation_loss):
        if self.bar is None:
            return
        rate = epoch * self.n_rows / max(time.perf_counter() - self.start, 1e-9)
        postfix = {"loss": f"{loss:.4g}"}
        if validation_loss is not None:
            postfix["held-out"] = f"{validation_loss:.4g}"
        postfix["samples/s"] = f"{rate:.3g}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _load_training_data(args):
    from .data import read_training_data
    from .datasets import make_friedman1

    if args.data is None:
        if args.target is not None:
            raise ValueError("--target needs --data: the embedded dataset's target is fixed.")
        X, y = make_friedman1(args.samples, random_state=args.seed)
        names = [f"x{j}" for j in range(X.shape[1])]
        return X, y, names, "y", f"Friedman #1 (embedded, seed {args.seed})"
    X, y, names, target = read_training_data(args.data, args.target)
    return X, y, names, target, args.data


def _uses_dask(args):
    from .distributed import is_dataset_path

    return bool(args.cluster or args.scheduler or (args.data and is_dataset_path(args.data)))


def _run_train(args):
    from . import get_device
    from .splitting import train_test_split

    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install 'gpumlp[plot]'") from None
    _check_outputs([("--data", args.data)], [("--out", args.out), ("--plot", args.plot)])
    cluster = client = None
    if _uses_dask(args):
        from .distributed import connect, read_dataset, split_by_chunks

        if args.data is None:
            raise ValueError("--cluster and --scheduler need --data (a directory or glob "
                             "of .npy/.npz files, a .zarr store or a .parquet dataset)")
        client, cluster = connect(args.scheduler or args.cluster or "local")
        device = "dask workers" + (f" ({args.scheduler})" if args.scheduler else
                                   f" ({len(client.scheduler_info()['workers'])} local)")
        X, y, names, target = read_dataset(args.data, args.target)
        source = args.data
        X_train, X_test, y_train, y_test = split_by_chunks(X, y, args.test_size)
        if args.cluster and args.cluster.startswith("local-cuda"):
            from .distributed import to_cupy_blocks

            X_train, y_train = to_cupy_blocks(X_train), to_cupy_blocks(y_train)
    else:
        device = get_device(args.device, args.backend)
        X, y, names, target, source = _load_training_data(args)
        if args.test_size > 0:
            X_train, X_test, y_train, y_test = train_test_split(X, y, args.test_size, args.seed)
        else:
            X_train, X_test, y_train, y_test = X, None, y, None
    try:
        return _train_and_report(args, device, client, X, X_train, X_test, y_train, y_test,
                                 names, target, source)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _split_record(args, source):
    """What ``validate --model`` needs to redo this run's training split from --data."""
    return {"source": source, "target": args.target, "test_size": args.test_size,
            "split_seed": args.seed, "samples": None if args.data else args.samples}


def _train_and_report(args, device, client, X, X_train, X_test, y_train, y_test, names,
                      target, source):
    import warnings

    import numpy as np

    from . import MLPRegressor
    from ._sklearn_compat import convergence_warning

    ConvergenceWarning = convergence_warning()
    from .io import save
    from .scaling import StandardizedRegressor

    net = MLPRegressor(
        args.hidden, args.activation, solver=args.solver, learning_rate_init=args.lr,
        max_iter=args.epochs, tol=args.tol, random_state=args.seed,
        device=None if client is not None else device,
        dtype=args.dtype, batch_size=args.batch_size or "auto",
    )
    model = net if args.no_standardize else StandardizedRegressor(net)
    print(f"device: {device}  data: {source}, {X_train.shape[0]} train / "
          f"{0 if X_test is None else X_test.shape[0]} test rows, {X.shape[1]} features, "
          f"target {target!r}  dtype: {args.dtype}")
    progress = _Progress(args.epochs, X_train.shape[0],
                         enabled=not args.quiet and sys.stderr.isatty())
    eval_set = None if X_test is None or client is not None else (X_test, y_test)
    extra = {} if client is None else {"client": client}
    start = time.perf_counter()
    interrupted = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(X_train, y_train, eval_set=eval_set, callback=progress, **extra)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    wall = time.perf_counter() - start
    if interrupted:
        print(f"interrupted after {net.n_iter_} epochs ({wall:.2f} s)", file=sys.stderr)
        if args.out and getattr(net, "n_iter_", 0) > 0:
            save(model, args.out, feature_names=names, target_names=[target],
                 extra={**_split_record(args, source), "interrupted": True})
            print(f"saved the last complete epoch's model to {args.out}", file=sys.stderr)
        return 130
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def report(name, X_part, y_part):
        y_pred = model.predict(X_part)
        if client is not None:  # dask: two numbers computed on the workers
            import dask

            mse, variance = (float(v) for v in dask.compute(
                ((y_part - y_pred) ** 2).mean(), y_part.var()))
        else:
            y_pred = np.asarray(y_pred, dtype=np.float64)
            mse = float(np.mean((y_part - y_pred) ** 2))
            variance = float(np.var(y_part))
        r2 = 1.0 - mse / variance if variance > 0 else float("nan")
        print(f"{name:5s} MSE {mse:12.6g}   R^2 {r2:8.4f}")

    state = "converged" if converged else "stopped at --epochs"
    print(f"epochs: {net.n_iter_} ({state})  final loss: {net.loss_curve_[-1]:.6g}")
    report("train", X_train, y_train)
    if X_test is not None:
        report("test", X_test, y_test)
    print(f"wall time: {wall:.2f} s")
    if args.out:
        save(model, args.out, feature_names=names, target_names=[target],
             extra=_split_record(args, source))
        print(f"saved model to {args.out}")
    if args.plot:
        from .plotting import plot_loss

        plot_loss(net.loss_curve_, net.validation_loss_curve_, args.plot)
        print(f"wrote loss plot to {args.plot}")
    return 0


def _add_predict(sub):
    p = sub.add_parser(
        "predict",
        help="predict with a saved model",
        description=(
            "Predict with a model saved by 'gpumlp train --out'. A CSV needs the model's "
            "feature columns (any order; other columns, such as the target, are ignored); "
            ".npy holds exactly the features; .npz holds them as X."
        ),
    )
    p.add_argument("--model", required=True, metavar="MODEL.npz")
    p.add_argument("--data", required=True, metavar="FILE")
    p.add_argument("--out", metavar="PREDS.csv",
                   help="write predictions here (.csv or .npy); default: print them")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: $GPUMLP_DEVICE or auto)")
    p.add_argument("--backend", default=None, choices=_BACKEND_CHOICES, help=_BACKEND_HELP)
    p.set_defaults(run=_run_predict)


def _run_predict(args):
    import numpy as np

    from .data import read_features, write_predictions
    from .io import load_with_metadata

    _check_outputs([("--model", args.model), ("--data", args.data)], [("--out", args.out)])
    model, metadata = load_with_metadata(args.model)
    net = getattr(model, "regressor_", model)
    if args.device is not None or args.backend is not None:
        net.set_params(device=args.device, backend=args.backend)
    names = metadata.get("feature_names") or [
        f"x{j}" for j in range(metadata["layer_sizes"][0])]
    target = (metadata.get("target_names") or ["prediction"])[0]
    X = read_features(args.data, names, target)
    y_pred = np.asarray(model.predict(X))
    if args.out:
        write_predictions(args.out, y_pred, target)
        print(f"wrote {y_pred.shape[0]} predictions to {args.out}")
    else:
        np.savetxt(sys.stdout, y_pred.reshape(y_pred.shape[0], -1), fmt="%.9g",
                   header=target, comments="")
    return 0


def _add_devices(sub):
    p = sub.add_parser("devices", help="list the backends and devices gpumlp can use here",
                       description="List every backend (numpy, cupy, torch, jax) with each "
                                   "device it can use here, and for the others why they "
                                   "are unusable. Use a row as --backend BACKEND --device "
                                   "DEVICE.")
    p.set_defaults(run=_run_devices)


def _run_devices(args):
    from .devices import inventory

    rows = inventory()
    print(f"{'backend':8s} {'device':8s} {'usable':7s} detail")
    for backend, device, usable, detail in rows:
        print(f"{backend:8s} {device:8s} {'yes' if usable else 'no':7s} {detail}")
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
    p.add_argument("--model", metavar="MODEL.npz", default=None,
                   help="certify one fit instead: replay the fit recorded in this model file "
                        "on every backend and dtype against NumPy float64, compare per epoch, "
                        "and check the stored weights; needs --data")
    p.add_argument("--data", metavar="FILE", default=None,
                   help="with --model: the data it was trained on (for a model from "
                        "'gpumlp train', the same --data: its split is redone; omit it for "
                        "the embedded dataset)")
    p.set_defaults(run=_run_validate)


def _run_validate(args):
    from . import agreement
    from ._atomic import write_text_atomic

    def names(text):
        return None if text is None else [t.strip() for t in text.split(",") if t.strip()]

    _check_outputs([("--model", args.model), ("--data", args.data)], [("--json", args.json)])
    if args.model is not None:
        return _run_certificate(args, names)
    if args.data is not None:
        raise ValueError("--data goes with --model (the fit to certify).")
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
        write_text_atomic(args.json, agreement.to_json(results))
        print(f"wrote {args.json}")
    return 0 if all(r.passed for r in results) else 1


def _run_certificate(args, names):
    from ._atomic import write_text_atomic
    from .certificate import NotReplayableError, certify, format_certificate
    from .io import read_metadata

    metadata = read_metadata(args.model)
    extra = metadata.get("extra") or {}
    if args.data is None and isinstance(extra.get("samples"), int):
        from .datasets import make_friedman1

        X, y = make_friedman1(extra["samples"], random_state=extra.get("split_seed", 0))
    elif args.data is None:
        raise ValueError("--model needs --data, the file the model was trained on.")
    else:
        from .data import read_training_data

        X, y, _, _ = read_training_data(args.data, extra.get("target"))
    if "test_size" in extra:  # a model from `gpumlp train`: redo its split
        from .splitting import train_test_split

        if extra["test_size"] > 0:
            X, _, y, _ = train_test_split(X, y, extra["test_size"], extra["split_seed"])
    dtypes = names(args.dtypes)
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"--dtypes takes float32 and/or float64, got {dtype!r}")
    try:
        cert = certify(args.model, X, y, backends=names(args.backends), dtypes=tuple(dtypes))
    except NotReplayableError as exc:
        print(f"gpumlp validate: cannot certify: {exc}", file=sys.stderr)
        return 2
    print(format_certificate(cert))
    if args.json:
        write_text_atomic(args.json, cert.to_json())
        print(f"wrote {args.json}")
    return 0 if cert.passed else 1


def build_parser():
    from ._version import __version__

    parser = _Parser(
        prog="gpumlp",
        description="Train, use and check an MLP regressor on the CPU (NumPy) or a CUDA "
                    "GPU (CuPy).",
    )
    parser.add_argument("--version", action="version", version=f"gpumlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_predict(sub)
    _add_devices(sub)
    _add_validate(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status."""
    from .devices import BackendUnavailableError
    from .training import TrainingDivergedError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except TrainingDivergedError as exc:
        print(f"gpumlp {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, BackendUnavailableError, OSError, MemoryError) as exc:
        print(f"gpumlp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gpumlp {args.command}: interrupted", file=sys.stderr)
        return 130

