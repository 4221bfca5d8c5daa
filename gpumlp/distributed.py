"""Training on Dask: data-parallel gradient descent over row chunks.

Dask is one more batch source (:mod:`gpumlp.sources`): :class:`ChunkSource`
holds the row chunks of X and y on the workers, and the ordinary trainer
drives the steps. Each chunk stays on the worker that holds it and goes
through the same code as in-process training (the backend's fast path where
:func:`gpumlp.fastpath.select` offers one, else the generic array-API
kernels), in the chunk's own namespace (NumPy, or CuPy on GPU workers). A
chunk returns its *share* of the batch's gradient
(``kernels.backward(..., n_total=rows in the batch)``) and its sum of losses
(squared errors, or Poisson half-deviances); Dask adds those up as a tree,
and the driver applies the L2 penalty and the solver's update (the same
solvers as in-process) to the small host-side weights, which are sent to
the workers each step. ``sample_weight`` comes as a dask array chunked like
the rows; each chunk's weights travel with it, and the rows' counts above
become sums of weights (their per-chunk sums are computed once, up front).

Full-batch gradient descent therefore takes the same steps as in-process
training, up to the summation order. Minibatches are whole chunks: an epoch
visits every chunk once, in an order drawn from the estimator's seed, and
groups consecutive chunks until a batch holds at least ``batch_size`` rows;
each batch's gradient is divided by the rows it actually holds. A validation
source (``eval_set``, or ``early_stopping``'s split, which holds out whole
chunks) is evaluated on the workers the same way.

This module keeps what is Dask's own: the chunk source, connecting to a
cluster, and the readers. Dask is optional (the ``dask`` extra); this module
imports it only when a dask array reaches the estimator or a reader below is
called.
"""

from __future__ import annotations

import glob
import math
import os

import numpy as np

from . import fastpath, kernels
from ._checks import check_n_features
from .devices import device_of, to_numpy

__all__ = ["ChunkSource", "connect", "predict", "read_dataset", "split_by_chunks",
           "to_cupy_blocks"]


def _require_dask():
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError(
            "Training on dask arrays needs Dask: pip install 'gpumlp[dask]'"
        ) from None


# ------------------------------------------------------------ worker side
def _on_worker(X, y, w, params, dtype):
    """A chunk in the training dtype, ``y`` 2-D, and the weights where the chunk lives."""
    from array_api_compat import array_namespace

    place = device_of(X)
    xp = array_namespace(X)
    X = xp.astype(X, getattr(xp, dtype))
    y = xp.astype(y, getattr(xp, dtype))
    if y.ndim == 1:
        y = xp.reshape(y, (-1, 1))
    if w is not None:
        w = xp.astype(place.asarray(w), getattr(xp, dtype))
    params = params if place.is_numpy else [place.asarray(p) for p in params]
    return xp, X, y, w, params


def _chunk_sums(X, y, w, params, n_coefs, activation, n_total, dtype, use_fastpath,
                loss_kind="squared_error"):
    """On a worker: the chunk's sum of losses and its share of the gradient."""
    xp, X, y, w, params = _on_worker(X, y, w, params, dtype)
    coefs, intercepts = params[:n_coefs], params[n_coefs:]
    # Never the opt-in CUDA tile kernels: chunks are for data larger than they serve.
    fast = fastpath.select(X, n_coefs, activation, enabled=use_fastpath, cuda_graph=False,
                           loss_kind=loss_kind, weighted=w is not None)
    if fast is not None:
        loss, coef_grads, intercept_grads = fast(X, y, coefs, intercepts, n_total=n_total)
    else:
        loss, coef_grads, intercept_grads = kernels.loss_and_grads(
            X, y, coefs, intercepts, activation, n_total=n_total, sample_weight=w,
            loss_kind=loss_kind)
    total = float(y.shape[0]) if w is None else xp.sum(w)
    summed = loss * total * float(y.shape[1])
    return [to_numpy(summed), *(to_numpy(g) for g in coef_grads + intercept_grads)]


def _chunk_eval(X, y, w, params, n_coefs, activation, dtype, loss_kind="squared_error"):
    """On a worker, weighted: per output the squared errors and the sums of y and y**2;
    the sum of losses; the sum of weights."""
    from .losses import get_loss

    xp, X, y, w, params = _on_worker(X, y, w, params, dtype)
    loss = get_loss(loss_kind)
    y_pred = kernels.predict(X, params[:n_coefs], params[n_coefs:], activation,
                             loss.out_activation)
    diff = y_pred - y
    ww = xp.ones((y.shape[0], 1), dtype=y.dtype) if w is None else xp.reshape(w, (-1, 1))
    sums = [xp.sum(ww * diff * diff, axis=0), xp.sum(ww * y, axis=0),
            xp.sum(ww * y * y, axis=0), xp.sum(ww * loss.pointwise(y, y_pred)),
            xp.sum(ww)]
    return [to_numpy(v) for v in sums]


def _add(a, b):
    return [x + y for x, y in zip(a, b)]


def _identity(x):
    return x


def _finite_and_rows(X, y, w=None):
    """On a worker: X finite, y finite, rows, y >= 0, weights finite and >= 0, their sum."""
    from array_api_compat import array_namespace

    xp = array_namespace(X)
    ok = bool(xp.all(xp.isfinite(X))) if xp.isdtype(X.dtype, "real floating") else True
    yp = array_namespace(y)
    ok_y = bool(yp.all(yp.isfinite(y))) if yp.isdtype(y.dtype, "real floating") else True
    y_non_negative = bool(yp.all(y >= 0))
    if w is None:
        return ok, ok_y, int(X.shape[0]), y_non_negative, True, True, float(X.shape[0])
    w = np.asarray(to_numpy(w), dtype=np.float64)
    return (ok, ok_y, int(X.shape[0]), y_non_negative, bool(np.all(np.isfinite(w))),
            bool(np.all(w >= 0)), float(w.sum()))


# ------------------------------------------------------------ driver side
class ChunkSource:
    """Row chunks of X and y, computed once and held on the Dask workers.

    A batch source (see :mod:`gpumlp.sources`): a batch is a list of chunk
    indices, and the parameters it is given are NumPy arrays on the driver.

    Build one with :meth:`from_arrays`.
    """

    def __init__(self, client, X_blocks, y_blocks, rows, n_features, n_outputs, y_ndim,
                 dtype, w_blocks=None, weight_sums=None):
        self.client = client
        self.X, self.y, self.rows = X_blocks, y_blocks, list(rows)
        #: The weights' blocks (or ``None``) and each chunk's sum of weights.
        self.w = w_blocks
        self.weight_sums = list(self.rows) if weight_sums is None else list(weight_sums)
        self.n_samples = sum(self.rows)
        self.n_features, self.n_outputs, self.y_ndim = n_features, n_outputs, y_ndim
        #: The training dtype's name; the estimator may set it before training.
        self.dtype = dtype

    @classmethod
    def from_arrays(cls, X, y, client=None, estimator_name="MLPRegressor",
                    n_features=None, sample_weight=None,
                    non_negative=False) -> ChunkSource:
        """Check X and y, and hold their chunks on the workers.

        Parameters
        ----------
        X : dask array, shape (n, f), chunked by rows (columns are merged)
        y : dask array or NumPy array, shape (n,) or (n, k)
        client : distributed.Client, optional
            Default: the current client.
        n_features : int, optional
            The feature count a fitted model expects.
        sample_weight : dask array or array-like, shape (n,), optional
            Rechunked like ``X``'s rows if it is not already.
        non_negative : bool
            Require ``y >= 0`` (``loss="poisson"``).
        """
        _require_dask()
        import dask.array as da

        client = client if client is not None else _default_client()
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-D dask array X, got {X.ndim}-D.")
        if len(X.chunks[1]) != 1:
            X = X.rechunk({1: -1})  # whole rows per chunk
        if math.isnan(X.shape[0]):
            raise ValueError("X has unknown chunk lengths; compute them first "
                             "(for dask dataframes: to_dask_array(lengths=True)).")
        if y is None:
            raise ValueError(f"{estimator_name} requires y to be passed, but the target y "
                             f"is None.")
        if np.ndim(y) not in (1, 2) or np.shape(y)[0] != X.shape[0]:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: "
                f"[{X.shape[0]}, {np.shape(y)[0] if np.ndim(y) else 0}]. X and y need one "
                f"row per sample.")
        check_n_features(X.shape[1], n_features, estimator_name)
        if not hasattr(y, "dask"):
            y = da.from_array(np.asarray(y), chunks=(X.chunks[0],) + ((-1,) if np.ndim(y) == 2
                                                                    else ()))
        y = y.rechunk((X.chunks[0],) + ((-1,) if y.ndim == 2 else ()))
        dtype = X.dtype.name if X.dtype in (np.float32, np.float64) else "float64"
        w_blocks = None
        if sample_weight is not None:
            if not hasattr(sample_weight, "dask"):
                sample_weight = np.asarray(sample_weight, dtype=np.float64)
                if sample_weight.ndim == 0:
                    sample_weight = np.full(X.shape[0], float(sample_weight))
                if sample_weight.shape == (X.shape[0],):
                    sample_weight = da.from_array(sample_weight, chunks=(X.chunks[0],))
            if tuple(sample_weight.shape) != (X.shape[0],):
                raise ValueError(f"sample_weight has shape {tuple(sample_weight.shape)}; it "
                                 f"needs one weight per row, shape ({X.shape[0]},).")
            w_blocks = cls._hold(client, sample_weight.rechunk((X.chunks[0],)), "w")
        source = cls(client, cls._hold(client, X, "X"), cls._hold(client, y, "y"),
                     X.chunks[0], X.shape[1], 1 if y.ndim == 1 else y.shape[1], y.ndim, dtype,
                     w_blocks)
        source.check_finite(non_negative)
        return source

    @staticmethod
    def _hold(client, array, name):
        """Compute the blocks once and keep them on the workers, under keys of our own.

        Fresh keys keep the training data apart from later graphs over the
        same arrays (a prediction, a score): when the fit ends and these
        futures are released, no other computation shares their keys.
        """
        import uuid

        from dask import delayed

        token = uuid.uuid4().hex
        blocks = [delayed(_identity, pure=False)(block, dask_key_name=f"gpumlp-{name}-{token}-{i}")
                  for i, block in enumerate(array.to_delayed().ravel())]
        return client.compute(blocks)

    def check_finite(self, non_negative=False):
        """Raise ``ValueError`` if any chunk holds NaN or infinity (one pass, on the workers).

        Also checks the weights (finite, >= 0, not all zero) and records each
        chunk's sum of them, and with ``non_negative`` that ``y >= 0``.
        """
        weights = self.w if self.w is not None else [None] * len(self.X)
        checks = self.client.gather([self.client.submit(_finite_and_rows, x, y, w, pure=False)
                                     for x, y, w in zip(self.X, self.y, weights)])
        self.weight_sums = [c[6] for c in checks]
        if non_negative and not all(c[3] for c in checks):
            raise ValueError("y contains negative values, and loss='poisson' needs y >= 0 "
                             "(it models counts or rates). Use loss='squared_error' for such "
                             "targets.")
        if not all(c[4] for c in checks):
            raise ValueError("sample_weight contains NaN or infinity; pass finite weights.")
        if not all(c[5] for c in checks):
            raise ValueError("sample_weight contains negative weights; weights must be >= 0.")
        if not sum(self.weight_sums) > 0:
            raise ValueError("sample_weight is all zero; at least one row must have "
                             "weight > 0.")
        for which, position in (("X", 0), ("y", 1)):
            bad = [i for i, c in enumerate(checks) if not c[position]]
            if bad:
                raise ValueError(
                    f"Input {which} contains NaN or infinity in {len(bad)} chunk(s), the "
                    f"first being chunk {bad[0]} (rows {sum(self.rows[:bad[0]])} to "
                    f"{sum(self.rows[:bad[0] + 1]) - 1}). Remove or impute them before fitting.")

    def _subset(self, chunk_ids):
        return ChunkSource(self.client, [self.X[i] for i in chunk_ids],
                           [self.y[i] for i in chunk_ids], [self.rows[i] for i in chunk_ids],
                           self.n_features, self.n_outputs, self.y_ndim, self.dtype,
                           None if self.w is None else [self.w[i] for i in chunk_ids],
                           [self.weight_sums[i] for i in chunk_ids])

    def split(self, fraction, rng):
        """``(train, validation)`` sources: ``ceil(fraction * chunks)`` whole chunks held out."""
        n_chunks = len(self.rows)
        n_val = max(1, int(math.ceil(fraction * n_chunks)))
        if n_val >= n_chunks:
            raise ValueError(
                f"early_stopping on dask arrays holds out whole chunks, and X has "
                f"{n_chunks} chunk(s); with validation_fraction={fraction} no chunk is left "
                f"to train on. Rechunk X into more chunks, or pass a smaller fraction.")
        perm = rng.permutation(n_chunks)
        return self._subset(sorted(perm[n_val:])), self._subset(sorted(perm[:n_val]))

    def batches(self, rng, batch_size, shuffle):
        """This epoch's batches: groups of consecutive chunks of at least ``batch_size`` rows."""
        n_chunks = len(self.rows)
        order = range(n_chunks)
        if shuffle and batch_size < self.n_samples and n_chunks > 1:
            order = rng.permutation(n_chunks)
        batches, current, rows = [], [], 0
        for i in order:
            current.append(int(i))
            rows += self.rows[i]
            if rows >= batch_size:
                batches.append(current)
                current, rows = [], 0
        if current:
            batches.append(current)
        return batches

    def batch_rows(self, batch):
        """Rows in one batch."""
        return sum(self.rows[i] for i in batch)

    def _reduce(self, function, chunk_ids, *args):
        """Run ``function`` on each chunk, add the results up as a tree, gather them."""
        client = self.client
        # The weights travel inside each task rather than as scattered data:
        # a task can then be rerun on any worker, even after the worker that
        # held a scattered copy has died.
        parts = [client.submit(function, self.X[i], self.y[i],
                               None if self.w is None else self.w[i], *args, pure=False)
                 for i in chunk_ids]
        while len(parts) > 1:
            parts = [client.submit(_add, parts[j], parts[j + 1], pure=False)
                     if j + 1 < len(parts) else parts[j] for j in range(0, len(parts), 2)]
        try:
            return parts[0].result()
        except Exception as exc:
            # Dask retries tasks on other workers; when it gives up, say so plainly.
            raise RuntimeError(
                f"Training on the Dask cluster failed ({type(exc).__name__}: {exc}). The "
                f"model keeps the weights of the last complete epoch; check the workers' "
                f"logs and call fit again.") from exc

    def loss_and_grads(self, batch, coefs, intercepts, network):
        """The batch's loss and gradients, summed on the workers: ``(loss, grads, total)``."""
        n_total = self.batch_rows(batch)
        if self.w is not None:
            n_total = float(sum(self.weight_sums[i] for i in batch))
        dtype = np.dtype(self.dtype)
        sums = self._reduce(_chunk_sums, batch, [*coefs, *intercepts], network.n_coefs,
                            network.activation.name, n_total, self.dtype, network.fastpath,
                            network.loss.name)
        loss = np.asarray(sums[0] / dtype.type(n_total * self.n_outputs), dtype=dtype)
        return loss, [np.asarray(g, dtype=dtype) for g in sums[1:]], n_total

    def evaluate(self, coefs, intercepts, network):
        """Loss and R² on all chunks, computed on the workers (NumPy 0-d arrays)."""
        dtype = np.dtype(self.dtype)
        sse, total, squares, loss_sum, n = self._reduce(
            _chunk_eval, range(len(self.rows)), [*coefs, *intercepts], len(coefs),
            network.activation.name, self.dtype, network.loss.name)
        n = float(n)
        sst = squares - total * total / n
        safe = np.where(sst > 0, sst, 1.0)
        r2 = np.where(sst > 0, 1.0 - sse / safe, (sse == 0).astype(sse.dtype))
        return (np.asarray(float(loss_sum) / (n * self.n_outputs), dtype=dtype),
                np.asarray(r2.mean(), dtype=dtype))


def predict(est, X):
    """Predictions for a dask array: a dask array, one block per row chunk."""
    _require_dask()
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D dask array X, got {X.ndim}-D.")
    check_n_features(X.shape[1], est.coefs_[0].shape[0], type(est).__name__)
    if len(X.chunks[1]) != 1:
        X = X.rechunk({1: -1})
    dtype = np.dtype(str(est.coefs_[0].dtype))
    if getattr(est, "_y_was_1d", False):
        return X.map_blocks(_predict_block, est, dtype=dtype, drop_axis=1)
    k = est.coefs_[-1].shape[1]
    return X.map_blocks(_predict_block, est, dtype=dtype, chunks=(X.chunks[0], (k,)))


def _predict_block(block, est):
    return est.predict(block)


# ---------------------------------------------------------------- clusters
def _default_client():
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        raise ValueError(
            "Fitting on dask arrays needs a Dask client: create one "
            "(distributed.Client(...)) or pass fit(..., client=client).") from None


def connect(spec):
    """A ``(client, cluster)`` from ``"local:N"``, ``"local-cuda"`` or a scheduler address.

    ``cluster`` is ``None`` for an existing scheduler; close both when done.
    """
    _require_dask()
    from distributed import Client, LocalCluster

    if spec.startswith("local-cuda"):
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ImportError("--cluster local-cuda needs dask-cuda: "
                              "pip install 'gpumlp[dask-cuda]'") from None
        cluster = LocalCUDACluster(dashboard_address=None)
        return Client(cluster), cluster
    if spec.startswith("local"):
        _, _, count = spec.partition(":")
        try:
            workers = int(count) if count else (os.cpu_count() or 1)
        except ValueError:
            raise ValueError(f"--cluster takes local:N (N workers), got {spec!r}") from None
        if workers < 1:
            raise ValueError(f"--cluster local:N needs N >= 1, got {workers}")
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        return Client(cluster), cluster
    return Client(spec, timeout="10s"), None


def split_by_chunks(X, y, test_size):
    """Train and test parts of dask arrays: the last ``test_size`` of the row chunks.

    Parameters
    ----------
    X : dask array, shape (n, f)
    y : dask array, shape (n,)
    test_size : float in [0, 1)

    Returns
    -------
    X_train, X_test, y_train, y_test : dask arrays
        The test parts are ``None`` when ``test_size`` is 0 or there is only
        one chunk.
    """
    if not 0 <= test_size < 1:  # also refuses NaN
        raise ValueError(f"test_size must be in [0, 1), got {test_size}")
    n_chunks = len(X.chunks[0])
    if test_size == 0 or n_chunks < 2:
        return X, None, y, None
    n_test = min(max(int(round(test_size * n_chunks)), 1), n_chunks - 1)
    split = sum(X.chunks[0][: n_chunks - n_test])
    return X[:split], X[split:], y[:split], y[split:]


def _as_cupy(block):
    import cupy

    return cupy.asarray(block)


def to_cupy_blocks(x):
    """Each block of a dask array turned into CuPy on its (GPU) worker, lazily."""
    return x.map_blocks(_as_cupy, dtype=x.dtype)


# ----------------------------------------------------------------- readers
def is_dataset_path(path):
    """Whether ``path`` names data for Dask: a directory, Zarr, Parquet or a glob.

    An existing file is a file, whatever its name holds (``sales[2024].csv``,
    ``what?.csv``); a pattern counts as a glob only when it matches something,
    so a mistyped file name is reported as missing, without a cluster.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    path = os.fspath(path)
    if path.rstrip("/").endswith((".zarr", ".parquet")) or os.path.isdir(path):
        return True
    if os.path.exists(path):
        return False
    return any(c in path for c in "*?[") and bool(glob.glob(path))


def _load_part(path, key, shape):
    """One part's array, on a worker; the file must still hold what its header said."""
    from .data import DataError, load_array

    array = load_array(path, key)
    if array.shape != shape:
        raise DataError(f"{path} changed while it was read: shape {array.shape}, listed as "
                        f"{shape}. Do not write to the data while training.")
    return array


def _some(files, limit=3):
    names = ", ".join(os.path.basename(f) for f in files[:limit])
    return names + (f" and {len(files) - limit} more" if len(files) > limit else "")


def _check_widths(path, widths, what):
    """One column count for every part, or an error naming the files of each."""
    if len(widths) > 1:
        from .data import DataError

        parts = "; ".join(f"{width} in {_some(files)}" for width, files in sorted(widths.items()))
        raise DataError(f"{path}: the files' {what} have different column counts: {parts}. "
                        f"Use parts with the same columns.")


def _dataset_files(path):
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(glob.escape(path), "*")))
    if os.path.isfile(path):
        return [path]
    return sorted(glob.glob(path))


def _read_npy_parts(files, da, dask):
    from .data import DataError, inspect_array

    blocks, widths = [], {}
    for f in files:
        shape, dtype = inspect_array(f)
        if len(shape) != 2 or shape[1] < 2:
            raise DataError(f"{f}: expected a 2-D array with the target in its last column "
                            f"and at least one feature before it, got shape {shape}.")
        if shape[0] == 0:
            raise DataError(f"{f} has 0 rows; remove it from the data or add rows.")
        widths.setdefault(shape[1], []).append(f)
        blocks.append(da.from_delayed(dask.delayed(_load_part)(f, None, shape), shape, dtype))
    return blocks, widths


def _read_npz_parts(files, da, dask):
    from .data import DataError, inspect_array

    Xs, ys, widths = [], [], {}
    for f in files:
        (x_shape, x_dtype), (y_shape, y_dtype) = inspect_array(f, "X"), inspect_array(f, "y")
        if len(x_shape) != 2 or len(y_shape) != 1:
            raise DataError(f"{f}: X must be 2-D and y 1-D; got shapes {x_shape} and "
                            f"{y_shape}.")
        if x_shape[0] != y_shape[0]:
            raise DataError(f"{f}: X has {x_shape[0]} rows but y has {y_shape[0]}; they must "
                            f"match row for row. Write the file again.")
        if x_shape[0] == 0:
            raise DataError(f"{f} has 0 rows; remove it from the data or add rows.")
        if x_shape[1] == 0:
            raise DataError(f"{f}: X has 0 columns; it needs at least one feature.")
        widths.setdefault(x_shape[1], []).append(f)
        Xs.append(da.from_delayed(dask.delayed(_load_part)(f, "X", x_shape), x_shape, x_dtype))
        ys.append(da.from_delayed(dask.delayed(_load_part)(f, "y", y_shape), y_shape, y_dtype))
    return Xs, ys, widths


def _read_zarr(path, da):
    import zarr

    from .data import DataError

    try:
        root = zarr.open(path, mode="r")
        arrays = ({key: root[key] for key in ("X", "y") if key in root}
                  if hasattr(root, "keys") else {"table": root})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a readable Zarr store ({exc}).") from None
    for key, array in arrays.items():
        if np.dtype(array.dtype).kind not in "biuf":
            raise DataError(f"{path}: array {key} has dtype {array.dtype}; it must be numeric.")
    if "table" in arrays:
        table = arrays["table"]
        if table.ndim != 2 or table.shape[1] < 2 or table.shape[0] == 0:
            raise DataError(f"{path}: a single Zarr array must be 2-D, with rows and the target "
                            f"in its last column after at least one feature; got shape "
                            f"{table.shape}.")
        table = da.from_zarr(path)
        return table[:, :-1], table[:, -1], [f"x{j}" for j in range(table.shape[1] - 1)], "y"
    if len(arrays) < 2:
        raise DataError(f"{path}: a Zarr group needs arrays named X and y (it has "
                        f"{', '.join(sorted(root.keys())) or 'none'}).")
    X, y = arrays["X"], arrays["y"]
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: X must be 2-D and y 1-D with as many rows; got "
                        f"{X.shape} and {y.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: X has shape {X.shape}; it needs rows and at least one "
                        f"feature column.")
    X, y = da.from_zarr(path, component="X"), da.from_zarr(path, component="y")
    return X, y, [f"x{j}" for j in range(X.shape[1])], "y"


def _read_parquet(path, target):
    try:
        import dask.dataframe as dd
        import pandas as pd
    except ImportError:
        raise ImportError("Parquet needs dask.dataframe: pip install 'dask[dataframe]' "
                          "pyarrow") from None
    from .data import DataError, target_column

    try:
        frame = dd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable Parquet dataset ({exc}).") from None
    columns = [str(c) for c in frame.columns]
    target = target_column(path, columns, target)
    text = [f"{c!r} ({dtype})" for c, dtype in zip(columns, frame.dtypes)
            if not pd.api.types.is_numeric_dtype(dtype)
            or pd.api.types.is_complex_dtype(dtype)]
    if text:
        raise DataError(f"{path}: non-numeric column(s) {', '.join(text)}; encode them as "
                        f"numbers or drop them.")
    features = [c for c in frame.columns if str(c) != target]
    return (frame[features].to_dask_array(lengths=True).astype("float64"),
            frame[target].to_dask_array(lengths=True).astype("float64"),
            [str(c) for c in features], target)


def read_dataset(path, target=None):
    """X and y as dask arrays, read on the workers, never gathered on the driver.

    * a glob or directory of ``.npy`` files: 2-D arrays, the target in the last
      column, one chunk per file;
    * a glob or directory of ``.npz`` files, each with arrays ``X`` and ``y``;
    * a ``.zarr`` store holding arrays ``X`` and ``y``, or one 2-D array whose
      last column is the target;
    * a ``.parquet`` dataset (needs pandas and pyarrow): the column ``target``
      (default: the last) is the target.

    Only file headers are read here, for shapes and dtypes, and every part is
    checked before a task is made: numeric dtypes, no Python objects, sizes
    that match the headers, rows in every part, X and y of equal length, at
    least one feature, one column count for all parts. Any problem is a
    :class:`~gpumlp.data.DataError` that names the file.

    Parameters
    ----------
    path : str or os.PathLike
    target : str, optional
        The target column of a Parquet dataset.

    Returns
    -------
    X, y : dask arrays, shapes (n, f) and (n,)
    feature_names : list of str
    target_name : str
    """
    _require_dask()
    import dask
    import dask.array as da

    from .data import DataError

    path = os.fspath(path)
    path = path.rstrip("/") or path
    if path.endswith(".zarr"):
        if target is not None:
            raise DataError("--target names a Parquet or CSV column; a Zarr store keeps the "
                            "target in y or in its last column.")
        return _read_zarr(path, da)
    if path.endswith(".parquet"):
        return _read_parquet(path, target)
    if target is not None:
        raise DataError("--target names a Parquet or CSV column; .npy parts keep the target "
                        "in their last column, .npz parts in the array y.")
    files = [f for f in _dataset_files(path) if f.endswith((".npy", ".npz"))]
    if not files:
        raise DataError(f"{path}: no .npy or .npz files found. Pass a directory or a glob "
                        f"such as 'data/*.npy'.")
    kinds = {os.path.splitext(f)[1] for f in files}
    if len(kinds) > 1:
        raise DataError(f"{path}: mixes .npy and .npz files; use one kind.")
    if kinds == {".npy"}:
        blocks, widths = _read_npy_parts(files, da, dask)
        _check_widths(path, widths, "arrays")
        table = da.concatenate(blocks, axis=0)
        names = [f"x{j}" for j in range(table.shape[1] - 1)]
        return table[:, :-1], table[:, -1], names, "y"
    Xs, ys, widths = _read_npz_parts(files, da, dask)
    _check_widths(path, widths, "X arrays")
    X, y = da.concatenate(Xs, axis=0), da.concatenate(ys, axis=0)
    return X, y, [f"x{j}" for j in range(X.shape[1])], "y"
