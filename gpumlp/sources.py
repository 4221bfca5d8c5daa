"""Batch sources: where the trainer's rows come from.

The trainer (:mod:`gpumlp.training`) never needs to know where data lives. A
source gives it batches in a seeded order and, for a batch and the current
parameters, the data term of the loss with its gradients; a validation source
also evaluates a loss and an R². Two sources share this interface:

* :class:`ArraySource` (here): rows held in memory on one device;
* :class:`gpumlp.distributed.ChunkSource`: row chunks held by Dask workers.

The interface (duck-typed)::

    n_samples, n_features, n_outputs : int
    batches(rng, batch_size, shuffle) -> list of batches
    batch_rows(batch) -> int
    loss_and_grads(batch, coefs, intercepts, network) -> (loss, grads, total)
    epoch_rows(batches) -> iterable of (X, y, w)   optional: a source holding rows
    evaluate(coefs, intercepts, network) -> (loss, r2)
    split(fraction, rng) -> (train_source, validation_source)

``loss`` is the network's loss (:mod:`gpumlp.losses`; by default the mean
squared error) over the batch's rows, weighted by the rows' ``sample_weight``
when the source has weights (a 0-d array in the parameters' namespace);
``grads`` is ``coef_grads + intercept_grads``; ``total`` is the batch's rows,
or its sum of weights, which the trainer needs to add the L2 penalty
(:func:`gpumlp.kernels.add_l2`) itself.
Row orders are drawn on the host from a NumPy ``Generator``, so every backend
sees the same batches. A source with ``epoch_rows`` hands the trainer each
batch's arrays, which it feeds to one pure, compilable step
(:func:`gpumlp.training.step_function`); a source without it (Dask) is asked
for each batch's gradients instead.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace

from . import fastpath, kernels
from .activations import Activation
from .devices import Device, move, to_numpy
from .losses import LOSSES, Loss
from .metrics import r2_score
from .splitting import validation_split

__all__ = ["ArraySource", "Network", "rows_loss_and_grads", "select_blocks", "select_fast"]


@dataclass(frozen=True)
class Network:
    """What a source needs to know of the network to compute a batch's gradients.

    Attributes
    ----------
    n_coefs : int
        Weight matrices, ``len(coefs)`` (2 for one hidden layer; the
        estimator's ``n_layers_`` counts the input layer too, so it is one more).
    activation : Activation
        The hidden layers' activation.
    fastpath : bool
        Whether a backend's fast path may be used (see :mod:`gpumlp.fastpath`).
    loss : Loss
        The training loss and, through it, the output activation.
    cuda_graph : bool
        Whether the opt-in CUDA tile kernels and graphs may be used (see
        :mod:`gpumlp.fastpath`); off by default.
    affine : callable or None
        Each layer's ``a @ W + b`` computed otherwise, on the generic kernels
        only (see :func:`gpumlp.kernels.forward`): the certificate's rounding
        samples. None, the default: as written.
    """

    n_coefs: int
    activation: Activation
    fastpath: bool = True
    loss: Loss = LOSSES["squared_error"]
    cuda_graph: bool = False
    affine: Callable | None = None

    def __post_init__(self):
        if self.affine is not None and (self.fastpath or self.cuda_graph):
            raise ValueError("a Network with its own affine products runs on the generic "
                             "kernels only: set fastpath=False and cuda_graph=False")


#: ``rows_loss_and_grads(fast=...)``'s default: select here.
_SELECT = object()


def select_fast(X, w, network: Network):
    """The backend's fast ``loss_and_grads`` for these rows and this network, or None."""
    return fastpath.select(X, network.n_coefs, network.activation, enabled=network.fastpath,
                           cuda_graph=network.cuda_graph, loss_kind=network.loss.name,
                           weighted=w is not None)


def select_blocks(X, y, w, coefs, network: Network, alpha: float):
    """The backend's runner of whole full-batch descent blocks for these rows, or None.

    See :func:`gpumlp.fastpath.select_blocks`; ``coefs`` give the sizes.
    """
    return fastpath.select_blocks(X, y, network.n_coefs, coefs[0].shape[1],
                                  network.activation, alpha, enabled=network.fastpath,
                                  cuda_graph=network.cuda_graph, loss_kind=network.loss.name,
                                  weighted=w is not None)


def rows_loss_and_grads(X, y, w, coefs, intercepts, network: Network, fast=_SELECT):
    """The loss of rows ``X, y`` (weights ``w`` or None) and its gradients.

    Returns ``(loss, grads, total)``: ``grads`` is ``coef_grads +
    intercept_grads``, without the L2 penalty, and ``total`` the rows, or the
    sum of their weights. The backend's fast path runs where it has one
    (:mod:`gpumlp.fastpath`; never on arrays a compiler is tracing), else the
    generic kernels; ``fast`` passes :func:`select_fast`'s answer when the
    caller already has it.
    """
    if fast is _SELECT:
        fast = select_fast(X, w, network)
    if fast is not None:
        loss, coef_grads, intercept_grads = fast(X, y, coefs, intercepts)
    else:
        loss, coef_grads, intercept_grads = kernels.loss_and_grads(
            X, y, coefs, intercepts, network.activation, sample_weight=w,
            loss_kind=network.loss, affine=network.affine)
    total = X.shape[0] if w is None else array_namespace(w).sum(w)
    return loss, coef_grads + intercept_grads, total


class ArraySource:
    """Rows held in memory, on one device, in the training dtype.

    Parameters
    ----------
    X : array, shape (n_samples, n_features)
    y : array, shape (n_samples, n_outputs)
    device : Device
        Where ``X`` and ``y`` live.
    sample_weight : array, shape (n_samples,), optional
        Row weights on ``device``, in ``X``'s dtype.
    """

    def __init__(self, X, y, device: Device, sample_weight=None):
        self.X, self.y, self.device = X, y, device
        self.sample_weight = sample_weight
        self.n_samples, self.n_features = X.shape
        self.n_outputs = y.shape[1]

    @classmethod
    def from_arrays(cls, X, y, device: Device, dtype: str,
                    sample_weight=None) -> ArraySource:
        """Move validated ``X``, ``y`` (and weights) onto ``device`` in ``dtype``; ``y`` 2-D.

        Raises
        ------
        ValueError
            When a value that was finite is not finite in ``dtype`` (above
            about 3.4e38 in float32): it overflowed the cast.
        """
        xp = device.xp
        # An overflowing cast is reported below, once and clearly.
        with np.errstate(over="ignore", invalid="ignore"):
            X, y = move(X, device, dtype), move(y, device, dtype)
        if y.ndim == 1:
            y = xp.reshape(y, (-1, 1))
        flags = to_numpy(xp.stack([xp.all(xp.isfinite(X)), xp.all(xp.isfinite(y))]))
        for name, ok in zip(("X", "y"), flags):
            if not ok:
                raise ValueError(
                    f"{name} holds values too large for {dtype} (they overflow to "
                    f"infinity); pass dtype='float64' (on the command line: --dtype "
                    f"float64), or rescale {name}.")
        if sample_weight is not None:
            sample_weight = move(sample_weight, device, dtype)
        return cls(X, y, device, sample_weight)

    def batches(self, rng, batch_size: int, shuffle: bool) -> list:
        """This epoch's batches, as ``(start, stop, order)`` triples.

        ``order`` is a device array of row indices (a shuffled epoch), or
        ``None`` for rows in their stored order. A single full batch is never
        shuffled: a permutation would change nothing but the summation order.
        """
        n = self.n_samples
        order = None
        if shuffle and batch_size < n:
            order = self.device.asarray(rng.permutation(n))
        return [(start, min(start + batch_size, n), order) for start in range(0, n, batch_size)]

    def batch_rows(self, batch) -> int:
        """Rows in one batch."""
        return batch[1] - batch[0]

    def epoch_rows(self, batches):
        """Each batch's ``(X, y, w)``, in order, on the device (``w`` None without weights).

        One batch at a time, as the trainer asks (views for rows in stored
        order); on a device that compiles (JAX), every batch of the epoch in
        one compiled call, since there each separate slice would cost a
        dispatch as long as a training step.
        """
        if not self.device.compiles or not batches:
            return (self.rows(batch) for batch in batches)
        bounds = tuple((start, stop) for start, stop, _ in batches)
        order = batches[0][2]
        select = _compiled_selection(self.device, bounds, order is not None)
        return select(self.X, self.y, self.sample_weight, order)

    def rows(self, batch):
        """The batch's ``(X, y, w)``, on the device (views for rows in stored order)."""
        start, stop, order = batch
        w = self.sample_weight
        if order is None:
            if stop - start == self.n_samples:
                return self.X, self.y, w
            return (self.X[start:stop, ...], self.y[start:stop, ...],
                    None if w is None else w[start:stop])
        xp = self.device.xp
        rows = order[start:stop]
        return (xp.take(self.X, rows, axis=0), xp.take(self.y, rows, axis=0),
                None if w is None else xp.take(w, rows, axis=0))

    def loss_and_grads(self, batch, coefs, intercepts, network: Network):
        """The batch's loss and gradients: ``(loss, grads, total)`` (see the module docs)."""
        X, y, w = self.rows(batch)
        return rows_loss_and_grads(X, y, w, coefs, intercepts, network)

    def evaluate(self, coefs, intercepts, network: Network):
        """Loss and R² of the network on all rows, as 0-d arrays (no host read)."""
        y_pred = kernels.predict(self.X, coefs, intercepts, network.activation,
                                 network.loss.out_activation)
        w = self.sample_weight
        return (network.loss.value(self.y, y_pred, w), r2_score(self.y, y_pred, w))

    def split(self, fraction: float, rng):
        """``(train, validation)`` sources: ``ceil(fraction * n)`` rows held out at random."""
        train_rows, val_rows = validation_split(self.n_samples, fraction, rng)
        xp = self.device.xp
        parts = []
        w = self.sample_weight
        for rows in (train_rows, val_rows):
            rows = self.device.asarray(rows)
            parts.append(ArraySource(xp.take(self.X, rows, axis=0),
                                     xp.take(self.y, rows, axis=0), self.device,
                                     None if w is None else xp.take(w, rows, axis=0)))
        return tuple(parts)


@functools.lru_cache(maxsize=32)
def _compiled_selection(device: Device, bounds: tuple, shuffled: bool):
    """``(X, y, w, order) -> [(X_b, y_b, w_b), ...]`` for these batch bounds, compiled."""
    return device.compile(selection_function(device, bounds, shuffled))


def selection_function(device: Device, bounds: tuple, shuffled: bool):
    """``(X, y, w, order) -> [(X_b, y_b, w_b), ...]`` for these batch bounds, as a pure
    function (what :meth:`ArraySource.epoch_rows` compiles, and a compiled epoch traces)."""

    def select(X, y, w, order):
        xp = device.xp
        out = []
        for start, stop in bounds:
            if shuffled:
                rows = order[start:stop]
                out.append((xp.take(X, rows, axis=0), xp.take(y, rows, axis=0),
                            None if w is None else xp.take(w, rows, axis=0)))
            else:
                out.append((X[start:stop, ...], y[start:stop, ...],
                            None if w is None else w[start:stop]))
        return out

    return select
