"""Training on Dask: data-parallel gradient descent over row chunks.

Dask is one more batch source (:mod:`gpumlp.sources`): :class:`ChunkSource`
holds the row chunks of X and y on the workers, and the ordinary trainer
drives the steps. Each chunk stays on the worker that holds it and goes
through the same code as in-process training (the backend's fast path where
:func:`gpumlp.fastpath.select` offers one, else the generic array-API
kernels), in the chunk's own namespace (NumPy, or CuPy on GPU workers). A
chunk returns its *share* of the batch's gradient
(``kernels.backward(..., n_total=rows in the batch)``) and its sum of losses
(squared errors, or Poisson half-deviances); the driver adds those up as a
tree in chunk order and applies the L2 penalty and the solver's update (the
same solvers as in-process) to the small host-side weights, which are sent to
the workers' shards each step (:mod:`gpumlp.shards`: no task graph per step).
When one shard holds every chunk, full-batch plain gradient descent runs
blocks of epochs there (:class:`ShardBlocks`). ``sample_weight`` comes as a dask array chunked like
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

from ._checks import check_n_features
from .devices import to_numpy
from .shards import loss_and_grads_of, tree_sum

__all__ = ["LOCAL_CLUSTER_CONFIG", "ChunkSource", "ShardBlocks", "as_dask_like_rows",
           "check_finite", "cluster_plan", "connect", "local_cluster", "parse_cluster",
           "parse_scheduler", "predict", "read_dataset", "split_by_chunks", "to_cupy_blocks",
           "usable_cores"]


#: Times a step is sent again after a worker was lost.
RETRIES = 3
#: Seconds :meth:`ChunkSource.release` waits for the scheduler to forget the chunks.
RELEASE_TIMEOUT = 10


def _require_dask():
    try:
        import dask.array  # noqa: F401
        import distributed  # noqa: F401
    except ImportError:
        raise ImportError(
            "Training on dask arrays needs Dask: pip install 'gpumlp[dask]'"
        ) from None


# ------------------------------------------------------------ worker side
def _identity(x):
    return x


def _first_bad(a):
    """The index of the first NaN or infinity of ``a`` as a tuple, or None."""
    from array_api_compat import array_namespace

    xp = array_namespace(a)
    if not xp.isdtype(a.dtype, "real floating") or bool(xp.all(xp.isfinite(a))):
        return None
    bad = np.argwhere(~np.isfinite(np.asarray(to_numpy(a))))
    return tuple(int(i) for i in bad[0])


def _finite_and_rows(X, y, w=None):
    """On a worker: the first non-finite index of X and of y (or None), rows, y >= 0,
    weights finite and >= 0, their sum."""
    from array_api_compat import array_namespace

    yp = array_namespace(y)
    y_non_negative = bool(yp.all(y >= 0))
    if w is None:
        return _first_bad(X), _first_bad(y), int(X.shape[0]), y_non_negative, True, True, \
            float(X.shape[0])
    w = np.asarray(to_numpy(w), dtype=np.float64)
    return (_first_bad(X), _first_bad(y), int(X.shape[0]), y_non_negative,
            bool(np.all(np.isfinite(w))), bool(np.all(w >= 0)), float(w.sum()))


def as_dask_like_rows(y, X):
    """``y`` in memory as a dask array chunked like the rows of dask array ``X``.

    Parameters
    ----------
    y : array-like, shape (n,) or (n, k)
    X : dask array, shape (n, f)
    """
    import dask.array as da

    y = np.asarray(to_numpy(y))
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: "
            f"[{X.shape[0]}, {y.shape[0] if y.ndim else 0}]. X and y need one row per sample.")
    return da.from_array(y, chunks=(X.chunks[0],) + ((-1,) if y.ndim == 2 else ()))


def _first_bad_block(block):
    return _first_bad(block)


def check_finite(x, name: str) -> None:
    """Raise ``ValueError`` at the first NaN or infinity of a dask array, by its index.

    One pass over the blocks, on the workers; the index is the element's
    in ``x`` (its row in the whole array, not in its chunk).

    Parameters
    ----------
    x : dask array, or an array in memory, shape (n,) or (n, k)
    name : str
        What to call ``x`` in the message.
    """
    import dask

    if not hasattr(x, "dask"):
        x = np.asarray(to_numpy(x))
        x = dask.array.from_array(x, chunks=x.shape or 1)
    if x.ndim == 2 and len(x.chunks[1]) != 1:
        x = x.rechunk({1: -1})
    found = dask.compute(*[dask.delayed(_first_bad_block)(b) for b in x.to_delayed().ravel()])
    for chunk, index in enumerate(found):
        if index is not None:
            start = sum(x.chunks[0][:chunk])
            where = ", ".join(map(str, (index[0] + start, *index[1:])))
            raise ValueError(f"Input {name} contains NaN or infinity; the first is "
                             f"{name}[{where}] (chunk {chunk}). Remove or impute them before "
                             f"fitting.")


# ------------------------------------------------------------ driver side
class ChunkSource:
    """Row chunks of X and y, computed once and held on the Dask workers.

    A batch source (see :mod:`gpumlp.sources`): a batch is a list of chunk
    indices, and the parameters it is given are NumPy arrays on the driver.

    Build one with :meth:`from_arrays`.
    """

    def __init__(self, client, X_blocks, y_blocks, rows, n_features, n_outputs, y_ndim,
                 dtype, w_blocks=None, weight_sums=None, placement=None, ids=None):
        from .shards import Placement

        self.client = client
        self.X, self.y, self.rows = X_blocks, y_blocks, list(rows)
        #: The weights' blocks (or ``None``) and each chunk's sum of weights.
        self.w = w_blocks
        self.weight_sums = list(self.rows) if weight_sums is None else list(weight_sums)
        self.n_samples = sum(self.rows)
        #: Each chunk's id in the placement (its shard), shared with the
        #: sources split from this one.
        self.ids = list(range(len(self.rows))) if ids is None else list(ids)
        self.placement = placement if placement is not None else Placement(
            client, self.X, self.y, [None] * len(self.X) if self.w is None else self.w,
            self.rows)
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
        try:
            source.check_finite(non_negative)
        except BaseException:
            source.release()
            raise
        return source

    def release(self, timeout: float = RELEASE_TIMEOUT) -> None:
        """Free the chunks and the shards on the cluster now, and wait until the scheduler has.

        Called as a fit ends, however it ends, for the sources it made: the
        chunks do not outlive the fit in a traceback (an interactive session
        keeps the last one), and a graph submitted next over the same data (a
        score, a prediction) never meets keys the scheduler is still
        forgetting. Sources split from this one share its chunks: they are
        released with it. Releasing again does nothing.

        Parameters
        ----------
        timeout : float
            Seconds to wait for the scheduler at most.
        """
        import time

        futures = [f for f in (*self.X, *self.y, *(self.w or ())) if f is not None]
        futures += self.placement.release()
        for future in futures:
            future.release()
        keys = [future.key for future in futures]
        deadline = time.monotonic() + timeout
        while keys and time.monotonic() < deadline:
            try:
                who = self.client.sync(self.client.scheduler.who_has, keys=keys)
            except Exception:  # the scheduler gone with the cluster: nothing is held
                return
            keys = [key for key in keys if who.get(key)]
            if keys:
                time.sleep(0.01)

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
            bad = [i for i, c in enumerate(checks) if c[position] is not None]
            if bad:
                first = sum(self.rows[:bad[0]])
                index = list(checks[bad[0]][position])
                index[0] += first
                raise ValueError(
                    f"Input {which} contains NaN or infinity in {len(bad)} chunk(s); the "
                    f"first is {which}[{', '.join(map(str, index))}] (chunk {bad[0]}, rows "
                    f"{first} to {first + self.rows[bad[0]] - 1}). Remove or impute them "
                    f"before fitting.")

    def _subset(self, chunk_ids):
        return ChunkSource(self.client, [self.X[i] for i in chunk_ids],
                           [self.y[i] for i in chunk_ids], [self.rows[i] for i in chunk_ids],
                           self.n_features, self.n_outputs, self.y_ndim, self.dtype,
                           None if self.w is None else [self.w[i] for i in chunk_ids],
                           [self.weight_sums[i] for i in chunk_ids], self.placement,
                           [self.ids[i] for i in chunk_ids])

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

    def batch_total(self, batch: list) -> float:
        """What a batch's loss is divided by: its rows, or its sum of weights."""
        if self.w is None:
            return self.batch_rows(batch)
        return float(sum(self.weight_sums[i] for i in batch))

    def _reduce(self, method, chunk_ids, params, *args):
        """``method`` of the shards on each chunk, added as a tree in chunk order.

        A shard that cannot be reached because its worker left is replaced
        (see :mod:`gpumlp.shards`), up to :data:`RETRIES` times a step, and the
        step is sent again: the sum is the same bits whichever workers
        compute it.
        """
        placement = self.placement
        ids = [self.ids[i] for i in chunk_ids]
        dtype = np.dtype(self.dtype)
        flat = np.concatenate([np.reshape(np.asarray(p, dtype=dtype), -1) for p in params])
        shapes = [tuple(p.shape) for p in params]
        vectors = self._retried(lambda: placement.call(method, ids, flat, shapes, *args))
        return tree_sum([vectors[i] for i in ids])

    def _retried(self, call):
        """``call()`` on placed shards, sent again after a lost worker (see :meth:`_reduce`)."""
        placement = self.placement
        for attempt in range(RETRIES + 1):
            try:
                placement.ensure(self.dtype)
                return call()
            except ValueError:
                raise  # the data's problem (a shard's check), said by the shard
            except Exception as exc:
                if attempt < RETRIES and placement.recoverable(exc):
                    placement.shards = []  # placed again by ensure, where the chunks are now
                    continue
                # When Dask gives up, or the error is not a lost worker, say so plainly.
                raise RuntimeError(
                    f"Training on the Dask cluster failed ({type(exc).__name__}: {exc}). The "
                    f"model keeps the weights of the last complete epoch; check the workers' "
                    f"logs and call fit again.") from exc

    def loss_and_grads(self, batch, coefs, intercepts, network):
        """The batch's loss and gradients, summed on the workers: ``(loss, grads, total)``."""
        n_total = self.batch_total(batch)
        params = [*coefs, *intercepts]
        sums = self._reduce("sums", batch, params, network.n_coefs, network.activation.name,
                            n_total, network.fastpath, network.loss.name)
        return (*loss_and_grads_of(sums, params, n_total, self.n_outputs,
                                   np.dtype(self.dtype)), n_total)

    def block_runner(self, network, solver, alpha: float) -> ShardBlocks:
        """Runs blocks of full-batch epochs of plain gradient descent (see :class:`ShardBlocks`)."""
        return ShardBlocks(self, network, solver, alpha)

    def target_extremes(self, coefs, intercepts, network):
        """``(largest, smallest)`` y per output over the rows that weigh, from the workers."""
        vectors = self._evaluations(coefs, intercepts, network)
        rows = np.stack([np.asarray(v, dtype=np.float64) for v in vectors])
        k = self.n_outputs
        return rows[:, 3 * k:4 * k].max(axis=0), rows[:, 4 * k:5 * k].min(axis=0)

    def _evaluations(self, coefs, intercepts, network):
        """Each chunk's row of :meth:`gpumlp.shards.Shard.evaluate`, in chunk order."""
        dtype = np.dtype(self.dtype)
        placement = self.placement
        ids = [self.ids[i] for i in range(len(self.rows))]
        params = [*coefs, *intercepts]
        flat = np.concatenate([np.reshape(np.asarray(p, dtype=dtype), -1) for p in params])
        shapes = [tuple(p.shape) for p in params]
        vectors = self._retried(lambda: placement.call(
            "evaluate", ids, flat, shapes, len(coefs), network.activation.name,
            network.loss.name))
        return [vectors[i] for i in ids]

    def evaluate(self, coefs, intercepts, network):
        """Loss and R² on all chunks, computed on the workers (NumPy 0-d arrays)."""
        from .shards import combined_r2

        dtype = np.dtype(self.dtype)
        r2, loss_sum, n = combined_r2(self._evaluations(coefs, intercepts, network),
                                      self.n_outputs)
        return (np.asarray(loss_sum / (n * self.n_outputs), dtype=dtype),
                np.asarray(r2.mean(), dtype=dtype))


class ShardBlocks:
    """Blocks of full-batch epochs of plain gradient descent on a :class:`ChunkSource`.

    When one shard holds every chunk (one worker, or one chunk), a block is
    one round trip: the shard runs the epochs itself (:meth:`Shard.epochs
    <gpumlp.shards.Shard.epochs>`) and sends every epoch's weights back.
    Otherwise each epoch needs the sum over the workers: one round trip each,
    as epoch-by-epoch training takes them. Either way the epochs are the same
    bits, and the trainer applies its rule to them as to any block
    (:meth:`gpumlp.training.Trainer._run_block`).
    """

    def __init__(self, source, network, solver, alpha):
        self.source, self.network, self.solver, self.alpha = source, network, solver, alpha

    def run(self, params: list, rates: list[float]) -> list[tuple]:
        """``len(rates)`` epochs from ``params``: per epoch ``(params, loss, finite)``."""
        source = self.source
        batch = list(range(len(source.rows)))
        ids = [source.ids[i] for i in batch]
        n_total = source.batch_total(batch)
        placement = source.placement
        host = [np.asarray(p) for p in params]

        def on_one_shard():
            shard = placement.holder(ids)
            if shard is None:
                return None
            return placement.call_one(shard, ("epochs", (
                ids, host, self.network, self.solver, self.alpha, n_total, source.n_outputs,
                list(rates))))

        epochs = source._retried(on_one_shard)
        if epochs is not None:
            return epochs
        from .solvers import SGDState
        from .training import Trainer, _all_finite

        trainer, epochs = Trainer(self.network, self.solver, self.alpha, host), []
        for rate in rates:
            trainer.params, _, loss = self.solver.update(trainer.params, SGDState(rate),
                                                         trainer.objective(source, batch))
            epochs.append((list(trainer.params), loss, _all_finite(trainer.params)))
        return epochs


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


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_cluster(spec: str) -> tuple[str, int | None]:
    """``("local", N)`` or ``("local-cuda", None)`` from a ``--cluster`` value, checked.

    ``"local"`` alone means one worker per usable core; ``local:N`` with ``N``
    above that count is capped to it, with a warning (more single-threaded
    worker processes than cores only compete for them, and each costs
    memory, start-up time and semaphores).

    Raises
    ------
    ValueError
        For anything else, saying what the forms are.
    """
    import warnings

    forms = ("--cluster takes local:N (N worker processes), local (one worker per core) or "
             "local-cuda (one worker per GPU); to join a running cluster, pass its address "
             "to --scheduler instead")
    spec = spec.strip()
    if spec == "local-cuda":
        return "local-cuda", None
    kind, colon, count = spec.partition(":")
    if kind != "local" or (colon and not count):
        raise ValueError(f"{forms}. Got {spec!r}.")
    cores = usable_cores()
    if not colon:
        return "local", cores
    try:
        workers = int(count)
    except ValueError:
        raise ValueError(f"{forms}; N must be a whole number, got {spec!r}.") from None
    if workers < 1:
        raise ValueError(f"--cluster local:N needs N >= 1, got {workers}.")
    if workers > cores:
        warnings.warn(f"--cluster {spec}: this machine lets this process use {cores} "
                      f"core(s); starting {cores} worker process(es), not {workers} (more "
                      f"would only compete for the cores). Use --scheduler to train on more "
                      f"machines.", UserWarning, stacklevel=2)
        workers = cores
    return "local", workers


def parse_scheduler(address: str) -> str:
    """A ``--scheduler`` address, checked: ``[protocol://]host:port``.

    Raises
    ------
    ValueError
        When it has no host or no numeric port.
    """
    text = address.strip()
    protocol, sep, rest = text.rpartition("://")
    if sep and not protocol.isalnum():
        rest = text
    if protocol == "inproc":
        return text
    host, colon, port = rest.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--scheduler takes a scheduler address, [protocol://]host:port such "
                         f"as tcp://10.0.0.5:8786 (a port from 1 to 65535); got {address!r}.")
    return text


def cluster_plan(cluster=None, scheduler=None) -> tuple:
    """``(kind, workers, address)``: ``--cluster`` or ``--scheduler`` parsed, nothing started.

    ``kind`` is ``"local"``, ``"local-cuda"`` or ``"scheduler"``; see
    :func:`parse_cluster` and :func:`parse_scheduler`.
    """
    if (cluster is None) == (scheduler is None):
        raise ValueError("Pass --cluster (a local cluster) or --scheduler (a running one), "
                         "not both.")
    if scheduler is not None:
        return "scheduler", None, parse_scheduler(scheduler)
    return (*parse_cluster(cluster), None)


def connect(cluster=None, scheduler=None, *, plan=None):
    """A ``(client, local_cluster)`` for ``--cluster`` or ``--scheduler``.

    Parameters
    ----------
    cluster : str, optional
        ``"local"``, ``"local:N"`` or ``"local-cuda"`` (see :func:`parse_cluster`).
    scheduler : str, optional
        The address of a running scheduler (see :func:`parse_scheduler`).
    plan : tuple, optional
        :func:`cluster_plan`'s answer, given instead of the two above.

    Returns
    -------
    client : distributed.Client
    local_cluster : distributed.LocalCluster or None
        ``None`` for an existing scheduler; close both when done.
    """
    kind, workers, address = plan if plan is not None else cluster_plan(cluster, scheduler)
    _require_dask()
    from distributed import Client

    if kind == "scheduler":
        return Client(address, timeout="10s"), None
    if kind == "local-cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ImportError("--cluster local-cuda needs dask-cuda: "
                              "pip install 'gpumlp[dask-cuda]'") from None
        import dask

        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            local = LocalCUDACluster(dashboard_address=None)
        return Client(local), local
    local = local_cluster(workers)
    return Client(local), local


#: Dask settings of the local clusters this package starts (see :func:`local_cluster`).
LOCAL_CLUSTER_CONFIG = {
    # The workers' sampling profiler (a thread waking every 10 ms) feeds the
    # dashboard, which these clusters do not serve.
    "distributed.worker.profile.enabled": False,
    # Each server's event-loop health check (every 20 ms) and system monitor
    # (every 500 ms), for the scheduler, every nanny and every worker.
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}


def local_cluster(workers: int, **kwargs):
    """A local Dask cluster of ``workers`` single-threaded worker processes, set up to train.

    Idle, a default cluster of 8 workers takes about 0.3 s of CPU a second
    (measured on a 2-core VM: 80 ms/s in this process, where the scheduler
    and the nannies run, and 29 ms/s per worker), mostly periodic callbacks
    that serve the dashboard; on a machine with few cores that competes with
    every training step. :data:`LOCAL_CLUSTER_CONFIG` turns them down (to
    about 75 ms/s in all); the workers' memory monitor keeps Dask's default.

    Parameters
    ----------
    workers : int
    **kwargs
        Passed on to ``distributed.LocalCluster``.

    Returns
    -------
    distributed.LocalCluster
        Close it when done.
    """
    import dask
    from distributed import LocalCluster

    options = dict(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                   dashboard_address=None)
    # The scheduler and the nannies read theirs as they are made; each nanny
    # is also given the whole configuration (a copy), which it passes to the
    # worker processes it starts and, after a worker dies, restarts (else
    # those would start with the configuration in force then).
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        if kwargs.get("processes", True):
            options["config"] = dask.config.merge(dask.config.config)
        return LocalCluster(**{**options, **kwargs})


def split_by_chunks(X, y, test_size):
    """Train and test parts of dask arrays: the last ``test_size`` of the row chunks.

    With several chunks, the test rows are the last ``round(test_size *
    chunks)`` whole chunks (at least one, and at least one left to train
    on). A single chunk is split by rows: its last ``round(test_size * n)``
    rows (at least one, if the chunk holds two or more) are the test rows, so
    ``test_size`` means what it means for data in memory.

    Parameters
    ----------
    X : dask array, shape (n, f)
    y : dask array, shape (n,)
    test_size : float in [0, 1)

    Returns
    -------
    X_train, X_test, y_train, y_test : dask arrays
        The test parts are ``None`` when ``test_size`` is 0.

    Raises
    ------
    ValueError
        When ``test_size`` is positive and the data is one row.
    """
    if not 0 <= test_size < 1:  # also refuses NaN
        raise ValueError(f"test_size must be in [0, 1), got {test_size}")
    n_chunks = len(X.chunks[0])
    if test_size == 0:
        return X, None, y, None
    if n_chunks < 2:
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"--test-size {test_size} needs at least 2 rows to hold some out; "
                             f"the data has {n}. Pass --test-size 0 or more data.")
        split = n - min(max(int(round(test_size * n)), 1), n - 1)
    else:
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
    from .parquet import SUFFIXES

    path = os.fspath(path)
    if path.rstrip("/").endswith((".zarr", *SUFFIXES)) or os.path.isdir(path):
        return True
    if os.path.exists(path):
        return False
    return any(c in path for c in "*?[") and bool(glob.glob(path))


def _load_part(path, key, shape, start):
    """One part's array, on a worker, checked finite; the file must still hold what its
    header said. ``start`` is the part's first row in the dataset."""
    from .data import DataError, load_array
    from .parquet import check_finite_part

    array = load_array(path, key)
    if array.shape != shape:
        raise DataError(f"{path} changed while it was read: shape {array.shape}, listed as "
                        f"{shape}. Do not write to the data while training.")
    if array.dtype.kind == "f":
        table = array.reshape(shape[0], -1)
        names = ([f"x{j}" for j in range(table.shape[1] - 1)] + ["y"] if key is None
                 else ["y"] if key == "y" else [f"x{j}" for j in range(table.shape[1])])
        check_finite_part(table, names, path if key is None else f"{path}, array {key}", 0,
                          start)
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
    """The files of a folder or glob; anything in a folder but .npy/.npz parts is refused."""
    from .data import DataError

    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        return sorted(glob.glob(path))
    found = sorted(glob.glob(os.path.join(glob.escape(path), "*")))
    for f in found:
        name = os.path.basename(f)
        if not name.startswith((".", "_")) and not f.endswith((".npy", ".npz")):
            raise DataError(f"{path}: mixes .npy/.npz parts with other files or folders, "
                            f"such as {f}; keep only the dataset's parts in the folder.")
    return found


def _read_npy_parts(files, da, dask):
    from .data import DataError, inspect_array

    blocks, widths, start = [], {}, 0
    for f in files:
        shape, dtype = inspect_array(f)
        if len(shape) != 2 or shape[1] < 2:
            raise DataError(f"{f}: expected a 2-D array with the target in its last column "
                            f"and at least one feature before it, got shape {shape}.")
        if shape[0] == 0:
            raise DataError(f"{f} has 0 rows; remove it from the data or add rows.")
        widths.setdefault(shape[1], []).append(f)
        blocks.append(da.from_delayed(dask.delayed(_load_part)(f, None, shape, start), shape,
                                      dtype))
        start += shape[0]
    return blocks, widths


def _read_npz_parts(files, da, dask):
    from .data import DataError, inspect_array

    Xs, ys, widths, start = [], [], {}, 0
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
        Xs.append(da.from_delayed(dask.delayed(_load_part)(f, "X", x_shape, start), x_shape,
                                  x_dtype))
        ys.append(da.from_delayed(dask.delayed(_load_part)(f, "y", y_shape, start), y_shape,
                                  y_dtype))
        start += x_shape[0]
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


def read_dataset(path, target=None, drop=()):
    """X and y as dask arrays, read on the workers, never gathered on the driver.

    * a glob or directory of ``.npy`` files: 2-D arrays, the target in the last
      column, one chunk per file;
    * a glob or directory of ``.npz`` files, each with arrays ``X`` and ``y``;
    * a ``.zarr`` store holding arrays ``X`` and ``y``, or one 2-D array whose
      last column is the target;
    * Parquet (needs pyarrow): a ``.parquet`` file, a glob of them or a folder
      of them (Dask's and pandas' part files, hive partitions); the column
      ``target`` (default: the last) is the target. See :mod:`gpumlp.parquet`.

    A folder holds the parts only: other files (but names starting with ``.``
    or ``_``) are refused, by name. Each part is checked finite when it is
    read, on its worker; a NaN or infinity is reported with its file, its row
    there and its row in the dataset.

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
    drop : sequence of str
        Columns of a Parquet dataset to leave out (``--drop``); other data
        has no column names, so there it is refused.

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
    drop = tuple(drop or ())
    from .parquet import is_parquet, read_parquet

    if path.lower().endswith(".csv"):
        raise DataError(f"{path}: a CSV is read into memory, not by Dask workers; "
                        f"--cluster and --scheduler train on a dataset the workers read (a "
                        f".parquet file or folder, a .zarr store, .npy or .npz parts). Leave "
                        f"them out, or convert it: pandas.read_csv(path).to_parquet("
                        f"'data.parquet').")

    if drop and (path.endswith(".zarr") or not is_parquet(path)):
        raise DataError(f"--drop names columns of a Parquet dataset; {path} holds "
                        f"arrays without column names. Leave the columns out of the arrays.")
    if path.endswith(".zarr"):
        if target is not None:
            raise DataError("--target names a Parquet column; a Zarr store keeps the "
                            "target in y or in its last column.")
        return _read_zarr(path, da)
    if is_parquet(path):
        return read_parquet(path, target, drop)
    if target is not None:
        raise DataError("--target names a Parquet column; .npy parts keep the target "
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
