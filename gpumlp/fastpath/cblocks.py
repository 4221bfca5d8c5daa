"""Whole blocks of full-batch gradient descent on the CPU, in C (issue 23).

For plain gradient descent on one full batch (``solver="gd"`` with a numeric
``learning_rate_init``, or ``"sgd"`` without momentum on one batch) of a
one-hidden-layer network with the squared error and no row weights, on NumPy
arrays, the optional C extension ``gpumlp.fastpath._cblocks`` runs a whole
block of the trainer's epochs (up to :data:`MAX_EPOCHS`) in one call, with
the GIL released: per block of 64 rows, ``z1 = X W1 + b1`` vectorised over
the hidden units, the activation (its own vectorisable ``tanh``; see
``_cblocks_kernel.h``), the output, the residual and every gradient sum,
while the rows' activations stay in the L1 cache; then the L2 term and the
step ``p - rate * g``. It removes what the NumPy step spends at small and
medium sizes: about 30 NumPy calls per chunk and the passes over the ``n x
h`` activations in between (``scripts/PERF_NOTES.md``).

:class:`CBlocks` has the ``run(params, rates)`` of
:class:`gpumlp.fastpath.graph.GraphBlocks` and
:class:`gpumlp.fastpath.compiled.CompiledBlocks`: every epoch's parameters,
its loss at the old parameters (penalty included) and a finiteness flag
(the new parameters' sum is finite, as :func:`gpumlp.training._all_finite`),
so the trainer's stopping rule stays exact. Its sums run in another order
than the generic kernels' (each 64-row block's sums, then the blocks'), and
its ``tanh`` is its own, within a few units in the last place of NumPy's; it
agrees with the generic path within the agreement suite's tolerances
(``tests/test_cblocks.py``).

Instruction sets
----------------
The kernel is compiled for AVX-512, AVX2 with FMA and baseline x86-64 (with
gcc on x86-64; elsewhere the baseline only), and the widest one the CPU
runs is used. The environment variable ``GPUMLP_SIMD``, read at import (or
:func:`simd` within a block), chooses otherwise: ``avx512``, ``avx2`` or
``baseline`` force that one (an error at the first fit if this CPU cannot
run it, or the extension is not built), ``none`` turns the C path off (the
NumPy fast path runs, as where the extension was never built), and
``auto`` or unset is the default. That is how the AVX2 code is measured on
an AVX-512 machine.

Where it runs
-------------
Where the extension is not built (no compiler at install), the NumPy fast
path runs instead, silently: the extension is optional. ``import gpumlp``
never imports it; the first fit that could use it does. It runs only where
it is faster than the NumPy fast path, which is decided by the work of one
epoch, ``n * h * (f + k)``, against a line measured on this CPU by
:func:`calibrate` (``gpumlp calibrate``) where it was run, else
:data:`MAX_WORK` (see there for the measurements behind it), or set by
``GPUMLP_CBLOCKS_MAX_WORK`` (:mod:`gpumlp.fastpath.calibration`), and with
the fast paths on (``GPUMLP_FASTPATH``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..activations import Activation
from ..kernels import output_delta_scale
from . import calibration

__all__ = ["ACTIVATION_CODES", "ISAS", "LADDER", "MAX_EPOCHS", "MAX_WORK", "CBlocks",
           "available", "blocks_for", "calibrate", "chosen_isa", "simd"]

#: Epochs one call may run: the trainer's largest block.
MAX_EPOCHS = 64

#: The kernel's code for each activation it serves.
ACTIVATION_CODES = {"sigmoid": 0, "tanh": 1, "relu": 2, "identity": 3}

#: The instruction sets the kernel is compiled for, widest first.
ISAS = ("avx512", "avx2", "baseline")

#: The largest epoch, ``n * h * (f + k)``, that the C blocks take; above it
#: the NumPy fast path, whose BLAS products scale better on many cores.
#: From ``scripts/bench_cblocks.py`` on the project's 2-core AMD EPYC (Zen 4,
#: AVX-512), natively and as the AVX2 stand-in: the one-thread kernel took
#: 0.5-0.6 of the NumPy path's time up to 2**27 and 0.7-0.9 above, on a
#: loaded machine where the NumPy path's second thread rarely had a core;
#: quiet, that second thread halves the NumPy step at large sizes, so the
#: line is drawn where even that leaves C ahead (``scripts/PERF_NOTES.md``).
#: Re-measured with the kernel's two threads (issue 23's second session, load
#: 6-8): C won at every size from 2**28.6 to 2**32 in all four runs (0.60-0.94
#: of the NumPy time), but it stays here: measured on two cores only, where
#: both paths run two threads; a machine with more cores is calibrated
#: (:func:`calibrate`) or keeps the C blocks to the rows the NumPy path would
#: split over two threads at most (:func:`blocks_for`).
MAX_WORK = 2**27

#: ``GPUMLP_SIMD`` as the environment set it at import.
_SIMD = os.environ.get("GPUMLP_SIMD", "").strip().lower() or "auto"
#: Set within :func:`simd`; None: the environment's.
_SETTING = contextvars.ContextVar("gpumlp_simd", default=None)


@contextlib.contextmanager
def simd(setting: str) -> Iterator[None]:
    """Within this block, the C blocks run as ``GPUMLP_SIMD=setting`` says (module docs)."""
    token = _SETTING.set(setting)
    try:
        yield
    finally:
        _SETTING.reset(token)

_MODULE: list = []


def _module():
    """The extension module, or None where it was not built (imported once)."""
    if not _MODULE:
        try:
            _MODULE.append(importlib.import_module("gpumlp.fastpath._cblocks"))
        except ImportError:
            _MODULE.append(None)
    return _MODULE[0]


def available() -> bool:
    """Whether the C blocks can run here: the extension is built and ``GPUMLP_SIMD`` allows.

    Raises
    ------
    ValueError
        As :func:`chosen_isa`.
    """
    return chosen_isa() is not None


def check_setting(setting: str | None = None) -> str:
    """``GPUMLP_SIMD``'s value, normalised, or ValueError where it is not one it takes.

    Every fit checks it, also one the C blocks would not serve, so that a typo
    is never silently ignored; whether the CPU runs what it names is checked
    where the C blocks are chosen (:func:`chosen_isa`).

    Parameters
    ----------
    setting : str, optional
        By default that of the enclosing :func:`simd` block, else the
        environment's at import.

    Returns
    -------
    str
        One of ``auto``, ``none`` and :data:`ISAS`.

    Raises
    ------
    ValueError
        Naming the variable and the values it takes.
    """
    if setting is None:
        setting = _SETTING.get() or _SIMD
    setting = setting.strip().lower()
    if setting not in ("auto", "none", *ISAS):
        raise ValueError(f"The environment variable GPUMLP_SIMD={setting!r} is not "
                         f"understood; set it to one of auto, none, {', '.join(ISAS)}, "
                         f"or unset it.")
    return setting


def chosen_isa(setting: str | None = None) -> str | None:
    """The instruction set the C blocks run with, or None for no C blocks.

    Parameters
    ----------
    setting : str, optional
        A value of ``GPUMLP_SIMD`` (see the module docs); by default that of
        the enclosing :func:`simd` block, else the environment's at import.

    Raises
    ------
    ValueError
        For an unknown setting, or one that names an instruction set this
        CPU cannot run or a build without the extension.
    """
    setting = check_setting(setting)
    if setting == "none":
        return None
    module = _module()
    if module is None:
        if setting == "auto":
            return None
        raise ValueError(f"GPUMLP_SIMD={setting} asks for the C extension, which is not "
                         f"built here; reinstall gpumlp where a C compiler is found "
                         f"(pip install -e .), or unset GPUMLP_SIMD.")
    runs = module.isas()
    if setting == "auto":
        return runs[0]
    if setting not in runs:
        raise ValueError(f"GPUMLP_SIMD={setting}: this CPU runs only {', '.join(runs)}; "
                         f"choose one of those, or unset GPUMLP_SIMD.")
    return setting


def blocks_for(X: Any, y: Any, h: int, activation: Activation, alpha: float) -> CBlocks | None:
    """A :class:`CBlocks` for this fit, or None where the C blocks do not serve it.

    They serve float32 and float64 NumPy arrays, an activation of
    :data:`ACTIVATION_CODES`, and epochs up to the line
    :func:`gpumlp.fastpath.calibration.max_work` gives (the environment's,
    else this CPU's calibration); where none was set, epochs up to
    :data:`MAX_WORK` whose rows the NumPy path would split over at most
    two threads (the conditions it was measured in); the caller
    has checked the rest (one hidden layer, the squared error, no weights,
    plain full-batch descent, the fast paths on).
    """
    if activation.name not in ACTIVATION_CODES:
        return None
    if X.dtype not in (np.float32, np.float64) or y.dtype != X.dtype:
        return None
    isa = chosen_isa()
    if isa is None:
        return None
    n, f = X.shape
    work, line = n * h * (f + y.shape[1]), calibration.max_work(isa)
    if line is None:
        # The measured default: measured on two cores, it holds where the NumPy
        # path would run no more threads than the kernel's two; on more cores
        # the NumPy path takes the rest, uncalibrated.
        from .numpy import _workers

        if work > MAX_WORK or _workers(n) > 2:
            return None
    elif work > line:
        return None
    return CBlocks(X, y, h, activation, alpha, isa)


class CBlocks:
    """One fit's data, run a block of full-batch descent epochs at a time in C.

    Parameters
    ----------
    X : numpy.ndarray, shape (n_samples, n_features)
    y : numpy.ndarray, shape (n_samples, n_outputs)
        The whole training batch, float32 or float64 alike (copied once if
        not C-contiguous).
    h : int
        Hidden units.
    activation : Activation
        One of :data:`ACTIVATION_CODES`.
    alpha : float
        L2 penalty strength.
    isa : str
        One of the extension's ``isas()``.
    max_epochs : int
        The longest block.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, h: int, activation: Activation,
                 alpha: float, isa: str, max_epochs: int = MAX_EPOCHS):
        self.X, self.y = np.ascontiguousarray(X), np.ascontiguousarray(y)
        self.dtype = X.dtype
        self.isa, self.max_epochs = isa, max_epochs
        n, self._f = X.shape
        self._h, self._k = h, y.shape[1]
        self._code = ACTIVATION_CODES[activation.name]
        # As the generic step takes them (gpumlp.kernels.add_l2): Python floats,
        # rounded to the dtype where they meet the arrays.
        self._scale = output_delta_scale(n, self._k)
        self._l2 = alpha * self._scale
        self._penalty_scale = (0.5 * alpha) * self._scale if alpha else 0.0
        self._module = _module()

    def _split(self, slots: np.ndarray) -> list:
        """``[W1, W2, b1, b2]`` of every epoch, each a view of the slots with the epoch first."""
        f, h, k = self._f, self._h, self._k
        epochs, w2 = len(slots), f * h + h * k
        return [slots[:, :f * h].reshape(epochs, f, h),
                slots[:, f * h:w2].reshape(epochs, h, k),
                slots[:, w2:w2 + h], slots[:, w2 + h:]]

    def run(self, params: list, rates: list[float]) -> list[tuple]:
        """``len(rates)`` epochs of full-batch descent from ``params``, in one call.

        Parameters
        ----------
        params : list of numpy.ndarray
            ``[W1, W2, b1, b2]``, the dtype of ``X``.
        rates : list of float
            Each epoch's learning rate (at most ``max_epochs``), rounded to
            the dtype as the epoch-by-epoch step rounds it.

        Returns
        -------
        list of (params, loss, finite)
            Per epoch: the new parameters (views of one fresh array), the loss
            at the old ones (penalty included) and 1 or 0 (the new
            parameters' sum is finite), as NumPy scalars.
        """
        epochs = len(rates)
        if not 1 <= epochs <= self.max_epochs:
            raise ValueError(f"a block holds 1 to {self.max_epochs} epochs, got {epochs}")
        start = np.concatenate([np.ravel(p) for p in params]).astype(self.dtype, copy=False)
        slots = np.empty((epochs, start.size), self.dtype)
        scalars = np.empty((2, epochs), self.dtype)
        n, f = self.X.shape
        self._module.run_block(
            self.isa, self.X, self.y, start, slots, scalars,
            np.asarray(rates, dtype=self.dtype), n, f, self._h, self._k, epochs, self._code,
            self._l2, self._penalty_scale, self._scale, float(n * self._k))
        W1, W2, b1, b2 = self._split(slots)
        return [([W1[j], W2[j], b1[j], b2[j]], scalars[0, j], scalars[1, j])
                for j in range(epochs)]


#: The sizes (n, f, h) :func:`calibrate` times, in increasing epoch work
#: ``n h (f + 1)``: from 2^19 to 2^30.6.
LADDER = ((1_600, 10, 32), (10_000, 16, 64), (30_000, 32, 64), (100_000, 16, 64),
          (30_000, 32, 128), (100_000, 32, 128), (100_000, 64, 256))


def _epoch_times(n: int, f: int, h: int, isa: str, rounds: int,
                 seconds: float) -> tuple[float, float, float]:
    """Per epoch (s) by the C blocks and by the NumPy fast path, the best of ``rounds``
    interleaved rounds each, and their ratio C / NumPy: full-batch descent,
    float32, sigmoid, one output. Best rounds, not the median of the rounds'
    ratios: on a loaded machine one disturbed round of the C kernel (a barrier
    per epoch waits for a descheduled thread) moved the median past 1 where
    the other runs had C at 0.5-0.7 (``scripts/PERF_NOTES.md``)."""
    import time

    from ..activations import get_activation
    from ..initialization import glorot_uniform
    from .numpy import numpy_loss_and_grads

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, f)).astype(np.float32)
    y = rng.standard_normal((n, 1)).astype(np.float32)
    coefs, intercepts = glorot_uniform([f, h, 1], rng)
    params = [p.astype(np.float32) for p in coefs + intercepts]
    sigmoid = get_activation("sigmoid")
    blocks = CBlocks(X, y, h, sigmoid, 0.0, isa)
    # About `seconds` per timing at 2 GFLOP/s (the work is ~ n h (f + 1) FMAs per pass).
    epochs = int(max(1, min(MAX_EPOCHS, seconds / (2e-9 * n * h * (f + 1) + 1e-5))))

    def c_epochs():
        blocks.run(params, [0.01] * epochs)

    def numpy_epochs():
        p = params
        for _ in range(epochs):
            _, coef_grads, intercept_grads = numpy_loss_and_grads(X, y, p[:2], p[2:], sigmoid)
            p = [w - 0.01 * g for w, g in zip(p, coef_grads + intercept_grads)]

    c_epochs(), numpy_epochs()      # warm: workspaces, threads, pages
    times: dict = {"c": [], "numpy": []}
    for i in range(rounds):
        pair = [("c", c_epochs), ("numpy", numpy_epochs)]
        for name, fn in (pair if i % 2 == 0 else pair[::-1]):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / epochs)
    return min(times["c"]), min(times["numpy"]), min(times["c"]) / min(times["numpy"])


def _load() -> float | None:
    """The one-minute load average, where the system gives one."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def calibrate(ladder=None, rounds: int = 5, seconds: float = 0.2, write: bool = True,
              report=None) -> dict:
    """Measure where the C blocks stop beating the NumPy fast path on this CPU, and keep it.

    Times both paths, interleaved, at each size of ``ladder`` in increasing
    work, stopping at the first where C is not faster; the line is the
    largest work up to which C always won
    (:func:`gpumlp.fastpath.calibration.crossover`). Run it on a quiet
    machine: the NumPy path's threads need their cores, and so does the
    kernel's second thread.

    Parameters
    ----------
    ladder : sequence of (n, f, h), optional
        The sizes, one output each; by default :data:`LADDER`.
    rounds : int
        Interleaved rounds per size (the ratio is of the best rounds).
    seconds : float
        About how long each timing runs.
    write : bool
        Store the result in the per-user calibration file
        (:func:`gpumlp.fastpath.calibration.store`), which every later
        process on this CPU reads.
    report : callable, optional
        Called with each measured row (a dict), as it comes.

    Returns
    -------
    dict
        ``{"key": {...}, "max_work": int, "default": MAX_WORK, "load": float or
        None (the load average when it ended), "date": ...,
        "rows": [{"n", "f", "h", "work", "c_ms", "numpy_ms", "ratio"}, ...],
        "path": str or None}``.

    Raises
    ------
    ValueError
        The C blocks cannot run here (not built, or ``GPUMLP_SIMD=none``).
    """
    import datetime

    isa = chosen_isa()
    if isa is None:
        raise ValueError("The C blocks cannot run here (the extension is not built, or "
                         "GPUMLP_SIMD=none), so there is nothing to calibrate: every fit "
                         "takes the NumPy path.")
    rows = []
    ladder = LADDER if ladder is None else ladder
    for n, f, h in sorted(ladder, key=lambda s: s[0] * s[2] * (s[1] + 1)):
        c, numpy_time, ratio = _epoch_times(n, f, h, isa, rounds, seconds)
        row = {"n": n, "f": f, "h": h, "work": n * h * (f + 1), "c_ms": 1e3 * c,
               "numpy_ms": 1e3 * numpy_time, "ratio": ratio}
        rows.append(row)
        if report is not None:
            report(row)
        if not ratio < 1.0:
            break
    entry = {"key": calibration.cpu_key(isa), "max_work": calibration.crossover(
                 [(r["work"], r["ratio"]) for r in rows]),
             "default": MAX_WORK, "rounds": rounds, "load": _load(),
             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "rows": rows}
    path = calibration.store(entry) if write else None
    return dict(entry, path=None if path is None else str(path))
