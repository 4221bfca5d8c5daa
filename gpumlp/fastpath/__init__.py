"""Backend-specific fast paths for one training step, behind one dispatch.

The generic kernels (:mod:`gpumlp.kernels`) are the reference. For the common
case of one hidden layer, :func:`select` may return a faster function with the
generic contract of :func:`gpumlp.kernels.loss_and_grads`::

    loss, coef_grads, intercept_grads = step(X, y, coefs, intercepts, n_total=None)

(the data term only; the trainer adds the L2 penalty with
:func:`gpumlp.kernels.add_l2`). One module per backend, named by the
device's :attr:`~gpumlp.devices.Device.fastpath`:

* :mod:`gpumlp.fastpath.numpy`: rows in cache-sized chunks on every core.
* :mod:`gpumlp.fastpath.cupy`: fused CUDA kernels.

A fast path serves only the activations whose record
(:mod:`gpumlp.activations`) carries the form it needs, and only the squared
error without row weights; it declines the rest (other losses,
``sample_weight``), so the generic kernels run. ``tests/test_agreement.py`` and
``tests/test_fastpath.py`` compare each fast path with the generic one.

The switch
----------
One setting decides whether fast paths run: its default comes from the
environment variable ``GPUMLP_FASTPATH`` (``0``, ``false`` or ``no`` turn
them off), read at import; :func:`disabled` turns them off within a block;
and :func:`select` takes ``enabled=`` to override both. The trainer reads
the setting once per fit and passes it on explicitly, to Dask workers too.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

import array_api_compat as aac

from ..activations import get_activation
from . import cupy, numpy
from .cupy import cupy_fused_loss_and_grads, cupy_loss_and_grads
from .numpy import numpy_loss_and_grads

__all__ = ["cupy_fused_loss_and_grads", "cupy_loss_and_grads", "disabled", "is_enabled",
           "numpy_loss_and_grads", "select"]

_ENABLED = contextvars.ContextVar(
    "gpumlp_fastpath",
    default=os.environ.get("GPUMLP_FASTPATH", "1").strip().lower() not in ("0", "false", "no"),
)


def is_enabled() -> bool:
    """Whether fast paths run here: ``GPUMLP_FASTPATH``, unless :func:`disabled` is active."""
    return _ENABLED.get()


@contextlib.contextmanager
def disabled():
    """Within this block, :func:`select` offers no fast path (the generic kernels run)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def select(X, n_coefs: int, activation, *, enabled: bool | None = None,
           loss_kind: str = "squared_error", weighted: bool = False):
    """The fast ``loss_and_grads`` for these arrays and network, or ``None``.

    Parameters
    ----------
    X : array
        A batch; its namespace picks the backend.
    n_coefs : int
        Weight matrices in the network (2 for one hidden layer).
    activation : str or Activation
    enabled : bool, optional
        Overrides :func:`is_enabled`.
    loss_kind : str
        The training loss; fast paths serve ``"squared_error"`` only.
    weighted : bool
        Whether the batch has row weights; fast paths decline them.

    Returns
    -------
    callable or None
        ``step(X, y, coefs, intercepts, n_total=None)``; see the module docs.
    """
    if not (is_enabled() if enabled is None else enabled) or n_coefs != 2:
        return None
    if weighted or getattr(loss_kind, "name", loss_kind) != "squared_error":
        return None
    act = get_activation(activation)
    if aac.is_numpy_array(X):
        return numpy.step_for(act)
    if aac.is_cupy_array(X):
        return cupy.step_for(act)
    return None
