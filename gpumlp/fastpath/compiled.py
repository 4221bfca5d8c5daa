"""K epochs of full-batch gradient descent as one compiled program (JAX), from the one step.

On a device that compiles loops (:meth:`gpumlp.devices.Device.compile_blocks`:
JAX), the trainer's pure step (:func:`gpumlp.training.step_function`, wrapped
as one epoch by :func:`gpumlp.training.epoch_function`) runs for a whole
block inside one ``jax.jit`` program: no dispatch per operation or per epoch,
one program call and one host read per block (plus what a validation set
needs, each epoch). The rate of each epoch is an argument, so one compiled
program serves every ``learning_rate_init`` and schedule. It is the same step the
epoch-by-epoch fit compiles, not a second copy of the maths, so the two fits
agree (``tests/test_compiled_blocks.py``).

:class:`CompiledBlocks` has the ``run(params, rates)`` of
:class:`gpumlp.fastpath.graph.GraphBlocks`, so the trainer lays the epochs out
alike (:meth:`gpumlp.training.Trainer._run_block`). Two differences, both for
speed at small sizes, where a JAX dispatch costs as much as an epoch:

* each epoch's parameters are an :class:`EpochParams`, which takes them out
  of the block's stacked output only when first read (the trainer reads those
  of the epoch it stops at, normally the block's last: one dispatch per block,
  not four per epoch; with a validation set, early stopping, or a callback
  that snapshots the model, every epoch's are read, one dispatch each);
* each epoch's loss and flag come back already on the host, as NumPy
  scalars, from one read of the program's output at the end of the block
  (which :func:`gpumlp.devices.read_floats` then takes as they are).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..devices import to_numpy

__all__ = ["MAX_EPOCHS", "MAX_SLOT_ELEMENTS", "CompiledBlocks", "EpochParams", "serves"]

#: Epochs one program may run: the trainer's largest block.
MAX_EPOCHS = 64

#: The most parameter values a block's slots may hold (``MAX_EPOCHS`` times
#: the network's parameters): 128 MiB in float64. A larger network keeps the
#: epoch loop, where a dispatch is small beside its epoch anyway.
MAX_SLOT_ELEMENTS = 2**24


def serves(params: list) -> bool:
    """Whether a block's slots for these parameters stay within :data:`MAX_SLOT_ELEMENTS`."""
    return MAX_EPOCHS * sum(math.prod(p.shape) for p in params) <= MAX_SLOT_ELEMENTS


class EpochParams(Sequence):
    """One epoch's parameters inside a block's stacked output, taken out on first read.

    A sequence (``len``, indexing, slicing, iteration) of the arrays
    ``coefs + intercepts``; it pickles and copies as a plain list.

    Parameters
    ----------
    stacked : list of arrays
        Parameter ``i`` of every epoch of the block, shape ``(slots, *shape_i)``.
    epoch : int
        This epoch's slot.
    take : callable
        ``take(stacked, epoch) -> list of arrays``, compiled.
    """

    def __init__(self, stacked: list, epoch: int, take: Callable):
        self._stacked, self._epoch, self._take = stacked, epoch, take
        self._arrays = None

    def _taken(self) -> list:
        if self._arrays is None:
            self._arrays = list(self._take(self._stacked, self._epoch))
        return self._arrays

    def __getitem__(self, index):
        return self._taken()[index]

    def __len__(self) -> int:
        return len(self._stacked)

    def __reduce__(self):
        return (list, (self._taken(),))


@functools.lru_cache(maxsize=16)
def _compiled_take(device):
    return device.compile(lambda stacked, epoch: [s[epoch] for s in stacked])


class CompiledBlocks:
    """One fit's data and the compiled block program of :meth:`Device.compile_blocks`.

    Parameters
    ----------
    blocks : callable
        From :meth:`gpumlp.devices.Device.compile_blocks`, for ``max_epochs``.
    X : array, shape (n_samples, n_features)
    y : array, shape (n_samples, n_outputs)
    w : array, shape (n_samples,), or None
        The whole training batch, on ``device``.
    device : Device
    max_epochs : int
        The longest block.
    """

    def __init__(self, blocks: Callable, X: Any, y: Any, w: Any, device: Any,
                 max_epochs: int = MAX_EPOCHS):
        self._blocks, self.X, self.y, self.w, self.device = blocks, X, y, w, device
        self.max_epochs = max_epochs
        self._dtype = np.dtype(str(X.dtype).rsplit(".", 1)[-1])
        self._take = _compiled_take(device)
        self._uploaded = (None, None)

    def run(self, params: list, rates: list[float]) -> list[tuple]:
        """``len(rates)`` epochs of full-batch descent from ``params``, in one program call.

        Parameters
        ----------
        params : list of arrays
            ``coefs + intercepts``, the dtype of ``X``.
        rates : list of float
            Each epoch's learning rate (at most ``max_epochs``), cast to the
            dtype of ``X`` as the epoch-by-epoch step casts its rate.

        Returns
        -------
        list of (params, loss, finite)
            Per epoch: the new parameters (an :class:`EpochParams`), the loss
            at the old ones (penalty included) and 1 or 0 (the new parameters'
            sum is finite, :func:`gpumlp.training._all_finite`), as NumPy
            scalars, read back in one transfer.
        """
        epochs = len(rates)
        if not 1 <= epochs <= self.max_epochs:
            raise ValueError(f"a block holds 1 to {self.max_epochs} epochs, got {epochs}")
        wanted = tuple(float(r) for r in rates)
        if self._uploaded[0] != wanted:
            padded = np.zeros(self.max_epochs, dtype=self._dtype)
            padded[:epochs] = wanted
            self._uploaded = (wanted, self.device.asarray(padded))
        stacked, scalars = self._blocks(list(params), self._uploaded[1], epochs,
                                        self.X, self.y, self.w)
        scalars = to_numpy(scalars)
        return [(EpochParams(stacked, j, self._take), scalars[0, j], scalars[1, j])
                for j in range(epochs)]
