"""Backend-specific fast paths for one training step, behind one dispatch.

The generic kernels (:mod:`gpumlp.kernels`) are the reference. For the common
case of one hidden layer, :func:`select` may return a faster function with the
generic contract of :func:`gpumlp.kernels.loss_and_grads`::

    loss, coef_grads, intercept_grads = step(X, y, coefs, intercepts, n_total=None)

(the data term only; the trainer adds the L2 penalty with
:func:`gpumlp.kernels.add_l2`). One module per backend, named by the
device's :attr:`~gpumlp.devices.Device.fastpath`:

* :mod:`gpumlp.fastpath.numpy`: rows in cache-sized chunks on every core.
* :mod:`gpumlp.fastpath.cupy`: fused CUDA kernels; when opted in (below),
  at small sizes the two tile kernels of :mod:`gpumlp.fastpath.tiles`.

Beside the step, :func:`select_blocks` may return a runner of whole blocks
of full-batch gradient-descent epochs, which the trainer uses in place of
its epoch loop: on NumPy, the optional C extension
(:mod:`gpumlp.fastpath.cblocks`: one call per block, where it is built and
faster than the NumPy step); on CuPy when opted in,
:mod:`gpumlp.fastpath.graph` (one CUDA graph per block).
On a device that compiles loops (JAX), the trainer instead compiles its own
step into whole blocks (:mod:`gpumlp.fastpath.compiled`, through
:meth:`gpumlp.devices.Device.compile_blocks`): the same maths, no fast-path
form of its own, on unless the switch below turns the fast paths off.

A fast path serves only the activations whose record
(:mod:`gpumlp.activations`) carries the form it needs, and only the squared
error without row weights; it declines the rest (other losses,
``sample_weight``), so the generic kernels run. ``tests/test_agreement.py`` and
``tests/test_fastpath.py`` compare each fast path with the generic one.

The switch
----------
One setting decides whether fast paths run: its default comes from the
environment variable ``GPUMLP_FASTPATH`` (``0``, ``false``, ``no`` or
``off`` turn them off; ``1``, ``true``, ``yes`` or ``on`` leave them on;
any other value is an error when a fit first asks), read at import;
:func:`disabled` turns them off within a block; and :func:`select` takes
``enabled=`` to override both. The trainer reads
the setting once per fit and passes it on explicitly, to Dask workers too.

The opt-in
----------
The CUDA tile kernels and graphs have been written and compile-checked, but
never run on a GPU, so they are off unless asked for: ``GPUMLP_CUDA_GRAPH=1``
(or ``true``, ``yes``, ``on``; any value but these and ``0``, ``false``, ``no``,
``off`` is an error when a fit first asks) in the environment, read at import;
:func:`with_cuda_graph` within a block; ``cuda_graph=`` for :func:`select`
and :func:`select_blocks`. The trainer reads it once per fit, beside the
switch above (which it needs too), and passes it on; Dask workers never use
these kernels. Even when opted in, they serve only sizes up to
:data:`gpumlp.fastpath.tiles.MAX_ELEMENTS` (``n * h``) whose weights fit in
shared memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import array_api_compat as aac

from ..activations import get_activation
from . import cblocks, cupy, graph, numpy, tiles
from .cupy import cupy_fused_loss_and_grads, cupy_loss_and_grads
from .numpy import numpy_loss_and_grads
from .tiles import tile_loss_and_grads

__all__ = ["check_environment", "cuda_graph_enabled", "cupy_fused_loss_and_grads",
           "cupy_loss_and_grads", "disabled", "is_enabled", "numpy_loss_and_grads", "select",
           "select_blocks", "tile_loss_and_grads", "with_cuda_graph"]

#: The values a switch in the environment takes (any case, spaces ignored);
#: unset or empty means the switch's default.
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(variable: str, default: bool) -> bool | ValueError:
    """The on/off value of an environment variable, or the error that a typo deserves.

    Read at import, where raising would break ``import gpumlp``: an unknown
    value is kept as its error, raised when the switch is first used.
    """
    text = os.environ.get(variable, "").strip().lower()
    if not text:
        return default
    if text in _ON or text in _OFF:
        return text in _ON
    return ValueError(f"The environment variable {variable}={os.environ[variable]!r} is "
                      f"not understood; set it to one of {', '.join(_ON)} (on) or "
                      f"{', '.join(_OFF)} (off), or unset it.")


#: The switches as the environment set them at import (a bool, or the error to raise).
_FROM_ENVIRONMENT = {"fastpath": _switch("GPUMLP_FASTPATH", True),
                     "cuda_graph": _switch("GPUMLP_CUDA_GRAPH", False)}
#: Set within :func:`disabled` and :func:`with_cuda_graph`; None: the environment's.
_ENABLED = contextvars.ContextVar("gpumlp_fastpath", default=None)
_CUDA_GRAPH = contextvars.ContextVar("gpumlp_cuda_graph", default=None)


def _value(var: contextvars.ContextVar, name: str) -> bool:
    value = var.get()
    if value is None:
        value = _FROM_ENVIRONMENT[name]
    if isinstance(value, ValueError):
        raise value
    return value


def check_environment() -> None:
    """Raise for a fast-path environment variable holding a value not understood.

    ``GPUMLP_FASTPATH``, ``GPUMLP_CUDA_GRAPH``, ``GPUMLP_SIMD`` and
    ``GPUMLP_CBLOCKS_MAX_WORK``: every fit checks all four, so that a typo in
    one that this fit does not consult is an error, not a setting silently
    dropped.

    Raises
    ------
    ValueError
        Naming the variable and the values it takes.
    """
    from . import calibration, cblocks

    is_enabled()
    cuda_graph_enabled()
    cblocks.check_setting()
    calibration.check_override()


def is_enabled() -> bool:
    """Whether fast paths run here: ``GPUMLP_FASTPATH``, unless :func:`disabled` is active.

    Raises
    ------
    ValueError
        If ``GPUMLP_FASTPATH`` holds a value other than those of ``_ON`` and ``_OFF``.
    """
    return _value(_ENABLED, "fastpath")


@contextlib.contextmanager
def disabled():
    """Within this block, :func:`select` offers no fast path (the generic kernels run)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def cuda_graph_enabled() -> bool:
    """Whether the CUDA tile kernels and graphs are opted in: ``GPUMLP_CUDA_GRAPH``,
    unless :func:`with_cuda_graph` is active.

    Raises
    ------
    ValueError
        If ``GPUMLP_CUDA_GRAPH`` holds a value other than those of ``_ON`` and ``_OFF``.
    """
    return _value(_CUDA_GRAPH, "cuda_graph")


@contextlib.contextmanager
def with_cuda_graph(enabled: bool = True) -> Iterator[None]:
    """Within this block, opt in to (or, with ``False``, out of) the CUDA tile kernels."""
    token = _CUDA_GRAPH.set(bool(enabled))
    try:
        yield
    finally:
        _CUDA_GRAPH.reset(token)


def select(X, n_coefs: int, activation, *, enabled: bool | None = None,
           cuda_graph: bool | None = None, loss_kind: str = "squared_error",
           weighted: bool = False):
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
    cuda_graph : bool, optional
        Overrides :func:`cuda_graph_enabled`: on CuPy, the tile kernels for
        batches small enough (decided per call, on the batch's shape).
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
        tiled = cuda_graph_enabled() if cuda_graph is None else cuda_graph
        return cupy.step_for(act, tiles=tiled)
    return None


def select_blocks(X, y, n_coefs: int, h: int, activation, alpha: float, *,
                  enabled: bool | None = None, cuda_graph: bool | None = None,
                  loss_kind: str = "squared_error",
                  weighted: bool = False) -> graph.GraphBlocks | cblocks.CBlocks | None:
    """A runner of whole blocks of full-batch gradient-descent epochs, or ``None``.

    On NumPy: :func:`gpumlp.fastpath.cblocks.blocks_for` (the C extension,
    where it is built, serves the activation, and is faster at this size),
    for one hidden layer, the squared error without row weights. On CuPy,
    only when opted in (see the module docs), for one hidden layer
    whose activation has CUDA forms, the squared error without row weights,
    C-contiguous ``X`` and ``y``, and a network that fits the tile kernels
    (:func:`gpumlp.fastpath.tiles.plan_for`, which also applies the size
    threshold). The caller checks that the solver is plain gradient descent
    on the full batch.

    Parameters
    ----------
    X : array, shape (n_samples, n_features)
    y : array, shape (n_samples, n_outputs)
        The whole training batch; the runner reads them in place.
    n_coefs : int
    h : int
        Hidden units.
    activation : str or Activation
    alpha : float
        L2 penalty strength.
    enabled, cuda_graph, loss_kind, weighted
        As for :func:`select`.

    Returns
    -------
    GraphBlocks, CBlocks or None
        Its ``run(params, rates)`` gives each epoch's ``(params, loss,
        finite)``; see :class:`gpumlp.fastpath.graph.GraphBlocks`.

    Raises
    ------
    ValueError
        On NumPy, when ``GPUMLP_SIMD`` asks for what cannot be had
        (:func:`gpumlp.fastpath.cblocks.chosen_isa`).
    """
    if not (is_enabled() if enabled is None else enabled):
        return None
    if n_coefs != 2 or weighted or getattr(loss_kind, "name", loss_kind) != "squared_error":
        return None
    act = get_activation(activation)
    if aac.is_numpy_array(X):
        return cblocks.blocks_for(X, y, h, act, alpha)
    if not (cuda_graph_enabled() if cuda_graph is None else cuda_graph):
        return None
    if not aac.is_cupy_array(X) or cupy.step_for(act) is None:
        return None
    if not (X.flags.c_contiguous and y.flags.c_contiguous):
        return None
    plan = tiles.plan_for(X, y, h)
    if plan is None:
        return None
    return graph.GraphBlocks(X, y, act, alpha, plan)
