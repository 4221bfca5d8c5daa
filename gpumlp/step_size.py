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
2. **Adapt** as training proceeds, :func:`next_learning_rate` (a "bold
   driver" rule): a step whose loss rose is taken back and retried from the
   previous point with the rate times :data:`SHRINK`; a step whose loss fell
   by more than :data:`FALL` (relative) lets the next step grow by
   :data:`GROW`; in between the rate holds. The curvature falls as a sigmoid
   network trains, so growing follows it; a rate grown past ``2 / L`` makes
   the loss rise and is cut at once. (Tolerating small rises does not work:
   on a plateau a rate just past ``2 / L`` raises the loss by a little each
   step, and the stopping rule then ends the fit there.)

Every decision compares two losses read back to the host. "Rose" means by
more than :data:`RISE_EPS` units of the dtype's rounding (``eps``), relative,
so that rounding noise in a loss that has stopped moving is no rise; "fell"
means by more than :data:`FALL`. The rounding differences between backends
(about 1e-15 relative in float64) can flip a decision only when a ratio lies
within that distance of a threshold; the agreement suite checks that the rate
sequence is identical on NumPy and array-api-strict in float64.

Everything here is generic over the array-API namespace of the parameters;
the only host reads are the few Python floats the decisions need.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace

from .devices import to_numpy

__all__ = ["FALL", "GROW", "POWER_ITERATIONS", "RISE_EPS", "SAFETY", "SHRINK",
           "hessian_vector_product", "initial_learning_rate", "largest_curvature",
           "next_learning_rate", "read_floats"]

#: The first rate is ``SAFETY / L``: below the stability limit ``2 / L``.
SAFETY = 1.9
#: Power iterations of the start-up estimate (each costs two gradients).
POWER_ITERATIONS = 8
#: A step whose loss rose by more than this many ``eps`` (relative) is taken back.
RISE_EPS = 64
#: The rate is multiplied by this after a step taken back.
SHRINK = 0.5
#: A step whose loss fell by more than this fraction lets the rate grow...
FALL = 1e-6
#: ... by this factor.
GROW = 1.05
#: The rate used when the curvature estimate is zero or not finite (a flat
#: start); the rule then shrinks it as needed.
FALLBACK = 1.0

Objective = Callable[[list], tuple[Any, list]]


def _dot(a: list, b: list):
    xp = array_namespace(*a)
    return sum(xp.sum(x * y) for x, y in zip(a, b))


def read_floats(*values) -> list[float]:
    """0-d arrays read back to the host as Python floats, in one transfer."""
    xp = array_namespace(*values)
    stacked = xp.stack([xp.reshape(xp.asarray(v), ()) for v in values])
    return [float(v) for v in to_numpy(stacked)]


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
    param_norm, grad_norm = read_floats(xp.sqrt(_dot(params, params)),
                                         xp.sqrt(_dot(grads, grads)))
    if not (grad_norm > 0 and math.isfinite(grad_norm) and math.isfinite(param_norm)):
        return math.nan
    # The step balancing truncation (h**2) and rounding (eps / h) errors.
    h = eps ** (1.0 / 3.0) * (1.0 + param_norm)
    v = [g / grad_norm for g in grads]
    Hv = v
    for _ in range(n_iter):
        Hv = hessian_vector_product(objective, params, v, h)
        norm = xp.sqrt(_dot(Hv, Hv))
        v = [d / norm for d in Hv]
    # After the loop v = Hv_last / |Hv_last|; one more product for the quotient.
    Hv = hessian_vector_product(objective, params, v, h)
    (rayleigh,) = read_floats(_dot(v, Hv))
    return abs(rayleigh)


def initial_learning_rate(curvature: float, safety: float = SAFETY) -> float:
    """``safety / curvature`` to four significant digits; :data:`FALLBACK` without a curvature.

    The rounding makes the rate the same number on every backend: the
    estimate differs between them by rounding (about 1e-12 relative in
    float64, the finite differences amplifying it), and every later rate is
    this one times powers of :data:`GROW` and :data:`SHRINK`.
    """
    if not (curvature > 0 and math.isfinite(curvature)):
        return FALLBACK
    return float(f"{safety / curvature:.4g}")


def next_learning_rate(learning_rate: float, previous_loss: float, loss: float,
                       eps: float) -> tuple[bool, float]:
    """The bold-driver decision after a step moved the loss from ``previous_loss`` to ``loss``.

    Parameters
    ----------
    learning_rate : float
        The rate of the step just taken.
    previous_loss, loss : float
        Host-read losses before and after that step.
    eps : float
        The training dtype's machine epsilon.

    Returns
    -------
    accept : bool
        False when the step must be taken back (the loss rose by more than
        ``RISE_EPS * eps``, relative, or is not finite).
    learning_rate : float
        The rate for the next step: times :data:`SHRINK` after a step taken
        back, times :data:`GROW` after a fall of more than :data:`FALL`,
        else unchanged.
    """
    if not math.isfinite(loss) or loss > previous_loss * (1.0 + RISE_EPS * eps):
        return False, learning_rate * SHRINK
    if loss < previous_loss * (1.0 - FALL):
        return True, learning_rate * GROW
    return True, learning_rate
