"""K epochs of full-batch gradient descent as one CUDA graph, from the tile kernels.

**Off by default, and never run on a GPU yet** (see :mod:`gpumlp.fastpath.tiles`).

For plain gradient descent on a full batch (``solver="gd"`` with a numeric
``learning_rate_init``, or ``"sgd"`` without momentum on one batch), an
epoch is exactly two kernels of :mod:`gpumlp.fastpath.tiles`: the tile
kernel, and the reduce kernel in its update mode, which writes the new
parameters, the epoch's loss (at the old parameters, penalty included) and a
finiteness flag. :class:`GraphBlocks` captures K such epochs (2K launches,
no cuBLAS call: CuPy turns cuBLAS off during stream capture, cupy/cupy#6290)
into one ``cupy.cuda.Graph`` over static buffers, once per K, and replays it
for each block of the trainer (:meth:`gpumlp.training.Trainer._block`).
Each epoch writes its parameters to its own slot, so the trainer keeps every
epoch's parameters and its stopping rule stays exact. The rates are read
from a device buffer, so one graph serves every learning-rate schedule.

A replay, for a block of K epochs: the parameters are copied into the graph's
input (four device copies), the rates uploaded when they changed, the flags
set, the graph launched on the current stream, and its K slots and scalars
copied out into fresh arrays (two copies), so nothing the trainer keeps is
overwritten by the next replay. Nothing is read back to the host.

The finiteness flag says whether every new parameter is finite; the generic
path's (:func:`gpumlp.training._all_finite`) whether their sum is, which also
trips when finite weights near the dtype's largest value overflow their sum.
Either way that is divergence; the two may name different epochs only there.
:class:`gpumlp.fastpath.tiles.ModelBlocks` is its NumPy model, with the
same ``run``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..activations import Activation
from . import tiles
from .tiles import TilePlan

__all__ = ["MAX_EPOCHS", "GraphBlocks"]

#: Epochs one graph may hold: the trainer's largest block.
MAX_EPOCHS = 64


class GraphBlocks:
    """Static buffers and one captured graph per block length, for one fit's data.

    Parameters
    ----------
    X : cupy.ndarray, shape (n_samples, n_features)
        C-contiguous; the graph reads it in place, so it must not change.
    y : cupy.ndarray, shape (n_samples, n_outputs)
        Likewise.
    activation : str or Activation
        One with CUDA forms.
    alpha : float
        L2 penalty strength.
    plan : TilePlan
        From :func:`gpumlp.fastpath.tiles.plan_for`.
    max_epochs : int
        The longest block.
    """

    def __init__(self, X: Any, y: Any, activation: str | Activation, alpha: float,
                 plan: TilePlan, max_epochs: int = MAX_EPOCHS):
        import cupy

        self.X, self.y, self.alpha, self.plan = X, y, float(alpha), plan
        self.max_epochs = max_epochs
        dtype = self.dtype = X.dtype
        self._kernels = tiles._kernels(activation, plan, dtype)
        n, k = y.shape
        scale = tiles._scale(n, k)
        self._scale = scale
        # Scalars as the generic step rounds them: Python floats cast to the dtype.
        self._l2 = dtype.type(self.alpha * scale)
        self._penalty_scale = dtype.type((0.5 * self.alpha) * scale)
        self._entries = dtype.type(n * k)
        self._start = cupy.zeros(plan.n_grads, dtype=dtype)
        self._slots = cupy.zeros((max_epochs, plan.n_grads), dtype=dtype)
        self._scalars = cupy.zeros((2, max_epochs), dtype=dtype)   # loss, finite
        self._rates = cupy.zeros(max_epochs, dtype=dtype)
        self._partial = cupy.zeros((plan.groups, plan.width), dtype=dtype)
        self._uploaded = None
        self._graphs = {}
        self._stream = cupy.cuda.Stream(non_blocking=True)
        # Load both kernels before any capture (lazy module loading inside a
        # capture fails on older drivers); this epoch's results are discarded.
        self._launch_epoch(0)

    def _launch_epoch(self, j):
        """Epoch ``j``'s two kernels, from slot ``j - 1`` (or the input) to slot ``j``."""
        import cupy

        plan = self.plan
        source = self._start if j == 0 else self._slots[j - 1]
        params = tiles._split(source, plan)
        has_l2 = np.int32(bool(self.alpha))
        tiles.launch_step(self._kernels, plan, self.X, self.y, params, self._partial,
                          scale=self._scale, penalty=bool(self.alpha))
        self._kernels[1](
            (tiles.reduce_blocks(plan),), (tiles.THREADS,),
            (self._partial, cupy.int64(plan.groups), source, self._slots[j], self._rates[j:],
             np.int32(1), has_l2, self._l2, self._entries, self._penalty_scale,
             self._scalars[0, j:], self._scalars[1, j:]))

    def _graph(self, epochs):
        """The captured graph of ``epochs`` epochs (captured on first use)."""
        if epochs not in self._graphs:
            stream = self._stream
            with stream:
                stream.begin_capture()
                try:
                    for j in range(epochs):
                        self._launch_epoch(j)
                except BaseException:
                    try:
                        stream.end_capture()
                    except Exception:   # the capture was invalidated: report the first error
                        pass
                    raise
                self._graphs[epochs] = stream.end_capture()
        return self._graphs[epochs]

    def run(self, params: list, rates: list[float]) -> list[tuple]:
        """``len(rates)`` epochs of full-batch descent from ``params``, in one replay.

        Parameters
        ----------
        params : list of cupy.ndarray
            ``[W1, W2, b1, b2]``, the dtype of ``X``.
        rates : list of float
            Each epoch's learning rate (at most ``max_epochs``).

        Returns
        -------
        list of (params, loss, finite)
            Per epoch: the new parameters (views of one fresh array), the loss
            at the old ones (penalty included) and 1 or 0 (every new
            parameter finite), as 0-d arrays. No host read.
        """
        import cupy

        epochs = len(rates)
        if not 1 <= epochs <= self.max_epochs:
            raise ValueError(f"a block holds 1 to {self.max_epochs} epochs, got {epochs}")
        offset = 0
        for p in params:
            self._start[offset:offset + p.size] = p.ravel()
            offset += p.size
        wanted = tuple(float(r) for r in rates)
        if self._uploaded is None or self._uploaded[:epochs] != wanted:
            self._rates[:epochs] = cupy.asarray(np.asarray(wanted, dtype=self.dtype))
            self._uploaded = wanted
        self._scalars[1, :epochs] = 1
        self._graph(epochs).launch()
        slots = self._slots[:epochs].copy()
        scalars = self._scalars[:, :epochs].copy()
        return [(tiles._split(slots[j], self.plan), scalars[0, j], scalars[1, j])
                for j in range(epochs)]
