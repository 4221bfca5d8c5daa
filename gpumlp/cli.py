"""The ``gpumlp`` command line: a thin layer over the library.

Each sub-command parses its arguments, calls the library, and turns the
library's exceptions into one-line messages on stderr: exit status 2 for bad
input or environment, 1 for a training that failed or a validation that found
a disagreement, 130 for Ctrl-C, 141 for a command that succeeded but whose
stdout was closed by its reader. Files are written before the report that
names them is printed, all through :func:`gpumlp._atomic.atomic_path`.
Nothing here computes.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import time
import warnings

from .activations import NAMES as ACTIVATION_NAMES
from .losses import LOSSES
from .solvers import SCHEDULES, SOLVERS

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error here."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bounded(kind, low, *, low_open=False, below=None, at_most=None):
    """An argparse type: a finite ``kind`` (int or float) >= ``low`` (or > it), < ``below``.

    ``at_most`` is an inclusive upper bound, where ``below`` is an exclusive one.
    """
    what = "an integer" if kind is int else "a number"
    bound = f"{'>' if low_open else '>='} {low}" + (f" and < {below}" if below else "") + (
        f" and <= {at_most}" if at_most is not None else "")

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes {what}, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = (below is not None and value >= below) or (
            at_most is not None and value > at_most)
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text!r}")
        return value

    return parse


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file, however they are spelled."""
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _data_files(option, path):
    """``(option, file)`` for each file that ``--data`` reads: the path itself, or
    every file under a folder (a Parquet or Zarr dataset, a folder of parts),
    or every match of a glob."""
    import glob

    if path is None:
        return []
    if os.path.isdir(path):
        return [(option, os.path.join(root, name))
                for root, _, names in os.walk(path) for name in names]
    if not os.path.exists(path) and any(c in path for c in "*?["):
        return [(option, match) for match in sorted(glob.glob(path))] or [(option, path)]
    return [(option, path)]


#: The path that means stdout, for the outputs that may go there.
STDOUT = "-"


def _is_model_file(path) -> bool:
    """Whether ``path`` is an existing gpumlp model file (an archive with its metadata)."""
    import zipfile

    if not os.path.isfile(path):     # (a FIFO would block the read; check_target refuses it)
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "metadata.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def _check_outputs(inputs, outputs, *, to_stdout=()):
    """Refuse, before any work, an output that cannot be written or would destroy a file.

    ``inputs`` and ``outputs`` are ``(option, path)`` pairs; a path of None is
    skipped, and so is ``-`` for the options in ``to_stdout`` (it means
    stdout there; elsewhere it is refused). An output must not be an input
    or another output (compared as files, not as spellings), must be a
    regular file or a new one (:func:`gpumlp._atomic.check_target`: no
    directory, FIFO or device), and its folder must exist and be writable.
    """
    from ._atomic import check_target, mark_input

    inputs = [(option, path) for option, path in inputs if path is not None]
    for _, path in inputs:
        mark_input(path)   # never removed as a killed writer's temporary file
    written = []
    for option, path in outputs:
        if path is None or (path == STDOUT and option in to_stdout):
            continue
        if path == STDOUT:
            raise ValueError(f"{option} - : {option} writes a file, not stdout; give a "
                             f"file path.")
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
        if option in ("--json", "--plot") and _is_model_file(path):
            # A report or a plot over a trained model is a slip, not a wish.
            raise ValueError(f"{option} {path} is a gpumlp model file, which writing "
                             f"{'the report' if option == '--json' else 'the plot'} there "
                             f"would destroy; choose another {option} path (or delete the "
                             f"model first).")
        try:
            check_target(path)
        except (FileNotFoundError, NotADirectoryError):
            pass  # no folder: said below, in the option's words
        except OSError as exc:
            raise ValueError(f"{option} {path}: {exc.strerror or exc}") from None
        # A link is written through: the folder that matters is its target's.
        real = os.path.realpath(path) if os.path.islink(path) else path
        folder = os.path.dirname(real) or "."
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


def _learning_rate(text):
    """``--lr``: ``"auto"`` or a finite number > 0."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes auto or a number > 0, got {text!r}") from None
    return _bounded(float, 0, low_open=True)(text)


def _hidden(text):
    parts = text.split(",")
    if len(parts) > 1 and not all(part.strip() for part in parts):
        # "4,,3" is a typo for three layers or two: neither is guessed.
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths such as 64,32, got {text!r}, which has "
            f"an empty width")
    try:
        sizes = tuple(int(part) for part in parts if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--hidden takes comma-separated widths such as 64,32, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden needs positive widths, got {text!r}")
    return sizes


def _names(text):
    """``--drop``: comma-separated column names."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"takes comma-separated column names, got {text!r}")
    return names


_BACKEND_CHOICES = ["auto", "numpy", "cupy", "torch", "jax"]
_BACKEND_HELP = ("the array library: auto (NumPy on the CPU, CuPy on CUDA), numpy, cupy, torch "
                 "(devices cpu, cuda:N, mps, xpu) or jax (cpu, gpu:N, tpu) (default: "
                 "$GPUMLP_BACKEND or auto)")


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a network on a data file (default: embedded Friedman #1 data)",
        description=(
            "Train a network (by default StandardizedRegressor's: one sigmoid hidden layer "
            "of 100 units, a linear output, mean-squared-error loss, Adam with an L2 "
            "penalty of 0.1; --solver gd for full-batch gradient descent) and report "
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
            "then the last --test-size of the chunks (of the rows, for data in one chunk)."
        ),
    )
    groups = {name: p.add_argument_group(name, text) for name, text in _TRAIN_GROUPS}
    _add_network_options(groups["network"])
    _add_solver_options(groups["solver"])
    _add_stopping_options(groups["stopping"])
    _add_data_options(groups["data"])
    _add_output_options(groups["output"])
    _add_resume_options(p)
    p.set_defaults(run=_run_train)


#: The ``train`` options' groups in ``--help``: (title, description).
_TRAIN_GROUPS = (
    ("network", "the model and its loss"),
    ("solver", "how the weights are updated (scikit-learn's parameter names)"),
    ("stopping", "when training stops"),
    ("data", "what to train on, and where"),
    ("output", "what is written"),
)


def _defaults():
    """The estimator's parameters ``train`` defaults to: StandardizedRegressor's regressor."""
    from .scaling import default_regressor

    return default_regressor().get_params()


def _add_network_options(g):
    defaults = _defaults()
    g.add_argument("--hidden", type=_hidden, default=tuple(defaults["hidden_layer_sizes"]),
                   metavar="W1,W2,...",
                   help="hidden layer widths (default: "
                        f"{','.join(map(str, defaults['hidden_layer_sizes']))})")
    g.add_argument("--activation", default=defaults["activation"],
                   choices=ACTIVATION_NAMES)
    g.add_argument("--alpha", type=_bounded(float, 0), default=defaults["alpha"],
                   help=f"L2 penalty strength, scikit-learn's meaning (default: "
                        f"{defaults['alpha']:g})")
    g.add_argument("--loss", default="squared_error", choices=list(LOSSES),
                   help="squared_error: the mean squared error (default); poisson: an "
                        "exponential output and half the Poisson deviance, for counts "
                        "(y >= 0; standardisation then only scales y)")


def _add_solver_options(g):
    g.add_argument("--solver", default=_defaults()["solver"], choices=list(SOLVERS),
                   help="gd: full-batch gradient descent; sgd; adam (default: what did "
                        "best on real data, as StandardizedRegressor's); lbfgs: full-batch "
                        "L-BFGS (--epochs counts its iterations)")
    g.add_argument("--lr", type=_learning_rate, default=None, metavar="auto|RATE",
                   help="learning rate (learning_rate_init); auto (the default): for gd, "
                        "set from the loss's curvature and adapted; for sgd and adam, 0.01 "
                        "(the estimator's)")
    g.add_argument("--batch-size", type=_bounded(int, 1), default=None,
                   help="minibatch size for sgd and adam (default: min(200, n))")
    g.add_argument("--momentum", type=_bounded(float, 0, at_most=1), default=0.9,
                   help="sgd's momentum, 0 for none (default: 0.9)")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True,
                   help="sgd: Nesterov's momentum (nesterovs_momentum; default: on)")
    g.add_argument("--beta1", type=_bounded(float, 0, below=1), default=0.9,
                   help="adam's beta_1 (default: 0.9)")
    g.add_argument("--beta2", type=_bounded(float, 0, below=1), default=0.999,
                   help="adam's beta_2 (default: 0.999)")
    g.add_argument("--epsilon", type=_bounded(float, 0, low_open=True), default=1e-8,
                   help="adam's epsilon (default: 1e-8)")
    g.add_argument("--learning-rate", default="constant",
                   choices=SCHEDULES,
                   help="the rate's schedule for sgd, and for gd at a fixed --lr "
                        "(scikit-learn's learning_rate; default: constant)")
    g.add_argument("--power-t", type=_bounded(float, 0), default=0.5,
                   help="the exponent of --learning-rate invscaling (default: 0.5)")
    g.add_argument("--max-fun", type=_bounded(int, 1), default=15000,
                   help="lbfgs: the most loss evaluations (default: 15000)")


def _add_stopping_options(g):
    defaults = _defaults()
    g.add_argument("--epochs", type=_bounded(int, 1), default=defaults["max_iter"],
                   help=f"maximum epochs, max_iter (default: {defaults['max_iter']})")
    g.add_argument("--tol", type=_bounded(float, 0), default=defaults["tol"],
                   help="sgd and adam: an epoch improves when the loss falls (with "
                        "--early-stopping: the validation R^2 rises) by at least this; gd: "
                        "when the next step is expected to lower the loss by more than this "
                        "fraction of it; lbfgs: stops when no gradient entry is larger "
                        "(scikit-learn's gtol) "
                        f"(default: {defaults['tol']:g})")
    g.add_argument("--n-iter-no-change", type=_bounded(int, 1),
                   default=defaults["n_iter_no_change"],
                   help="stop after more than this many epochs without improvement "
                        f"(default: {defaults['n_iter_no_change']})")
    g.add_argument("--early-stopping", action="store_true",
                   help="stop on the R^2 of a validation split of the training rows and "
                        "keep the best weights; the test rows stay untouched")
    g.add_argument("--validation-fraction", type=_bounded(float, 0, low_open=True, below=1),
                   default=0.1,
                   help="share of the training rows held out with --early-stopping "
                        "(default: 0.1)")


def _add_data_options(g):
    g.add_argument("--data", metavar="FILE", help="a .csv, .npy or .npz file")
    g.add_argument("--target", metavar="NAME", help="CSV target column (default: the last)")
    g.add_argument("--drop", type=_names, default=None, metavar="COL1,COL2,...",
                   help="CSV columns not to read (an id, a text column of too many levels)")
    g.add_argument("--samples", type=_bounded(int, 1), default=2000,
                   help="rows of the embedded dataset, without --data (default: 2000)")
    g.add_argument("--test-size", type=_bounded(float, 0, below=1), default=0.2,
                   help="fraction of rows held out for testing (default: 0.2)")
    g.add_argument("--no-standardize", action="store_true",
                   help="train on X and y as they are")
    g.add_argument("--seed", type=_bounded(int, 0, at_most=2**32 - 1), default=0,
                   help="random seed, 0 to 2**32 - 1 (default: 0)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                   help="the dtype to train in (default: float32)")
    g.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: $GPUMLP_DEVICE or auto)")
    g.add_argument("--backend", default=None, choices=_BACKEND_CHOICES, help=_BACKEND_HELP)
    g.add_argument("--cluster", metavar="local:N",
                   help="train on Dask: start a local cluster of N worker processes, at "
                        "most one per core (local: one per core; local-cuda: one worker "
                        "per GPU, needs dask-cuda)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="train on Dask: join the cluster at this scheduler address, "
                        "e.g. tcp://host:8786")


def _add_output_options(g):
    g.add_argument("--out", metavar="MODEL.npz", help="save the trained model here")
    g.add_argument("--plot", metavar="LOSS.png",
                   help="write a plot of the training and held-out loss (needs matplotlib), "
                        "in the format its suffix names (.png, .pdf, .svg, ...; PNG without one)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--json", metavar="FILE", default=None,
                   help="also write the report (settings, epochs, how training stopped, "
                        "train and test MSE and R^2, wall time) as JSON")


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
    """X, y, feature names, target name, a description of the source, and the columns."""
    from .data import read_training_table
    from .datasets import make_friedman1

    if args.data is None:
        for option, value in (("--target", args.target), ("--drop", args.drop)):
            if value is not None:
                raise ValueError(f"{option} needs --data: the embedded dataset's columns "
                                 f"are fixed.")
        X, y = make_friedman1(args.samples, random_state=args.seed)
        names = [f"x{j}" for j in range(X.shape[1])]
        return X, y, names, "y", f"Friedman #1 (embedded, seed {args.seed})", None
    table = read_training_table(args.data, args.target, args.drop or ())
    for note in table.notes:
        print(f"note: {note}")
    columns = table.columns if any(levels is not None for _, levels in table.columns) \
        else None
    return table.X, table.y, table.feature_names, table.target, args.data, columns


def _uses_dask(args):
    from .distributed import is_dataset_path

    return bool(args.cluster or args.scheduler or (args.data and is_dataset_path(args.data)))


def _run_train(args):
    from . import fastpath, get_device
    from ._settings import data_digest
    from .splitting import train_test_split

    fastpath.check_environment()     # before the data is read: a typo costs nothing

    resumed = _resume(args) if args.resume else None
    if args.data is not None and "samples" in getattr(args, "given", ()):
        raise ValueError("--samples sets the size of the embedded dataset; with --data every "
                         "row of the file is used (leave --samples out).")
    _check_checkpoint_options(args)
    if not args.resume:   # a resume's settings are the saved run's, checked there
        _check_unused_options(args)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ValueError("--plot needs matplotlib: pip install 'gpumlp[plot]'") from None
    inputs = _data_files("--data", args.data)
    if args.resume and not _same_file(args.out, args.resume):
        inputs.append(("--resume", args.resume))
    _check_outputs(inputs, [("--out", args.out), ("--plot", args.plot),
                            ("--json", args.json)])
    if args.plot:
        from .plotting import plot_format

        plot_format(args.plot)   # a suffix that names no image format: refused before training
    cluster = client = columns = None
    if _uses_dask(args):
        from .distributed import cluster_plan, connect, read_dataset, split_by_chunks

        if args.data is None:
            raise ValueError("--cluster and --scheduler need --data (a directory or glob "
                             "of .npy/.npz files, a .zarr store or a .parquet dataset)")
        # The options and the files' headers first: either may be refused
        # before a cluster starts.
        plan = cluster_plan(args.cluster or (None if args.scheduler else "local"),
                            args.scheduler)
        X, y, names, target = read_dataset(args.data, args.target, args.drop or ())
        client, cluster = connect(plan=plan)
        device = "dask workers" + (f" ({args.scheduler})" if args.scheduler else
                                   f" ({len(client.scheduler_info()['workers'])} local)")
        source = args.data
        X_train, X_test, y_train, y_test = split_by_chunks(X, y, args.test_size)
        # The splits are held on the workers for the whole run: the fit holds
        # its chunks under keys of its own and releases them when it ends, and
        # a graph over the same loaded blocks submitted just then (the report's
        # scores) could meet keys the scheduler was forgetting (a KeyError, seen
        # once in CI).
        splits = (X_train, X_test, y_train, y_test)
        held = iter(client.persist([a for a in splits if a is not None]))
        X_train, X_test, y_train, y_test = (None if a is None else next(held) for a in splits)
        if plan[0] == "local-cuda":
            from .distributed import to_cupy_blocks

            X_train, y_train = to_cupy_blocks(X_train), to_cupy_blocks(y_train)
    else:
        device = get_device(args.device, args.backend)
        X, y, names, target, source, columns = _load_training_data(args)
        if args.test_size > 0:
            X_train, X_test, y_train, y_test = train_test_split(X, y, args.test_size, args.seed)
        else:
            X_train, X_test, y_train, y_test = X, None, y, None
    digest = None if client is not None or not args.out else data_digest(X, y)
    if resumed is not None:
        _check_resumed_data(args, resumed[1], digest)
        # The same numbers (checked): the run keeps its names, though an .npy has none.
        saved_names, saved_target, saved_columns = resumed[2]
        data_names, data_target = names, target
        names = saved_names or names
        target = saved_target or target
        if saved_columns is not None:
            # The digest is of the numbers: text levels renamed in the same
            # sorted places (red -> purple) encode the same, and the model
            # would have learned red's effect under the name purple.
            saved_levels = [column["levels"] for column in saved_columns]
            if columns is not None and [lv for _, lv in columns] != saved_levels:
                raise ValueError(
                    f"--resume {args.resume}: {args.data} holds other text levels than the "
                    f"data the saved run trained on (the run's: "
                    f"{'; '.join(', '.join(lv) for lv in saved_levels if lv)}); pass the "
                    f"original data with --data.")
            columns = [(column["name"], column["levels"]) for column in saved_columns]
        # (An .npy or .npz has no header: its names are made up, and the run's kept.)
        headed = args.data is not None and not args.data.endswith((".npy", ".npz"))
        if headed and data_names is not None and saved_names is not None and \
                list(data_names) != list(saved_names):
            # The digest is of the numbers, in their places: a header that names
            # them otherwise (a and b swapped) says they are other columns, which
            # predict and validate would read by those names.
            raise ValueError(
                f"--resume {args.resume}: {args.data} names its feature columns "
                f"{', '.join(map(str, data_names))}, the saved run's are "
                f"{', '.join(map(str, saved_names))}: the same numbers under other names "
                f"are other columns; pass the original data with --data, or rename its "
                f"columns as the run's.")
        if headed and data_target is not None and saved_target is not None and \
                data_target != saved_target:
            raise ValueError(
                f"--resume {args.resume}: {args.data}'s target column is {data_target!r}, the "
                f"saved run's {saved_target!r}: pass the original data with --data, or "
                f"rename its column as the run's.")
    try:
        return _train_and_report(args, device, client, X, X_train, X_test, y_train, y_test,
                                 names, target, source, resumed=resumed and resumed[0],
                                 digest=digest, columns=columns)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def _split_record(args, source):
    """What ``validate --model`` needs to redo this run's training split from --data."""
    return {"source": source, "target": args.target, "test_size": args.test_size,
            "split_seed": args.seed, "samples": None if args.data else args.samples,
            "drop": list(args.drop or ())}


def _train_and_report(args, device, client, X, X_train, X_test, y_train, y_test, names,
                      target, source, resumed=None, digest=None, columns=None):

    import numpy as np

    from . import MLPRegressor
    from ._sklearn_compat import ConvergenceWarning
    from .estimator import UnscaledDataWarning
    from .io import save
    from .scaling import StandardizedRegressor
    from .training import LossIncreasedWarning, TrainingDivergedError

    # A StandardizedRegressor trains a new network from its template (as its
    # regressor_), unless the template says warm_start, which continues the
    # fitted regressor_ (a resume): `net` is read again once the fit ends.
    if resumed is not None:
        model, net = resumed, getattr(resumed, "regressor_", resumed)
        resumed_params = dict(warm_start=True, max_iter=args.epochs, device=device)
        net.set_params(**resumed_params)
        if model is not net:
            model.regressor.set_params(**resumed_params)
        print(f"resuming {args.resume} after epoch {len(net.loss_curve_)}, for {args.epochs} more")
    else:
        net = MLPRegressor(**_estimator_params(args), random_state=args.seed,
                           device=None if client is not None else device, dtype=args.dtype)
        model = net if args.no_standardize else StandardizedRegressor(net)
    saved_extra = _split_record(args, source)
    if digest is not None:
        saved_extra.update(settings=_resume_settings(args), data_sha256=digest)
    print(f"device: {device}  data: {source}, {X_train.shape[0]} train / "
          f"{0 if X_test is None else X_test.shape[0]} test rows, {X.shape[1]} features, "
          f"target {target!r}  dtype: {args.dtype}")
    progress = _Progress(args.epochs, X_train.shape[0],
                         enabled=not args.quiet and sys.stderr.isatty())
    # With --early-stopping the estimator holds out its validation rows from the
    # training rows; the test rows are then only reported on, never seen in fit.
    # The held-out loss of each epoch costs a forward pass over the test rows:
    # it is computed only when it is shown (the progress bar, --plot).
    shown = progress.bar is not None or bool(args.plot)
    eval_set = (None if X_test is None or client is not None or args.early_stopping
                or not shown else (X_test, y_test))
    extra = {} if client is None else {"client": client}
    saving = {"feature_names": names, "target_names": [target], "columns": columns}
    callback = progress
    if args.out and client is None:
        callback = _Checkpoints(progress, model, args.out, args.checkpoint_every,
                                dict(saving, extra=dict(saved_extra, checkpoint=True)))
    start = time.perf_counter()
    interrupted = failure = None
    terminated = []
    try:
        with warnings.catch_warnings(record=True) as caught, _terminate_as_interrupt(terminated), \
                (net._resuming() if resumed is not None else contextlib.nullcontext()):
            # gpumlp's own warnings are recorded whatever PYTHONWARNINGS or -W
            # say ("ignore" hid a risen loss, which then read as converged;
            # "error" ended the run in a traceback): the report decides from
            # them and prints them in its own words.
            for category in (ConvergenceWarning, LossIncreasedWarning, UnscaledDataWarning):
                warnings.simplefilter("always", category)
            model.fit(X_train, y_train, eval_set=eval_set, callback=callback, **extra)
    except KeyboardInterrupt:
        interrupted = True
    except TrainingDivergedError as exc:
        # Its last weights are those of a diverging run: nothing worth saving.
        # The report is written (a stale one would read as this run's).
        if args.json:
            from ._atomic import write_text_atomic

            progress.close()
            what = str(exc).split(". ")[0].removeprefix("Training ")
            write_text_atomic(args.json, _stopped_report(
                args, device, source, target, names, f"{what}, not converged",
                getattr(callback, "written", None), time.perf_counter() - start))
        raise
    except Exception as exc:
        failure = exc
    finally:
        progress.close()
        net = getattr(model, "regressor_", net)   # the network that trained
    wall = time.perf_counter() - start
    if interrupted or failure is not None:
        # Whatever stopped the run, the epochs it finished are not lost.
        saved = _save_last_epoch(args, callback, model, net, client, saving, saved_extra,
                                 wall, interrupted)
        if args.json:   # a script reads how the run ended, not a missing or stale file
            from ._atomic import write_text_atomic

            if interrupted:
                import signal

                signal_name = signal.Signals(terminated[0]).name if terminated else "SIGINT"
                state = f"interrupted ({signal_name}), not converged"
            else:
                state = f"stopped by an error ({type(failure).__name__}), not converged"
            write_text_atomic(args.json, _stopped_report(args, device, source, target, names,
                                                         state, saved, wall))
        if failure is not None:
            raise failure
        return 128 + terminated[0] if terminated else 130
    unconverged = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    # A loss that rose is no convergence, whatever stopped the run.
    rose = any(issubclass(w.category, LossIncreasedWarning) for w in caught)
    converged = not unconverged and not rose
    # Saved before anything more is printed: a reader that closes stdout early
    # (gpumlp train ... | head -1) costs the report, never the model or the plot.
    if args.out:
        save(model, args.out, **saving, extra=saved_extra)
    if args.plot:
        from .plotting import plot_loss

        plot_loss(net.loss_curve_, net.validation_loss_curve_, args.plot)
    results = {}

    def measure(name, X_part, y_part):
        y_pred = model.predict(X_part)
        if client is not None:  # dask: two numbers computed on the workers
            import dask

            mse, variance, high, low = (float(v) for v in dask.compute(
                ((y_part - y_pred) ** 2).mean(), y_part.var(), y_part.max(), y_part.min()))
            if high > low:
                r2 = 1.0 - mse / variance if variance > 0 else float("nan")
            else:   # a constant target, known by its values (as gpumlp.metrics.r2_score)
                r2 = 1.0 if mse == 0 else 0.0
        else:
            from .metrics import r2_score

            y_pred = np.asarray(y_pred, dtype=np.float64)
            # R² is scale-free: computed in units of the largest |y|, it stays
            # finite however large the target (the MSE itself may not).
            unit = float(np.max(np.abs(y_part))) or 1.0
            r2 = float(r2_score(y_part / unit, y_pred / unit))
            with np.errstate(over="ignore"):
                mse = float(np.mean((y_part - y_pred) ** 2))
        results[name] = {"mse": mse, "r2": r2, "rows": int(X_part.shape[0])}

    measure("train", X_train, y_train)
    if X_test is not None:
        measure("test", X_test, y_test)
    state = _stop_state(net, converged, unconverged, rose)
    if args.json:   # like the model: written before the report is printed
        from ._atomic import write_text_atomic

        write_text_atomic(args.json, _train_report(args, net, device, source, target, names,
                                                   state, converged, results, wall))
    # The fit's own warnings were caught to read how it stopped; the user sees
    # them (a loss that rose, unscaled data), the epochs' budget being in state.
    for caught_warning in caught:
        if not issubclass(caught_warning.category, ConvergenceWarning):
            print(f"gpumlp train: warning: {caught_warning.message}", file=sys.stderr)
    # The run's epochs in all (a resumed run counts those before it too).
    print(f"epochs: {len(net.loss_curve_)} ({state})  final loss: {net.loss_:.6g}")
    print(f"learning rate: {_describe_rate(net)}")
    if args.early_stopping and net.solver == "lbfgs":
        # Scored only: the model keeps L-BFGS's last weights, not the best ones.
        print(f"validation R^2 {net.validation_scores_[-1]:.4f} (the last iteration's) on "
              f"{args.validation_fraction:g} of the training rows, held out and scored "
              f"only: L-BFGS does not stop early")
    elif args.early_stopping:
        print(f"early stopping: best validation R^2 {net.best_validation_score_:.4f} on "
              f"{args.validation_fraction:g} of the training rows")
    for name, figures in results.items():
        print(f"{name:5s} MSE {figures['mse']:12.6g}   R^2 {figures['r2']:8.4f}")
    print(f"wall time: {wall:.2f} s")
    if args.out:
        print(f"saved model to {args.out}")
    if args.json:
        print(f"wrote {args.json}")
    if args.plot:
        print(f"wrote loss plot to {args.plot}")
    return 0


def _save_last_epoch(args, callback, model, net, client, saving, saved_extra, wall,
                     interrupted):
    """After Ctrl-C or a failure mid-training: save the last whole epoch to ``--out``.

    The count printed is that of the epochs saved (an interrupt inside the
    epoch's callback leaves the trainer one epoch ahead of the last snapshot).
    Returns the network saved, or None when nothing was.
    """
    import numpy as np

    from .io import save

    last, exact = getattr(callback, "last", None), True
    if last is None and client is not None and getattr(net, "n_iter_", 0) > 0:
        # On Dask the solver state is not that of the last whole epoch: leave it out.
        last, exact = model, False
    what = "interrupted" if interrupted else "stopped by an error"
    if last is None or not args.out:
        if not interrupted and last is None:
            return None  # an error before an epoch ended: its own message says all
        epochs = len(getattr(net, "loss_curve_", ()))  # none, if stopped before one ended
        nothing = "no --out" if not args.out else "no epoch of this run was complete"
        print(f"gpumlp train: {what} after {epochs} epochs ({wall:.2f} s); nothing "
              f"saved ({nothing})", file=sys.stderr)
        return None
    last_net = getattr(last, "regressor_", last)
    epochs = len(last_net.loss_curve_)
    if not all(np.all(np.isfinite(np.asarray(W))) for W in last_net.coefs_):
        print(f"gpumlp train: {what} after {epochs} epochs ({wall:.2f} s); nothing saved "
              f"(the weights are not finite)", file=sys.stderr)
        return None
    print(f"gpumlp train: {what} after {epochs} complete epochs ({wall:.2f} s)",
          file=sys.stderr)
    try:
        save(last, args.out, **saving, extra=dict(saved_extra, interrupted=True),
             training_state=exact)
    except (OSError, ValueError) as exc:
        print(f"gpumlp train: could not save the last complete epoch's model: {exc}",
              file=sys.stderr)
        return None
    print(f"gpumlp train: saved the last complete epoch's model to {args.out} (epoch "
          f"{epochs})", file=sys.stderr)
    return last_net


# ------------------------------------------------------ checkpoints and resume
#: The ``train`` settings a run saves and ``--resume`` restores (with the
#: model's own parameters): all that decides the data, the split and the network.
_RESUME_SETTINGS = ("data", "target", "drop", "samples", "seed", "test_size", "no_standardize",
                    "hidden", "activation", "alpha", "loss", "solver", "lr", "batch_size",
                    "momentum", "nesterov", "beta1", "beta2", "epsilon", "learning_rate",
                    "power_t", "max_fun", "tol",
                    "n_iter_no_change", "early_stopping", "validation_fraction", "dtype")


def _add_resume_options(p):
    group = p.add_argument_group(
        "checkpoints and resume",
        "A model saved by --out or --checkpoint-every holds what an exact resume needs: "
        "the solver's state, the random state, the settings and a digest of the data.")
    group.add_argument("--resume", metavar="MODEL.npz",
                       help="continue the run saved in this file for --epochs more epochs, "
                            "with its data (checked by digest), split, scalers, settings, "
                            "solver state and random state; write the result to --out, "
                            "by default back to this file. Training options other than "
                            "--epochs, --device and --data (the same data elsewhere) "
                            "cannot change")
    group.add_argument("--checkpoint-every", type=_bounded(int, 1), metavar="N",
                       help="also write the model to --out every N epochs (atomically), "
                            "so a killed run can be resumed from there with --resume")


def _resume_settings(args):
    settings = {key: getattr(args, key) for key in _RESUME_SETTINGS}
    if settings["data"] is not None:
        settings["data"] = os.path.abspath(settings["data"])
    return settings


def _settings_argv(settings):
    """The ``train`` arguments that give ``settings`` (so that argparse checks them)."""
    argv = ["train"]
    for key in _RESUME_SETTINGS:
        value = settings.get(key)
        option = "--" + key.replace("_", "-")
        if value is False and key == "nesterov":   # an on/off option, on by default
            argv.append("--no-nesterov")
            continue
        if value is None or value is False:
            continue
        if value is True:
            argv.append(option)
        elif key in ("hidden", "drop"):
            argv += [option, ",".join(str(v) for v in value)]
        else:
            argv += [option, repr(value) if isinstance(value, float) else str(value)]
    return argv


def _resume(args):
    """Load ``--resume``'s model and put the saved run's settings into ``args``.

    Returns ``(model, metadata["extra"], (feature names, target name))``
    (the names None where the file has none). An option given with another
    value than the saved run's (and than its default) is an error: a resumed
    run continues with its own settings. Without ``--out``, the result goes
    back to the ``--resume`` file (written atomically).
    """
    from ._settings import settings_disagreements
    from .scaling import StandardizedRegressor

    if args.cluster or args.scheduler or _uses_dask(args):
        raise ValueError("--resume works for data read into memory, not for training on "
                         "Dask (--cluster, --scheduler or a dataset folder).")
    model, metadata = _load_model("--resume", args.resume)
    extra = metadata.get("extra", {})
    settings = extra.get("settings")
    if metadata.get("params", {}).get("solver") == "lbfgs":
        raise ValueError(f"--resume {args.resume}: an lbfgs run cannot be resumed exactly "
                         f"(like scikit-learn's, each fit starts a new L-BFGS memory); "
                         f"train again with more --epochs.")
    if settings is None and "source" in extra and extra.get("data_sha256") is None:
        # gpumlp train saves its settings and data digest for data read into memory.
        raise ValueError(f"--resume {args.resume}: this run trained on Dask (data "
                         f"{extra['source']}), and --resume continues runs on data read "
                         f"into memory only (docs/reliability.md); train again, with more "
                         f"--epochs.")
    if "training" not in metadata or not isinstance(settings, dict) or not isinstance(
            extra.get("data_sha256"), str):
        raise ValueError(f"--resume {args.resume}: this model file holds no run to resume "
                         f"(no training state or no settings); resume a file written by "
                         f"gpumlp train --out or --checkpoint-every.")
    parser = build_parser()
    try:
        saved = vars(parser.parse_args(_settings_argv(settings)))
    except SystemExit:
        raise ValueError(f"--resume {args.resume}: the saved settings are invalid "
                         f"({settings!r:.200})") from None
    given_options = getattr(args, "given", None)
    if given_options is None:  # parsed by build_parser() alone: tell by the defaults
        defaults = vars(parser.parse_args(["train"]))
        given_options = {key for key in _RESUME_SETTINGS if getattr(args, key) != defaults[key]}
    saved_run = argparse.Namespace(**saved)
    for key in _RESUME_SETTINGS:
        if key in given_options and key != "data":  # other data: compared by digest
            # Both meant for the saved run (its solver: another --solver is refused).
            given = _effective(key, getattr(args, key), saved_run)
            kept = _effective(key, saved[key], saved_run, metadata)
            if given != kept:
                option = "--" + key.replace("_", "-")
                raise ValueError(f"{option} {_show(getattr(args, key))} differs from the "
                                 f"resumed run's {_show(kept)}; --resume continues a run "
                                 f"with its own settings (leave {option} out).")
        if key != "data" or args.data is None:
            setattr(args, key, saved[key])
    if isinstance(model, StandardizedRegressor) == args.no_standardize:
        raise ValueError(f"--resume {args.resume}: its settings disagree with its model "
                         f"on standardisation; the file was tampered with.")
    # The run continues with the model's own parameters and its report shows the
    # settings: a file whose settings claim others is refused, never reported as such.
    wrong = settings_disagreements(settings, model, extra)
    if wrong:
        raise ValueError(f"--resume {args.resume}: its saved settings disagree with its "
                         f"model ({'; '.join(wrong)}); the file was tampered with. Resume "
                         f"an untouched file, or train again.")
    if args.out is None:
        args.out = args.resume
    target_names = metadata.get("target_names") or [None]
    return model, extra, (metadata.get("feature_names"), target_names[0],
                          metadata.get("columns"))


def _show(value):
    """A setting as it is typed on the command line (an on/off option as on or off)."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "on" if value else "off"
    return "(the default)" if value is None else value


def _effective(key, value, args, metadata=None):
    """What setting ``key`` means for a run: a default that depends on others resolved.

    ``--lr`` left out means ``auto`` for every solver (issue 21: the estimator's
    rate; before, 0.1 for sgd and adam), which for sgd and adam is the fixed
    rate 0.01 (so ``--lr 0.01`` means the same there), ``--target`` left out
    the last column, whose name the model file keeps, and ``--activation
    logistic`` the sigmoid (scikit-learn's name for it).
    """
    from .activations import ALIASES
    from .estimator import _AUTO_RATE

    if key == "lr":
        value = "auto" if value is None else value
        if value == "auto" and getattr(args, "solver", None) in ("sgd", "adam"):
            return _AUTO_RATE
        return value
    if key == "activation":
        return ALIASES.get(value, value)
    if key == "target" and value is None and metadata is not None:
        return (metadata.get("target_names") or [None])[0]
    return value


def _load_model(option, path):
    """``load_with_metadata(path)``, a missing file named with the option that gave it."""
    from .io import load_with_metadata

    try:
        return load_with_metadata(path)
    except FileNotFoundError:
        raise ValueError(f"{option} {path}: no such model file; check the path.") from None


@contextlib.contextmanager
def _terminate_as_interrupt(received):
    """While training, SIGTERM (``kill``, a scheduler's time limit) and SIGHUP stop as Ctrl-C does.

    The last complete epoch is then saved, where Python's default would end
    the process at once and lose every epoch of the run. The signal's number
    is appended to ``received``; the exit status is 128 + it, as a shell
    reports a process that the signal ended.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield   # only the main thread may set a handler (a test's thread, say)
        return

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    # SIGHUP: the terminal closed, an ssh session dropped (where the platform has it).
    caught = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    before = {number: signal.signal(number, stop) for number in caught}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def _check_unused_options(args):
    """Refuse an option given for a solver or setting that this run does not use.

    The estimator ignores such parameters, as scikit-learn's does; on the
    command line an option typed and silently dropped (``--beta1`` with
    ``--solver sgd``) is a setting the user believes in and does not get.
    """
    given = getattr(args, "given", set())
    fixed_rate = args.lr not in (None, "auto")
    schedules = args.solver == "sgd" or (args.solver == "gd" and fixed_rate)
    users = {
        "momentum": (args.solver == "sgd", "--solver sgd"),
        # Nesterov's look-ahead moves along the velocity: none without momentum.
        "nesterov": (args.solver == "sgd" and args.momentum > 0,
                     "--solver sgd and a --momentum above 0"),
        "beta1": (args.solver == "adam", "--solver adam"),
        "beta2": (args.solver == "adam", "--solver adam"),
        "epsilon": (args.solver == "adam", "--solver adam"),
        "batch_size": (args.solver in ("sgd", "adam"), "--solver sgd or adam"),
        "max_fun": (args.solver == "lbfgs", "--solver lbfgs"),
        "lr": (args.solver != "lbfgs", "--solver gd, sgd or adam"),
        "learning_rate": (schedules, "--solver sgd, or gd with a fixed --lr"),
        "power_t": (schedules and args.learning_rate == "invscaling",
                    "--learning-rate invscaling (with sgd, or gd at a fixed --lr)"),
        "validation_fraction": (args.early_stopping, "--early-stopping"),
        # L-BFGS stops on its own tests: the stopping rule's patience is unused.
        "n_iter_no_change": (args.solver != "lbfgs", "--solver gd, sgd or adam"),
    }
    for dest, (used, needs) in users.items():
        if dest in given and not used:
            flag = "--" + dest.replace("_", "-")
            flag = "--nesterov/--no-nesterov" if flag == "--nesterov" else flag
            raise ValueError(f"{flag} has no effect on this run: it applies only with "
                             f"{needs}. Leave it out, or change the run.")


def _check_checkpoint_options(args):
    if args.checkpoint_every is None:
        return
    if not args.out:
        raise ValueError("--checkpoint-every needs --out (or --resume): the file to write.")
    if _uses_dask(args):
        raise ValueError("--checkpoint-every works for data read into memory, not for "
                         "training on Dask.")
    if args.solver == "lbfgs":
        raise ValueError("--checkpoint-every has no use with --solver lbfgs: its checkpoints "
                         "are for --resume, which cannot continue an lbfgs run exactly (each "
                         "fit starts a new L-BFGS memory). Leave it out: --out saves the "
                         "model when the run ends or is interrupted.")


def _check_resumed_data(args, extra, digest):
    if digest != extra["data_sha256"]:
        where = args.data or f"the embedded dataset (--samples {args.samples}, --seed {args.seed})"
        raise ValueError(f"--resume {args.resume}: {where} is not the data the saved run "
                         f"trained on (their digests differ); pass the original data with "
                         f"--data.")


class _Checkpoints:
    """The fit callback when there is an ``--out``: a snapshot of each whole epoch.

    The last snapshot is what Ctrl-C saves, so that an interrupted run
    resumes exactly; every ``every`` epochs it is also written to ``out``
    (atomically, by :func:`gpumlp.save`). A snapshot holds references to the
    trainer's arrays; nothing is copied off the device until it is saved.
    """

    def __init__(self, progress, model, out, every, saving):
        self.progress, self.model = progress, model
        self.out, self.every, self.saving = out, every, saving
        self.last = self.written = None

    def snapshot(self):
        from .scaling import StandardizedRegressor

        if not isinstance(self.model, StandardizedRegressor):
            return self.model._snapshot()
        # The network in training: the regressor_ this fit trains (not the template).
        net = self.model.regressor_._snapshot()
        model = StandardizedRegressor(self.model.regressor)
        model.regressor_ = net
        for name in ("x_mean_", "x_scale_", "y_mean_", "y_scale_"):
            setattr(model, name, getattr(self.model, name))
        return model

    def __call__(self, epoch, loss, validation_loss):
        from .io import save

        self.progress(epoch, loss, validation_loss)
        self.last = self.snapshot()
        if self.every and epoch % self.every == 0:
            save(self.last, self.out, **self.saving)
            self.written = getattr(self.last, "regressor_", self.last)


def _estimator_params(args):
    """The estimator's parameters from the ``train`` options, under scikit-learn's names."""
    rate = args.lr if args.lr is not None else "auto"
    return dict(
        hidden_layer_sizes=args.hidden, activation=args.activation, alpha=args.alpha,
        solver=args.solver, learning_rate_init=rate, batch_size=args.batch_size or "auto",
        momentum=args.momentum, nesterovs_momentum=args.nesterov, beta_1=args.beta1,
        beta_2=args.beta2, epsilon=args.epsilon, max_iter=args.epochs, tol=args.tol,
        n_iter_no_change=args.n_iter_no_change, early_stopping=args.early_stopping,
        validation_fraction=args.validation_fraction, loss=args.loss,
        learning_rate=args.learning_rate, power_t=args.power_t, max_fun=args.max_fun,
    )


def _stop_state(net, converged, warned=(), rose=False):
    """How training ended, in words: only a fit the rule stopped is called converged.

    ``warned``: the run's ConvergenceWarning messages. L-BFGS may stop
    unconverged before --epochs (--max-fun, a failed line search); its
    warning says why, in the words ``_solver_stopped`` gives it. ``rose``:
    the training loss ended above where it began (a LossIncreasedWarning),
    which the stopping rule may have met all the same.
    """
    if not converged:
        if net.n_iter_ >= net.max_iter:
            how = "stopped at --epochs"
        elif warned:
            reasons = [re.search(r"iteration\(s\): (.*?)\. Raise", text) for text in warned]
            why = next((found.group(1) for found in reasons if found), "see the warning")
            how = f"stopped before --epochs ({why})"
        else:
            how = "stopped: no improvement"
        return how + (", the training loss rose" if rose else "") + ", not converged"
    if net.early_stopping and net.solver != "lbfgs":   # L-BFGS stops on its own tests
        return "stopped early: the validation R^2 no longer improved"
    return "converged"


def _report_head(args, device, source, target, names):
    """What every ``train --json`` report starts with: the data and the settings."""
    return {
        "command": "train",
        "data": str(source), "target": target, "features": list(names),
        "device": str(device), "dtype": args.dtype,
        "settings": {key: (list(value) if isinstance(value, tuple) else value)
                     for key, value in _estimator_params(args).items()},
        "standardize": not args.no_standardize,
    }


def _train_report(args, net, device, source, target, names, state, converged, results, wall):
    """``train --json``'s report: the run's settings and outcome, as JSON text."""
    import json

    report = {
        **_report_head(args, device, source, target, names),
        "epochs": len(net.loss_curve_), "stopped": state, "converged": converged and
        not (net.early_stopping and net.solver != "lbfgs"), "final_loss": net.loss_,
        "learning_rate": None if net.solver == "lbfgs" else net.learning_rate_,
        "best_validation_r2": net.best_validation_score_,
        "train": results.get("train"), "test": results.get("test"),
        "wall_seconds": wall, "model": args.out,
    }
    return json.dumps(_plain_json(report), indent=2, allow_nan=False) + "\n"


def _stopped_report(args, device, source, target, names, state, saved, wall):
    """``train --json``'s report of a run that Ctrl-C, SIGTERM or an error stopped.

    ``saved``: the network of the last complete epoch written to ``--out``
    (or of the last checkpoint, for a run that diverged), or None when
    nothing was saved (then ``model`` is null). No test or
    train figures: the run did not get as far as measuring them.
    """
    import json

    report = {
        **_report_head(args, device, source, target, names),
        "epochs": None if saved is None else len(saved.loss_curve_), "stopped": state,
        "converged": False, "final_loss": None if saved is None else saved.loss_,
        "train": None, "test": None, "wall_seconds": wall,
        "model": None if saved is None else args.out,
    }
    return json.dumps(_plain_json(report), indent=2, allow_nan=False) + "\n"


def _plain_json(value):
    """``value`` with NumPy numbers as Python ones and NaN or infinity as null (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return number if math.isfinite(number) else None


def _describe_rate(net):
    """The step size for the report: fixed, or auto with its first and last value."""
    if net.solver == "lbfgs":
        return "none (lbfgs takes its steps by a line search)"
    if net.learning_rate_init != "auto" or net.solver != "gd" or not net.learning_rates_:
        return f"{net.learning_rate_:g}"
    return (f"auto, {net.learning_rates_[0]:.4g} at the start (1.9 / the largest "
            f"curvature), {net.learning_rate_:.4g} at the end")


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
                   help="write predictions here (.csv or .npy); - or none: print them as "
                        "CSV")
    p.add_argument("--device", default=None,
                   help="auto, cpu, cuda or cuda:N (default: $GPUMLP_DEVICE or auto)")
    p.add_argument("--backend", default=None, choices=_BACKEND_CHOICES, help=_BACKEND_HELP)
    p.set_defaults(run=_run_predict)


def _run_predict(args):
    import numpy as np

    from .data import read_features, write_predictions, write_predictions_csv

    _check_outputs([("--model", args.model), *_data_files("--data", args.data)],
                   [("--out", args.out)],
                   to_stdout={"--out"})
    model, metadata = _load_model("--model", args.model)
    net = getattr(model, "regressor_", model)
    if args.device is not None or args.backend is not None:
        net.set_params(device=args.device, backend=args.backend)
    # A model fitted on a dataframe and saved from Python keeps the frame's
    # column names (feature_names_in); a CSV's columns are matched to them.
    seen = metadata.get("feature_names_in") or []
    names = (metadata.get("feature_names")
             or (seen if len(set(seen)) == len(seen) else None)
             or [f"x{j}" for j in range(metadata["layer_sizes"][0])])
    targets = metadata.get("target_names") or ["prediction"]
    columns = metadata.get("columns")
    X = read_features(args.data, names, targets[0], columns=None if columns is None else [
        (column["name"], column["levels"]) for column in columns])
    with warnings.catch_warnings():
        # The columns were picked by name above; the array has none left.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        y_pred = np.asarray(model.predict(X))
    if args.out and args.out != STDOUT:
        write_predictions(args.out, y_pred, targets)
        print(f"wrote {y_pred.shape[0]} predictions to {args.out}")
    elif getattr(sys.stdout, "absent", False):
        raise OSError("stdout is closed, so the predictions cannot be printed; write them "
                      "to a file with --out PREDS.csv.")
    else:
        write_predictions_csv(sys.stdout, y_pred, targets)
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


def _add_calibrate(sub):
    p = sub.add_parser(
        "calibrate", help="measure where the C blocks beat NumPy on this CPU, and keep it",
        description="Time full-batch epochs by the C blocks and by the NumPy fast path at "
                    "a ladder of sizes on this CPU, and store the largest epoch work "
                    "(n * h * (f + k)) up to which the C blocks won in the per-user "
                    "calibration file, which every later fit on this CPU reads "
                    "(GPUMLP_CBLOCKS_MAX_WORK overrides it). Run it on a quiet machine; "
                    "it takes up to a minute.")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per size")
    p.add_argument("--dry-run", action="store_true", help="measure and print, store nothing")
    p.set_defaults(run=_run_calibrate)


def _run_calibrate(args):
    from .fastpath import cblocks

    if args.rounds < 1:
        raise ValueError(f"--rounds {args.rounds}: give at least 1.")

    def report(row):
        print(f"  {str((row['n'], row['f'], row['h'])):18s} work {row['work']:>12,d}  "
              f"C {row['c_ms']:9.3f} ms  NumPy {row['numpy_ms']:9.3f} ms  "
              f"C / NumPy {row['ratio']:.2f}", flush=True)

    print("per epoch, float32, best of the interleaved rounds:")
    result = cblocks.calibrate(rounds=args.rounds, write=not args.dry_run, report=report)
    key = result["key"]
    if result["load"] is not None and result["load"] > key["cores"] / 2:
        print(f"note: the machine was busy (load average {result['load']:.1f} on "
              f"{key['cores']} cores), which moves these times; calibrate again when it "
              f"is quiet.")
    print(f"this CPU: {key['cpu']}, {key['cores']} cores, C blocks {key['isa']}, "
          f"BLAS {key['blas']}")
    print(f"the C blocks take epochs up to a work of {result['max_work']:,d} "
          f"(the default: {result['default']:,d})")
    print(f"stored in {result['path']}" if result["path"] else "stored nothing (--dry-run)")
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
                   help="certify one fit instead: check its start, its data and every "
                        "claim in the file, and replay each segment between its checkpoints "
                        "on every backend and dtype; needs --data. Exits 0 PASS, 1 FAIL, "
                        "2 cannot certify (something needed is missing)")
    p.add_argument("--data", metavar="FILE", default=None,
                   help="with --model: the data it was trained on (for a model from "
                        "'gpumlp train', the same --data: its split is redone; omit it for "
                        "the embedded dataset)")
    p.add_argument("--parent", metavar="MODEL.npz", action="append", default=None,
                   help="with --model: a model the fit continued (a warm start, --resume), "
                        "certified in turn; repeat it for a longer chain")
    p.set_defaults(run=_run_validate)


def _run_validate(args):
    from . import agreement
    from ._atomic import write_text_atomic

    def names(text):   # each once, in order: a name twice would run its checks twice
        return None if text is None else list(dict.fromkeys(
            t.strip() for t in text.split(",") if t.strip()))

    if args.backends is not None and not names(args.backends):
        raise ValueError("--backends names no backend: pass one or more of "
                         "numpy, cupy, torch, jax (or leave it out for the default).")
    parents = [("--parent", path) for path in args.parent or ()]
    _check_outputs([("--model", args.model), *_data_files("--data", args.data), *parents],
                   [("--json", args.json)])
    if args.model is not None:
        if args.configs is not None:
            raise ValueError("--configs chooses the agreement suite's training runs; with "
                             "--model the fit to certify is the file's own. Leave it out.")
        return _run_certificate(args, names)
    if args.data is not None:
        raise ValueError("--data goes with --model (the fit to certify).")
    if args.parent:
        raise ValueError("--parent goes with --model (the fit whose chain it is part of).")
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
    if not dtypes:
        raise ValueError("--dtypes names no dtype: pass float32 and/or float64.")
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"--dtypes takes float32 and/or float64, got {dtype!r}")
    configs = names(args.configs)
    if configs is not None and not configs:   # an empty list would run no training check
        raise ValueError(f"--configs names no training run: pass one or more of "
                         f"{', '.join(agreement.TRAINING_CONFIGS)} (or leave it out for all).")
    for config in configs or ():
        if config not in agreement.TRAINING_CONFIGS:
            raise ValueError(f"unknown --configs entry {config!r}; choose from "
                             f"{', '.join(agreement.TRAINING_CONFIGS)}")
    results = agreement.validate(backends, dtypes, configs)
    if args.json:  # written before anything is printed: a closed stdout cannot lose it
        write_text_atomic(args.json, agreement.to_json(results))
    print(agreement.format_table(results))
    if args.json:
        print(f"wrote {args.json}")
    return 0 if all(r.passed for r in results) else 1


def _run_certificate(args, names):
    from ._atomic import write_text_atomic
    from .certificate import NotReplayableError, certify, format_certificate
    from .io import read_metadata

    metadata = read_metadata(args.model)
    extra = metadata.get("extra") or {}
    header = None
    if args.data is None and isinstance(extra.get("samples"), int):
        from .datasets import make_friedman1

        X, y = make_friedman1(extra["samples"], random_state=extra.get("split_seed", 0))
    elif args.data is None:
        raise ValueError("--model needs --data, the file the model was trained on.")
    else:
        from .data import read_training_table

        drop = extra.get("drop", [])   # absent from files written before --drop
        if not (isinstance(drop, list) and all(isinstance(n, str) for n in drop)):
            raise ValueError(f"{args.model}: its record of dropped columns is damaged "
                             f"({drop!r:.80}).")
        table = read_training_table(args.data, extra.get("target"), drop)
        X, y = table.X, table.y
        if os.path.splitext(args.data)[1].lower() == ".csv":
            # Only a CSV has a header: an .npy's or .npz's names (x0, x1, ...) are
            # made up, with nothing to compare (the certificate's notes say so).
            header = (table.feature_names, [table.target])
            # A model fit in Python on a frame names its columns: its CSV is read
            # by those names, in the model's order, as predict reads it.
            names_in = metadata.get("feature_names_in") or metadata.get("feature_names")
            if names_in and list(table.feature_names) != list(names_in) and \
                    sorted(table.feature_names) == sorted(names_in):
                X = X[:, [list(table.feature_names).index(n) for n in names_in]]
                header = (list(names_in), [table.target])
    eval_set, whole = None, (X, y)   # the data as train read it: its digest is in the file
    if "test_size" in extra:  # a model from `gpumlp train`: redo its split
        from .splitting import train_test_split

        if extra["test_size"] > 0:
            X, X_test, y, y_test = train_test_split(X, y, extra["test_size"],
                                                    extra["split_seed"])
            eval_set = (X_test, y_test)   # given to the fit when it showed a held-out loss
    dtypes = names(args.dtypes)
    if not dtypes:
        raise ValueError("--dtypes names no dtype: pass float32 and/or float64 (a "
                         "certificate that replays nothing would certify nothing).")
    for dtype in dtypes:
        if dtype not in ("float32", "float64"):
            raise ValueError(f"--dtypes takes float32 and/or float64, got {dtype!r}")
    record = metadata.get("fit_record") or {}
    try:
        cert = certify(args.model, X, y, backends=names(args.backends), dtypes=tuple(dtypes),
                       eval_set=eval_set if record.get("eval_set") else None,
                       parents=tuple(args.parent or ()), whole_data=whole,
                       feature_names=header and header[0], target_names=header and header[1])
    except NotReplayableError as exc:
        print(f"gpumlp validate: cannot certify: {exc}", file=sys.stderr)
        return 2
    if args.json:  # written before anything is printed: a closed stdout cannot lose it
        write_text_atomic(args.json, cert.to_json())
    print(format_certificate(cert))
    if args.json:
        print(f"wrote {args.json}")
    # PASS 0, FAIL 1, cannot certify (something missing) 2.
    return cert.exit_code


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
    _add_calibrate(sub)
    return parser


def _given_options(argv):
    """The destinations of the options that ``argv`` gives explicitly.

    Parsed again with every default suppressed, so that an option given with
    its default value (``--hidden 32``) counts as given, unlike a comparison
    with the default would.
    """
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                for option in subparser._actions:
                    option.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command", "run"}


#: The exit status of a command whose stdout was closed by its reader, as a
#: shell reports a tool that SIGPIPE ended (128 + 13).
_EXIT_BROKEN_PIPE = 141


class _GuardedStdout:
    """stdout that survives its reader going away (``gpumlp train ... | head -1``).

    The first write or flush that meets a closed pipe points file
    descriptor 1 at the null device and drops the rest of the output, so the
    command goes on (a training is finished and saved) and ends quietly,
    as other command-line tools do; :attr:`broken` then says so. A stdout
    that was closed before the start (``gpumlp ... >&-``: Python's
    ``sys.stdout`` is then None) drops the output the same way, so that the
    run still ends and saves its files.
    """

    def __init__(self, stream):
        self.stream, self.broken = stream, False
        self.absent = stream is None

    def _closed(self):
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # no file descriptor (a test's capture)
            pass

    def write(self, text):
        if self.broken or self.absent:
            return len(text)
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self):
        if self.broken or self.absent:
            return
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name):
        return getattr(self.stream, name)


def main(argv=None):
    """Run the command line; returns the exit status."""
    from .devices import BackendUnavailableError
    from .training import TrainingDivergedError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.given = _given_options(argv)
    stdout = sys.stdout = _GuardedStdout(sys.stdout)
    try:
        status = args.run(args)
    except TrainingDivergedError as exc:
        print(f"gpumlp {args.command}: error: {exc}", file=sys.stderr)
        status = 1
    except (ValueError, TypeError, BackendUnavailableError, OSError, MemoryError) as exc:
        print(f"gpumlp {args.command}: error: {exc}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print(f"gpumlp {args.command}: interrupted", file=sys.stderr)
        status = 130
    finally:
        stdout.flush()
        sys.stdout = stdout.stream
    return _EXIT_BROKEN_PIPE if stdout.broken and status == 0 else status

