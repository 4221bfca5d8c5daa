"""A step size for gradient descent from the loss's curvature: ``learning_rate_init="auto"``.

Why a rule is needed
--------------------
Gradient descent ``p <- p - lr * g`` is stable only while ``lr < 2 / L``,
with ``L`` the largest eigenvalue of the loss's Hessian. For a sigmoid layer
``L`` grows with the width (the activations have mean about 1/2, so the
output weights' curvature is about ``width / 2`` on standardised data):
measured at the start on Friedman #1, ``L`` is about 7 at width 8 and 259 at
width 512, so no single fixed rate suits every network.

What the rule does
------------------
1. **Estimate** ``L`` at the start by power iteration on Hessian-vector
   products, :func:`largest_curvature`. Each product is a central finite
   difference of the gradient, ``H v ~ (g(p + h v) - g(p - h v)) / (2 h)``,
   taken through the same ``objective(params) -> (loss, grads)`` closure the
   solver steps with, so it runs on every backend and, on Dask, uses the
   workers' data-parallel gradient sums. The first step is
   ``lr = 1.9 / L`` (:data:`SAFETY`), to four significant digits.
2. **Adapt** every step, :func:`next_learning_rate`: the next rate is the
   inverse of the curvature measured along the step just taken, the
   Barzilai-Borwein step ``lr = (s . s) / (s . y)``, with ``s = -lr g`` the
   step and ``y`` the change in the gradient across it (``y ~ H s``, so
   ``(s . y) / (s . s)`` is a Rayleigh quotient of the Hessian: the curvature
   is re-estimated at every step, from two gradients already computed).
   Along a direction of high curvature this is a short step; when the step
   lies where the loss is flat it is a long one, well past the ``2 / L``
   that bounds a *fixed* rate.
3. **Try** each step before it is taken (:class:`gpumlp.solvers.AutoGD`),
   with the non-monotone test of Grippo, Lampariello and Lucidi, the usual
   partner of Barzilai-Borwein steps (Raydan's "global BB" method): the
   loss after the step must be below the *highest* loss of the current
   point and the :data:`MEMORY` points accepted before it, by
   :data:`ARMIJO` times ``lr * |g|**2`` (Armijo's sufficient decrease
   against that reference). A step that fails is refused, training stays
   where it was for that epoch, and the next try from the same point has a
   smaller rate, :func:`shrunk_learning_rate`: the minimiser of the
   parabola through the two losses with the known slope ``-|g|**2``, kept
   within :data:`SHRINK` of the failed rate. When ``s . y <= 0`` (the loss
   curves down along the step) the rate holds; it never exceeds
   :data:`MAX_RATE`.
4. **Return the best point**: the loss may rise for a few epochs (never
   above the highest of the last ``MEMORY + 1``, so never above where the
   search began; a call that continues it may begin lower), which lets a
   long step cross a ridge into a lower valley.
   So that a fit never ends on such a rise, the solver keeps the accepted
   point of lowest loss, and a call to ``fit`` or ``partial_fit`` that ends
   (by the stopping rule or ``max_iter``) leaves the weights there
   (:meth:`gpumlp.solvers.AutoGD.end_fit`): the weights returned have the
   lowest training loss the search measured. The search itself stays where
   it stood: a call that continues it (``partial_fit``, a resumed run, from
   the weights the last call left, on rows whose loss there is still the
   one it measured) goes on from that point with its memory, so ``k``
   epochs and ``m`` more are the ``k + m`` of one call. A call on other rows
   or from other weights starts a new search there, keeping the rate.
5. **Stop in two stages.** The stopping rule (``tol``, ``n_iter_no_change``;
   since issue 21 on the decrease the next step expects, a fraction of the
   loss, :func:`remaining_decrease` and :mod:`gpumlp.training`) may fire
   during a long excursion. (Under the former rule, on the loss's fall, a
   rise counted as an epoch without improvement.) The first time it
   fires, the search goes on with the monotone test (the loss no longer
   rises; :meth:`gpumlp.solvers.AutoGD.on_plateau`), which makes steady
   progress along a slowly falling plateau; the next time, it stops.
   Stopping at once ended the CLI's default fit after 34 epochs at a test
   R**2 of 0.70, in an excursion above the plateau at the linear fit's
   loss; in two stages it reaches 0.948 (the monotone rule: 0.947).

   Measured (``scripts/bench_step_size.py``; README, "Step size"): a rule
   that only grew a rate by 5% while the loss fell and halved it when the
   loss rose (a "bold driver") stayed near ``2 / L``, and ended 1.2-2.5x
   above the best fixed rate in 7 of 33 cases; the same Barzilai-Borwein
   steps with a monotone test (the loss never rising) in 2 of 33, one of
   them among the 12 cases of issue 14, where the best fixed rate crosses
   a ridge; with the non-monotone test and the best point returned, in 2
   of the 21 cases beyond those 12 and none of the 12.

Every decision uses three numbers read back to the host in one transfer
(the tried point's loss, ``|g_new|**2`` and ``g . (g_new - g)``, which give
``s . s = lr**2 |g|**2`` and ``s . y = -lr g . (g_new - g)``). A loss within
:data:`RISE_EPS` units of the dtype's rounding (``eps``, relative) of the
required decrease passes, so that rounding noise in a loss that has stopped
moving is no failure. Every rate is rounded to four significant digits, so
the rounding differences between backends (about 1e-15 relative in float64
in one step; a long step of a rise can magnify them for a while, to 1e-9
measured) can change a rate or a decision only when a value lies within that
distance of a rounding or decision boundary; the agreement suite checks that
the rate sequence is identical on NumPy, array-api-strict, PyTorch and JAX in
float64, and the per-fit certificate (:mod:`gpumlp.certificate`) judges a
fit by its own amplification of perturbations.

Everything here is generic over the array-API namespace of the parameters;
the only host reads are the few Python floats the decisions need.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .devices import read_floats
from .kernels import dot

__all__ = ["ARMIJO", "MAX_RATE", "MEMORY", "POWER_ITERATIONS", "RISE_EPS", "SAFETY", "SHRINK",
           "hessian_vector_product", "initial_learning_rate", "largest_curvature",
           "next_learning_rate", "remaining_decrease", "shrunk_learning_rate"]

#: The first rate is ``SAFETY / L``: below the stability limit ``2 / L``.
SAFETY = 1.9
#: Power iterations of the start-up estimate (each costs two gradients).
POWER_ITERATIONS = 8
#: A step must lower the loss by this fraction of ``lr * |g|**2`` (Armijo).
ARMIJO = 1e-4
#: ... up to this many ``eps`` of the loss (relative): rounding noise.
RISE_EPS = 64
#: After a step taken back, the rate shrinks to the minimiser of the quadratic
#: through the two losses and the slope, kept within these fractions of it.
SHRINK = (0.1, 0.5)
#: The non-monotone test compares a step's loss with the highest loss of the
#: current point and this many accepted before it (Grippo-Lampariello-Lucidi;
#: 10 is the value of their paper and of Raydan's global Barzilai-Borwein
#: method, not tuned here). 0 gives the monotone test: the loss never rises.
MEMORY = 10
#: No step is longer than this (a flat stretch gives a huge ``(s . s) / (s . y)``).
MAX_RATE = 1e3
#: The rate used when the curvature estimate is zero or not finite (a flat
#: start); the rule then shrinks it as needed.
FALLBACK = 1.0

Objective = Callable[[list], tuple[Any, list]]


def hessian_vector_product(objective: Objective, params: list, v: list, h: float) -> list:
    """``H v`` by a central difference of the gradient along ``v``.

    Parameters
    ----------
    objective : callable
        ``objective(params) -> (loss, grads)``.
    params : list of arrays
        The point, ``coefs + intercepts``.
    v : list of arrays
        The direction, shaped like ``params``.
    h : float
        The step along ``v``; the error is ``O(h**2)`` from the third
        derivative plus ``O(eps / h)`` from rounding.

    Returns
    -------
    list of arrays
        Shaped like ``params``.
    """
    _, plus = objective([p + h * d for p, d in zip(params, v)])
    _, minus = objective([p - h * d for p, d in zip(params, v)])
    scale = 0.5 / h
    return [scale * (a - b) for a, b in zip(plus, minus)]


def largest_curvature(objective: Objective, params: list, grads: list,
                      n_iter: int = POWER_ITERATIONS) -> float:
    """The largest eigenvalue (in size) of the loss's Hessian at ``params``.

    Power iteration from the gradient's direction, with the Rayleigh quotient
    ``v . H v`` of the last unit vector as the estimate. The vector is
    normalised on the device; the host reads two scalars in all.

    Parameters
    ----------
    objective : callable
        ``objective(params) -> (loss, grads)``.
    params : list of arrays
    grads : list of arrays
        The gradient at ``params`` (the start vector).
    n_iter : int

    Returns
    -------
    float
        ``|lambda_max|``; NaN when the gradient is zero or not finite.
    """
    xp = array_namespace(*params)
    eps = xp.finfo(params[0].dtype).eps
    param_norm, grad_norm = read_floats(xp.sqrt(dot(params, params)),
                                         xp.sqrt(dot(grads, grads)))
    if not (grad_norm > 0 and math.isfinite(grad_norm) and math.isfinite(param_norm)):
        return math.nan
    # The step balancing truncation (h**2) and rounding (eps / h) errors.
    h = eps ** (1.0 / 3.0) * (1.0 + param_norm)
    v = [g / grad_norm for g in grads]
    Hv = v
    for _ in range(n_iter):
        Hv = hessian_vector_product(objective, params, v, h)
        norm = xp.sqrt(dot(Hv, Hv))
        v = [d / norm for d in Hv]
    # After the loop v = Hv_last / |Hv_last|; one more product for the quotient.
    Hv = hessian_vector_product(objective, params, v, h)
    (rayleigh,) = read_floats(dot(v, Hv))
    return abs(rayleigh)


def remaining_decrease(learning_rate: float, grad_sq: float) -> float:
    """The decrease of the loss one step along ``-g`` would make, ``0.5 * lr * |g|**2``.

    Along ``p - t g`` the loss is modelled as ``f - t |g|**2 + 0.5 t**2 c |g|**2``,
    with ``c`` the curvature along ``g``; its minimum, at ``t = 1 / c``, lies
    ``|g|**2 / (2 c)`` below ``f``. The rule's next rate is that ``1 / c``
    (:func:`next_learning_rate`: Barzilai-Borwein after a step taken, the
    parabola's minimiser after one refused), so this is what the next step
    expects to gain. It scales like the loss (``|g|**2`` like its square,
    the rate like its inverse). NaN when a number is not finite.
    """
    value = 0.5 * learning_rate * grad_sq
    return value if math.isfinite(value) else math.nan


def _four_digits(value: float) -> float:
    return float(f"{value:.4g}")


def initial_learning_rate(curvature: float, safety: float = SAFETY) -> float:
    """``safety / curvature`` to four significant digits; :data:`FALLBACK` without a curvature.

    The rounding makes the rate the same number on every backend: the
    estimate differs between them by rounding (about 1e-12 relative in
    float64, the finite differences amplifying it).
    """
    if not (curvature > 0 and math.isfinite(curvature)):
        return FALLBACK
    return _four_digits(min(safety / curvature, MAX_RATE))


def shrunk_learning_rate(learning_rate: float, previous_loss: float,
                         previous_grad_sq: float, loss: float) -> float:
    """The rate to retry a step with, after the step with ``learning_rate`` was taken back.

    Along the step ``p - t g`` the loss is modelled by the parabola with
    value ``previous_loss`` and slope ``-|g|**2`` at ``t = 0`` and value
    ``loss`` at ``t = learning_rate``; its minimiser is
    ``|g|**2 t**2 / (2 (loss - previous_loss + t |g|**2))``. The result is
    kept within ``SHRINK`` (fractions of ``learning_rate``), and is the
    smallest fraction when a number is not finite. Four significant digits.
    """
    low, high = SHRINK
    t, gg = learning_rate, previous_grad_sq
    curvature = 2.0 * (loss - previous_loss + t * gg)
    rate = gg * t * t / curvature if curvature > 0 else math.nan
    if not math.isfinite(rate):
        return _four_digits(low * t)
    return _four_digits(min(max(rate, low * t), high * t))


def next_learning_rate(learning_rate: float, previous_loss: float, previous_grad_sq: float,
                       loss: float, ss: float, sy: float, eps: float,
                       reference_loss: float | None = None) -> tuple[bool, float]:
    """Accept or take back the step just taken, and the rate of the next one.

    Parameters
    ----------
    learning_rate : float
        The rate of the step just taken, from the previous point.
    previous_loss, previous_grad_sq : float
        The loss and ``|g|**2`` at the previous point (host-read).
    loss : float
        The loss after the step.
    ss, sy : float
        ``s . s`` and ``s . y`` for that step: ``s = -learning_rate g`` the
        step, ``y`` the change in the gradient across it.
    eps : float
        The training dtype's machine epsilon.
    reference_loss : float, optional
        The loss the step must fall below (by Armijo's margin): the highest
        loss of the last points accepted, for the non-monotone test (see
        :data:`MEMORY`). Default, or when lower: ``previous_loss`` (the
        monotone test).

    Returns
    -------
    accept : bool
        Whether the step lowered the loss enough below ``reference_loss``
        (Armijo, up to rounding noise); False also for a loss that is not
        finite.
    learning_rate : float
        For a step accepted, ``ss / sy`` (the inverse curvature along the
        step; the same rate when ``sy <= 0``), at most :data:`MAX_RATE`; for
        a step taken back, :func:`shrunk_learning_rate`. Four significant
        digits.
    """
    decrease = ARMIJO * learning_rate * previous_grad_sq
    if not math.isfinite(decrease):
        decrease = 0.0
    reference = previous_loss if reference_loss is None \
        else max(previous_loss, reference_loss)
    bound = reference - decrease + RISE_EPS * eps * abs(reference)
    if not (math.isfinite(loss) and loss <= bound):
        return False, shrunk_learning_rate(learning_rate, previous_loss, previous_grad_sq,
                                           loss)
    rate = ss / sy if sy > 0 else math.nan
    if not rate > 0:       # the loss curves down along the step, or no step: hold
        return True, learning_rate
    return True, _four_digits(min(rate, MAX_RATE))
