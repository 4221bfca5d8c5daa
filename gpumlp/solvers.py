"""Solvers: one class each, owning its hyper-parameters, its state and its update.

A solver is built from explicit hyper-parameters (never from an estimator)
and is immutable; its state (velocities, moments, step count) is a separate
value that :meth:`Solver.init_state` creates and :meth:`Solver.update`
returns anew, so one training step is a pure function of
``(params, state, batch)``::

    state = solver.init_state(params)
    params, state, loss = solver.update(params, state, objective)

``objective(params) -> (loss, grads)`` evaluates the loss (penalty included)
and its gradients on the current batch. First-order solvers call it once;
a solver with a line search may call it again at other points.

The arithmetic itself lives in :mod:`gpumlp.kernels` (``gd_step``,
``momentum_step``, ``adam_step``), pure functions the agreement suite tests
on every backend. Register a new solver in :data:`SOLVERS`.

A state is any value built of ``None``, numbers, arrays, lists, tuples and
dataclass instances (such as :class:`AdamState`). :func:`map_state` walks it
(to move it between devices) and :func:`state_to_arrays` and
:func:`state_from_arrays` turn it into named arrays and a JSON description and
back (for model files, :mod:`gpumlp.io`), so a new solver's state needs no code
of its own there: a dataclass state is found by its class name among the
dataclasses of this module.

Besides the step, the trainer asks a solver two things, both pure:
:meth:`Solver.end_epoch` (after each epoch; the ``"invscaling"`` schedule
lowers the rate there) and :meth:`Solver.on_plateau` (when the loss has not
improved for more than ``n_iter_no_change`` epochs: stop, or for the
``"adaptive"`` schedule divide the rate by 5 and go on). The current learning
rate is therefore part of the state (:class:`SGDState`), so ``partial_fit``
keeps it and a warm-start ``fit`` starts again from ``learning_rate_init``,
as in scikit-learn. :class:`LBFGS` has its own stopping criteria instead, and
says why it stopped through :meth:`Solver.stop_reason`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from array_api_compat import array_namespace, device, is_array_api_obj

from . import kernels, step_size
from .devices import device_of, read_floats, to_numpy

__all__ = ["SCHEDULES", "SOLVERS", "Adam", "AdamState", "AutoGD", "AutoGDState",
           "GradientDescent", "LBFGS", "LBFGSState", "SGD", "SGDState", "Solver", "make_solver",
           "map_state", "plain_numbers", "solver_name", "state_from_arrays", "state_to_arrays"]

Objective = Callable[[list], tuple[Any, list]]


@dataclass(frozen=True)
class Solver:
    """Base class: a solver's hyper-parameters; subclasses add their own.

    Attributes
    ----------
    learning_rate : float
        The step size (``learning_rate_init``).
    HYPER : tuple of str
        The estimator parameters, besides ``learning_rate_init``, this solver
        reads (used by :func:`make_solver`).
    UNSEEN_OVERFLOW : tuple of str
        The fields of its state (lists of arrays) that can cross the training
        dtype's limit while the weights and the loss stay finite; the trainer
        checks them with the weights after each epoch. Others show in the
        weights at once (a velocity is added to them).
    """

    learning_rate: float
    HYPER: ClassVar[tuple[str, ...]] = ()
    UNSEEN_OVERFLOW: ClassVar[tuple[str, ...]] = ()

    def init_state(self, params: list) -> Any:
        """The state before the first step (``None`` for a stateless solver)."""
        return None

    # A subclass may add ``check_state(state)``, raising ValueError for a state
    # it cannot have made; gpumlp.io calls it on a state read from a file.

    def update(self, params: list, state: Any, objective: Objective):
        """One step from ``params``.

        Parameters
        ----------
        params : list of arrays
        state : the value :meth:`init_state` or a previous :meth:`update` returned
        objective : callable
            ``objective(params) -> (loss, grads)`` on the current batch.

        Returns
        -------
        params, state, loss
            The new parameters and state, and the loss at the *old* parameters.
        """
        raise NotImplementedError

    def begin_fit(self, state: Any) -> Any:
        """The state as a call to ``fit`` (or ``partial_fit``) starts (default: as is)."""
        return state

    def end_fit(self, params: list, state: Any) -> tuple[list, Any]:
        """The parameters and state a call to ``fit`` ends with (default: as they are).

        Called once the call has run its epochs or its stopping rule has
        fired; not after an error or an interrupt.
        """
        return params, state

    def end_epoch(self, state: Any, samples_seen: int) -> Any:
        """The state after an epoch, ``samples_seen`` rows into training (default: as is)."""
        return state

    def on_plateau(self, state: Any) -> tuple[Any, bool]:
        """No improvement for more than ``n_iter_no_change`` epochs: ``(state, stop)``.

        By default: stop.
        """
        return state, True

    def plateau_action(self, state: Any) -> str:
        """What :meth:`on_plateau` did when it went on, for ``verbose`` (scikit-learn's words)."""
        return f"Setting learning rate to {state.learning_rate:f}"

    def stop_reason(self, state: Any) -> tuple[str, bool] | None:
        """``(why, converged)`` when the solver has stopped by its own criteria, else ``None``.

        Only solvers with ``uses_stopping_rule = False`` (L-BFGS) stop so.
        """
        return None

    def progress(self, state: Any, loss: float, best_loss: float) -> float | None:
        """An epoch's progress as a fraction of the loss, or ``None``: scikit-learn's rule.

        ``None`` (the default, for ``"sgd"`` and ``"adam"``): the trainer
        counts an epoch as an improvement when ``loss`` is at least ``tol``
        below ``best_loss``, in the units of scikit-learn's loss. A number
        (full-batch descent, ``"gd"``): the epoch improves when it is above
        ``tol``; see :mod:`gpumlp.training`, "The stopping rule for gd".
        """
        return None

    #: Whether the trainer's stopping rule (``tol``, ``n_iter_no_change``) applies.
    uses_stopping_rule: ClassVar[bool] = True

    #: Whether a model file keeps this solver's state, for an exact resume.
    resumable: ClassVar[bool] = True

    #: Whether each step reads the host (a loss, to decide): then the step
    #: cannot be compiled, and epochs gain nothing from running in blocks
    #: between host reads (see :mod:`gpumlp.training`).
    host_reads: ClassVar[bool] = False


#: Learning-rate schedules (scikit-learn's ``learning_rate``) for "gd" and "sgd".
SCHEDULES = ("constant", "invscaling", "adaptive")

#: The "adaptive" schedule stops once the rate is at or below this.
MIN_ADAPTIVE_RATE = 1e-6


def inverse_scaling(rate: float, samples_seen: int, power_t: float) -> float:
    """``rate / (samples_seen + 1) ** power_t``, the ``"invscaling"`` schedule's rate.

    Where the power overflows a float (``power_t=1e10``, or 100 after 10**4
    rows), the rate is computed through logarithms instead, and so underflows
    to 0.0, its correctly rounded value, rather than raising OverflowError.
    """
    try:
        return rate / float(samples_seen + 1) ** power_t
    except OverflowError:
        return math.exp(math.log(rate) - power_t * math.log(samples_seen + 1))


@dataclass(frozen=True)
class SGDState:
    """The current learning rate and, with momentum, the velocities.

    Attributes
    ----------
    learning_rate : float
        The rate the next step takes (the schedule moves it).
    velocities : list of arrays or None
        ``None`` without momentum.
    """

    learning_rate: float
    velocities: list | None = None


@dataclass(frozen=True)
class SGD(Solver):
    """Gradient descent with heavy-ball or Nesterov momentum (scikit-learn's form).

    With ``momentum == 0`` it is plain gradient descent and keeps no
    velocities. The learning rate follows ``schedule``, with scikit-learn's
    meanings:

    * ``"constant"``: ``learning_rate`` throughout;
    * ``"invscaling"``: after each epoch, ``learning_rate / (t + 1) ** power_t``
      with ``t`` the training rows seen so far (over every call);
    * ``"adaptive"``: ``learning_rate`` while the loss improves; each time it
      has not improved by ``tol`` for more than ``n_iter_no_change`` epochs,
      the rate is divided by 5, and training stops only once the rate is at
      or below 1e-6.
    """

    momentum: float = 0.9
    nesterov: bool = True
    schedule: str = "constant"
    power_t: float = 0.5
    HYPER: ClassVar[tuple[str, ...]] = ("momentum", "nesterovs_momentum", "learning_rate",
                                        "power_t")

    def init_state(self, params):
        if not self.momentum:
            return SGDState(self.learning_rate)
        xp = array_namespace(*params)
        return SGDState(self.learning_rate, [xp.zeros_like(p) for p in params])

    def update(self, params, state, objective):
        loss, grads = objective(params)
        rate = state.learning_rate
        if state.velocities is None:
            return kernels.gd_step(params, grads, rate), state, loss
        params, velocities = kernels.momentum_step(
            params, grads, state.velocities, rate, self.momentum, self.nesterov)
        return params, SGDState(rate, velocities), loss

    def end_epoch(self, state, samples_seen):
        if self.schedule != "invscaling":
            return state
        return replace(state, learning_rate=inverse_scaling(self.learning_rate, samples_seen,
                                                            self.power_t))

    def on_plateau(self, state):
        if self.schedule != "adaptive" or state.learning_rate <= MIN_ADAPTIVE_RATE:
            return state, True
        return replace(state, learning_rate=state.learning_rate / 5.0), False


@dataclass(frozen=True)
class GradientDescent(SGD):
    """Plain gradient descent, ``p <- p - lr * g``: the specified algorithm.

    scikit-learn's ``"sgd"`` with one full batch and no momentum; the
    learning-rate schedules apply as they do there (one epoch is one step).
    """

    momentum: float = 0.0
    HYPER: ClassVar[tuple[str, ...]] = ("learning_rate", "power_t")

    def progress(self, state, loss, best_loss):
        """The fall below the best loss so far, as a fraction of the loss (scale-free).

        One epoch is one step, so this is the decrease a step achieved
        relative to the loss that is left (see :mod:`gpumlp.training`).
        """
        return _relative(best_loss - loss, loss)


@dataclass(frozen=True)
class AdamState:
    """Adam's step count and moment estimates."""

    t: int
    first: list
    second: list


@dataclass(frozen=True)
class Adam(Solver):
    """Adam (Kingma and Ba, 2014), with its step count and moments as state.

    Its rate is constant (scikit-learn's Adam ignores ``learning_rate``).
    """

    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    HYPER: ClassVar[tuple[str, ...]] = ("beta_1", "beta_2", "epsilon")
    # The second moment holds squared gradients: in float32 a gradient beyond
    # about 1.8e19 makes it infinite, and the step m / (sqrt(v) + eps) is then
    # 0, a frozen weight. (An infinite gradient makes the first moment, and so
    # the step and the weights, non-finite: seen in the weights.)
    UNSEEN_OVERFLOW: ClassVar[tuple[str, ...]] = ("second",)

    def init_state(self, params):
        xp = array_namespace(*params)
        return AdamState(0, [xp.zeros_like(p) for p in params],
                         [xp.zeros_like(p) for p in params])

    def check_state(self, state: AdamState) -> None:
        """Refuse a state Adam cannot have made (one read from a file, say).

        Raises
        ------
        ValueError
            When a second moment is negative (its square root would be NaN).
        """
        for v in state.second:
            xp = array_namespace(v)
            if bool(xp.any(v < 0)):
                raise ValueError("Adam's second moments hold a negative value")

    def update(self, params, state, objective):
        loss, grads = objective(params)
        t = state.t + 1
        params, first, second = kernels.adam_step(
            params, grads, state.first, state.second, t,
            self.learning_rate, self.beta_1, self.beta_2, self.epsilon)
        return params, AdamState(t, first, second), loss


# ------------------------------------------------------------------ L-BFGS
@dataclass(frozen=True)
class LBFGSState:
    """L-BFGS's memory and where it stands.

    Attributes
    ----------
    steps, changes : lists of lists of arrays
        The last ``memory`` pairs ``s = x_new - x`` and ``y = g_new - g``,
        oldest first; each is a list of arrays shaped like the parameters.
    loss : 0-d array or None
        The loss at the current parameters (``None`` before the first evaluation).
    grads : list of arrays or None
        Its gradients.
    n_fun : int
        Loss evaluations so far.
    stop : str
        ``""`` while running; else why it stopped.
    converged : bool
        Whether it stopped by a convergence criterion.
    step : float
        The step length the last line search chose (a decision the fit
        record keeps).
    """

    steps: list
    changes: list
    loss: Any = None
    grads: list | None = None
    n_fun: int = 0
    stop: str = ""
    converged: bool = False
    #: The last iteration's step length along its direction (NaN before the first).
    step: float = float("nan")
    #: Whether it came from the second search, after the memory was forgotten.
    retried: bool = False
    #: Whether the last iteration kept its curvature pair (:meth:`LBFGS.keeps_pair`).
    kept: bool = False
    #: Fields a model file written before they existed lacks.
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("step", "retried", "kept")


def _axpy(alpha, x, y):
    """``alpha * x + y`` for lists of arrays (``alpha`` a number or 0-d array)."""
    return [alpha * u + v for u, v in zip(x, y)]


def _newer_pair(q, s, y, dot=kernels.dot):
    """The two-loop recursion's first loop at one pair: ``q``, ``rho`` and ``a``.

    ``dot``: :func:`gpumlp.kernels.dot`, or one that rounds otherwise (the
    certificate's rounding samples), for this and the two below.
    """
    rho = 1.0 / dot(y, s)
    a = rho * dot(s, q)
    return _axpy(-a, y, q), rho, a


def _initial_scaling(q, s, y, dot=kernels.dot):
    """``q`` scaled by ``s.y / y.y`` of the newest pair (the initial inverse Hessian)."""
    return [(dot(s, y) / dot(y, y)) * v for v in q]


def _older_pair(q, s, y, rho, a, dot=kernels.dot):
    """The two-loop recursion's second loop at one pair."""
    b = rho * dot(y, q)
    return _axpy(a - b, s, q)


def _negated(q):
    return [-v for v in q]


def _largest(grads):
    """The largest gradient entry's magnitude, a 0-d array."""
    xp = array_namespace(*grads)
    return xp.max(xp.stack([xp.max(xp.abs(g)) for g in grads]))


def _largest_and_slope(grads, direction):
    """:func:`_largest`, and the slope ``g.d`` along ``direction``."""
    return _largest(grads), kernels.dot(grads, direction)


def _curvature_pair(step, direction, grads, old_grads):
    """``s = step d``, ``y = g_new - g``, ``s.y`` and ``y.y``."""
    s = [step * d for d in direction]
    y = [g1 - g0 for g1, g0 in zip(grads, old_grads)]
    return s, y, kernels.dot(s, y), kernels.dot(y, y)


#: L-BFGS's arithmetic on the device, each a pure function of its arrays: on a
#: device that compiles (JAX) each is one compiled program (:func:`_lbfgs_ops`),
#: traced once whatever the memory holds; the two-loop recursion alone is some
#: 400 small operations, each of which would otherwise cost a dispatch and, on
#: its first call per shape, a compilation.
_LBFGS_OPS = {"axpy": _axpy, "dot": kernels.dot, "largest": _largest,
              "largest_and_slope": _largest_and_slope, "curvature_pair": _curvature_pair,
              "newer_pair": _newer_pair, "initial_scaling": _initial_scaling,
              "older_pair": _older_pair, "negated": _negated}


def _two_loop(grads, steps, changes, ops=_LBFGS_OPS):
    """``-H g`` by L-BFGS's two-loop recursion over the pairs ``(steps[i], changes[i])``,
    oldest first (Nocedal and Wright, Algorithm 7.4, initial scaling ``s.y / y.y``).

    ``ops``: :data:`_LBFGS_OPS`, or the same compiled (:func:`_lbfgs_ops`).
    """
    q = list(grads)
    history = list(zip(steps, changes))
    rhos, alphas = [], []
    for s, y in reversed(history):
        q, rho, a = ops["newer_pair"](q, s, y)
        rhos.append(rho)
        alphas.append(a)
    if history:
        q = ops["initial_scaling"](q, *history[-1])
    for (s, y), rho, a in zip(history, reversed(rhos), reversed(alphas)):
        q = ops["older_pair"](q, s, y, rho, a)
    return ops["negated"](q)


@functools.lru_cache(maxsize=16)
def _compiled_lbfgs_ops(where):
    """:data:`_LBFGS_OPS` compiled by the device ``where``."""
    return {name: where.compile(op) for name, op in _LBFGS_OPS.items()}


def _lbfgs_ops(arrays):
    """:data:`_LBFGS_OPS` for the device of ``arrays``: compiled where it compiles."""
    where = device_of(arrays[0])
    return _compiled_lbfgs_ops(where) if where.compiles else _LBFGS_OPS


def _cubic_minimiser(a, fa, da, b, fb, db):
    """The minimiser of the cubic through ``(a, fa, da)`` and ``(b, fb, db)``, or ``None``.

    Nocedal and Wright, equation (3.59).
    """
    if a == b:
        return None
    d1 = da + db - 3.0 * (fa - fb) / (a - b)
    radicand = d1 * d1 - da * db
    if not math.isfinite(radicand) or radicand < 0:
        return None
    d2 = math.copysign(math.sqrt(radicand), b - a)
    denominator = db - da + 2.0 * d2
    if denominator == 0:
        return None
    x = b - (b - a) * (db + d2 - d1) / denominator
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class LBFGS(Solver):
    """Limited-memory BFGS on the full batch, with a strong-Wolfe line search.

    One :meth:`update` is one iteration: a direction from the two-loop
    recursion over the last ``memory`` curvature pairs (Nocedal and Wright,
    Algorithm 7.4, with the initial scaling ``s.y / y.y``), then a line
    search along it that brackets and zooms with safeguarded cubic
    interpolation until the strong Wolfe conditions hold (their Algorithms
    3.5 and 3.6)::

        f(x + a d) <= f(x) + c1 a g.d        |g(x + a d).d| <= c2 |g.d|

    Everything is generic array-API code on the parameters' device; the only
    host reads are, once per loss evaluation, the three scalars the line
    search and the stopping tests need (the loss, the directional derivative
    and the largest gradient entry).

    Near a minimum the loss changes less along a step than its own rounding
    error: a step that improves the point by ``|a g.d| ~ |g|**2 / curvature``
    moves the computed loss by a few units of its last place, up or down, so
    the sufficient-decrease test above becomes a coin toss (on a quadratic of
    condition number 100 in float64, at a gradient of 1e-7, the loss moved by
    +-5e-15 where the step gained 1e-15) and the search ends with no step
    long before the gradient is small. The gradient is still accurate there.
    So, as Hager and Zhang's approximate Wolfe conditions do (SIAM J. Optim.
    16, 2005), a step is also accepted when the slope alone says it
    decreased the loss enough and the computed loss rose by at most its
    rounding band ``noise * eps * |f(x)|``::

        |g(x + a d).d| <= c2 |g.d|,   g(x + a d).d <= (2 c1 - 1) g.d,
        f(x + a d) <= f(x) + noise * eps * |f(x)|

    (the middle condition is sufficient decrease on the quadratic through
    ``f(x)``, ``g.d`` and ``g(x + a d).d``, and the strong-Wolfe curvature
    condition implies it for ``c2 < 1 - 2 c1``). ``eps`` is the loss's
    dtype's; ``noise = 2**12`` puts the band at 9e-13 relative in float64,
    around Hager and Zhang's 1e-6 (4504 eps) and well above the rounding of
    a loss summed over up to 2**12 terms in any order, and at 5e-4 in
    float32.

    It stops, as scikit-learn's L-BFGS-B does, when the largest gradient entry
    is at most ``gtol``, when the loss's relative reduction is at most
    ``ftol``, after ``max_fun`` loss evaluations (not converged), or when the
    line search fails twice in a row (not converged); the trainer stops it
    after ``max_iter`` iterations. ``learning_rate`` is unused.
    """

    max_fun: int = 15000
    gtol: float = 1e-4
    ftol: float = 2.220446049250313e-09   # scikit-learn's: factr 1e7 times float64's eps
    memory: int = 10
    c1: float = 1e-4
    c2: float = 0.9
    max_line_search: int = 20
    noise: float = 2.0 ** 12
    HYPER: ClassVar[tuple[str, ...]] = ("max_fun",)
    uses_stopping_rule: ClassVar[bool] = False
    # Like scikit-learn's, a new fit starts a new memory (there is no
    # partial_fit), so a model file keeps the weights only.
    resumable: ClassVar[bool] = False
    host_reads: ClassVar[bool] = True

    def init_state(self, params):
        return LBFGSState([], [])

    def stop_reason(self, state):
        return (state.stop, state.converged) if state.stop else None

    def _evaluate(self, objective, params, state, direction=None):
        """Loss, gradients and their host scalars at ``params``; one more evaluation."""
        loss, grads = objective(params)
        ops = _lbfgs_ops(grads)
        scalars = [ops["largest"](grads)] if direction is None else \
            list(ops["largest_and_slope"](grads, direction))
        return loss, grads, read_floats(loss, *scalars), replace(state, n_fun=state.n_fun + 1)

    def _direction(self, grads, state):
        """``-H g`` by the two-loop recursion (:func:`_two_loop`)."""
        return _two_loop(grads, state.steps, state.changes, _lbfgs_ops(grads))

    def update(self, params, state, objective):
        if state.stop:
            return params, state, state.loss
        if state.grads is None:
            loss, grads, (f0, largest), state = self._evaluate(objective, params, state)
            state = replace(state, loss=loss, grads=grads)
            if not math.isfinite(f0):
                return params, state, loss
            if largest <= self.gtol:
                return params, replace(state, stop="the largest gradient entry is at most "
                                       "gtol (tol)", converged=True), loss
        loss0, grads0 = state.loss, state.grads
        f0 = read_floats(loss0)[0]
        eps = float(array_namespace(loss0).finfo(loss0.dtype).eps)
        ops = _lbfgs_ops(grads0)
        retried = False
        for _ in range(2):
            direction = self._direction(grads0, state)
            slope = read_floats(ops["dot"](grads0, direction))[0]
            if not slope < 0:
                # Not a descent direction (the memory went stale): steepest descent.
                state = replace(state, steps=[], changes=[])
                direction = ops["negated"](grads0)
                slope = read_floats(ops["dot"](grads0, direction))[0]
            first = 1.0 if state.steps else min(1.0, 1.0 / math.sqrt(-slope))
            found, state = self._line_search(objective, params, direction, f0, slope, first,
                                             state, eps)
            if found is not None:
                break
            # No step taken (step NaN, for the fit record).
            if state.n_fun >= self.max_fun:
                return params, replace(state, stop=f"max_fun ({self.max_fun}) loss "
                                       f"evaluations reached", converged=False,
                                       step=math.nan), loss0
            if not state.steps:
                why = "" if math.isfinite(slope) else (
                    f": the slope along the gradient is beyond {loss0.dtype}'s range (the "
                    f"gradient is too large; lower alpha, or scale X and y)")
                return params, replace(state, stop="the line search found no acceptable "
                                       "step" + why, converged=False, step=math.nan), loss0
            state = replace(state, steps=[], changes=[])  # forget the memory, try once more
            retried = True
        step, loss, grads, f, largest, band = found
        new_params = ops["axpy"](step, direction, params)
        s, y, sy, yy = ops["curvature_pair"](step, direction, grads, grads0)
        sy, yy = read_floats(sy, yy)
        steps, changes = state.steps, state.changes
        kept = self.keeps_pair(sy, yy)
        if kept:
            steps, changes = (steps + [s])[-self.memory:], (changes + [y])[-self.memory:]
        state = replace(state, steps=steps, changes=changes, loss=loss, grads=grads,
                        step=float(step), retried=retried, kept=kept)
        # The budget first, as scikit-learn's L-BFGS-B: an iteration that uses up
        # max_fun stops on it (not converged, a ConvergenceWarning) even when
        # it also meets a convergence test.
        if state.n_fun >= self.max_fun:
            state = replace(state, stop=f"max_fun ({self.max_fun}) loss evaluations reached",
                            converged=False)
        elif largest <= self.gtol:
            state = replace(state, stop="the largest gradient entry is at most gtol (tol)",
                            converged=True)
        elif (f0 - f + band) / max(abs(f0), abs(f), 1.0) <= self.ftol:
            # Where the slope decided, the reduction is known only to within the
            # band: it may be that much larger than the computed one.
            state = replace(state, stop="the relative reduction of the loss is at most ftol",
                            converged=True)
        return new_params, state, loss0

    def keeps_pair(self, sy: float, yy: float) -> bool:
        """Whether the memory keeps the pair ``(s, y)``: only while ``s.y > eps64 y.y``,
        which keeps the inverse Hessian estimate positive definite.

        Its own method, like :meth:`AutoGD.decide`, so that a replay
        (:mod:`gpumlp.certificate`) can impose a recorded decision and check
        the rule's against it.
        """
        return sy > 2.220446049250313e-16 * yy

    def wolfe_tests(self, a, f, d, f0, slope, band) -> tuple[bool, bool, bool]:
        """The line search's tests of a trial step ``a`` with loss ``f`` and slope ``d``:
        sufficient decrease, the strong curvature condition, and the approximate
        Wolfe conditions within the loss's rounding ``band``, where the slope
        decides (see the class). The certificate's replay asks them too."""
        finite = math.isfinite(f)
        sufficient = finite and f <= f0 + self.c1 * a * slope
        curvature = abs(d) <= -self.c2 * slope
        approximate = (finite and f <= f0 + band and curvature
                       and d <= (2.0 * self.c1 - 1.0) * slope)
        return sufficient, curvature, approximate

    def accepts_first(self, a, f, d, f0, slope, band) -> bool:
        """Whether the search takes its first trial ``a`` at once (one evaluation):
        the approximate conditions without sufficient decrease, or sufficient
        decrease with the curvature condition (:meth:`_line_search`)."""
        sufficient, curvature, approximate = self.wolfe_tests(a, f, d, f0, slope, band)
        return (not sufficient and approximate) or (sufficient and curvature)

    def _line_search(self, objective, params, direction, f0, slope, step, state, eps):
        """A step satisfying the strong Wolfe conditions, or ``None``.

        Returns ``(found, state)`` with ``found = (step, loss, grads, f, largest,
        band)``: ``band`` is 0, or the rounding band when the slope decided.
        A step that only decreases the loss enough is accepted when the
        search runs out of evaluations; one within the loss's rounding band
        (``eps``: its dtype's) that meets the approximate Wolfe conditions
        is accepted too (see the class).
        """
        band = self.noise * eps * abs(f0)
        if not (math.isfinite(slope) and math.isfinite(step) and step > 0):
            # The slope g.d overflowed (|g|**2 beyond the dtype: a huge alpha, say),
            # and with it the first step 1/sqrt(-slope) became 0: no step can be
            # judged, and a step of 0 would stop the fit as if converged.
            return None, state

        axpy = _lbfgs_ops(params)["axpy"]

        def at(a, state):
            loss, grads, (f, largest, d), state = self._evaluate(
                objective, axpy(a, direction, params), state, direction)
            return (a, loss, grads, f, largest, d), state

        def sufficient(p):
            return self.wolfe_tests(p[0], p[3], p[5], f0, slope, band)[0]

        def curvature(p):
            return self.wolfe_tests(p[0], p[3], p[5], f0, slope, band)[1]

        def approximately_wolfe(p):
            return self.wolfe_tests(p[0], p[3], p[5], f0, slope, band)[2]

        def budget(state):
            return state.n_fun < self.max_fun

        origin = (0.0, None, None, f0, None, slope)
        previous, lo, hi = origin, None, None
        for i in range(self.max_line_search):
            if not budget(state):
                break
            trial, state = at(step, state)
            if not sufficient(trial) and approximately_wolfe(trial):
                return (*trial[:5], band), state
            if not sufficient(trial) or (i > 0 and trial[3] >= previous[3]):
                lo, hi = previous, trial
                break
            if curvature(trial):
                return (*trial[:5], 0.0), state
            if trial[5] >= 0:
                lo, hi = trial, previous
                break
            previous, step = trial, 2.0 * step
        else:
            return ((*previous[:5], 0.0) if previous[0] > 0 else None), state
        if lo is None:  # out of evaluations while extrapolating
            return ((*previous[:5], 0.0) if previous[0] > 0 else None), state
        # Zoom: lo satisfies sufficient decrease with the lowest loss so far;
        # the minimiser lies between lo and hi.
        for _ in range(self.max_line_search):
            if not budget(state):
                break
            a, b = lo[0], hi[0]
            width = abs(b - a)
            if width <= 1e-12 * max(1.0, abs(a)):
                break
            x = None
            if math.isfinite(hi[3]) and hi[5] is not None and math.isfinite(hi[5]):
                x = _cubic_minimiser(a, lo[3], lo[5], b, hi[3], hi[5])
            low, high = min(a, b) + 0.1 * width, max(a, b) - 0.1 * width
            if x is None or not low <= x <= high:
                x = 0.5 * (a + b)
            trial, state = at(x, state)
            if not sufficient(trial) and approximately_wolfe(trial):
                return (*trial[:5], band), state
            if not sufficient(trial) or trial[3] >= lo[3]:
                hi = trial
            else:
                if curvature(trial):
                    return (*trial[:5], 0.0), state
                if trial[5] * (b - a) >= 0:
                    hi = lo
                lo = trial
        return ((*lo[:5], 0.0) if lo[0] > 0 else None), state


#: Solver name (the estimator's ``solver``) -> class.
SOLVERS: dict[str, type[Solver]] = {"gd": GradientDescent, "sgd": SGD, "adam": Adam,
                                     "lbfgs": LBFGS}

#: Estimator parameter name -> solver field, where they differ.
_FIELD = {"nesterovs_momentum": "nesterov", "learning_rate": "schedule"}


def make_solver(name: str, learning_rate_init: float, params: Mapping[str, Any],
                gradient_scale: float = 1.0) -> Solver:
    """Build the solver ``name`` from explicit hyper-parameters.

    Parameters
    ----------
    name : str
        A key of :data:`SOLVERS`.
    learning_rate_init : float
    params : mapping
        Estimator parameters; only the solver's :attr:`Solver.HYPER` are read
        (and ``tol``, for L-BFGS).
    gradient_scale : float
        Our gradient over scikit-learn's for the same problem (the loss's
        ``factor / n_outputs``, see :mod:`gpumlp.losses`): L-BFGS compares
        the largest gradient entry with ``tol * gradient_scale``, so that
        ``tol`` means what it means in scikit-learn.

    Returns
    -------
    Solver
    """
    try:
        cls = SOLVERS[name]
    except KeyError:
        raise ValueError(f"solver must be one of {tuple(SOLVERS)}, got {name!r}.") from None
    hyper = {_FIELD.get(key, key): _plain(key, params[key]) for key in cls.HYPER}
    if cls is LBFGS:
        hyper["gtol"] = float(params["tol"]) * float(gradient_scale)
    return cls(float(learning_rate_init), **hyper)


def _plain(key, value):
    # Python scalars keep a float32 computation in float32 (see kernels).
    if key == "nesterovs_momentum":
        return bool(value)
    if key == "learning_rate":
        return str(value)
    if key == "max_fun":
        return int(value)
    return float(value)


def solver_name(solver: Solver) -> str:
    """The estimator's ``solver`` name for a solver: its class's :data:`SOLVERS` key,
    or the ``NAME`` a variant declares (``AutoGD`` is ``"gd"`` with an automatic rate)."""
    for name, cls in SOLVERS.items():
        if type(solver) is cls:
            return name
    name = getattr(type(solver), "NAME", None)
    if name in SOLVERS:
        return name
    raise ValueError(f"{type(solver).__name__} is not registered in SOLVERS.")


def _is_array(value) -> bool:
    return is_array_api_obj(value) and not isinstance(value, numbers.Number)


def _is_dataclass_value(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _init_fields(value) -> list[str]:
    return [f.name for f in dataclasses.fields(value) if f.init]


def map_state(state: Any, fn: Callable) -> Any:
    """A solver state with ``fn`` applied to each of its arrays (to move it, say).

    Parameters
    ----------
    state : None, or a value of numbers, arrays, lists, tuples and dataclasses
    fn : callable
        ``fn(array) -> array``.

    Returns
    -------
    A state of the same structure; numbers and ``None`` are kept as they are.
    """
    if _is_array(state):
        return fn(state)
    if isinstance(state, (list, tuple)):
        return type(state)(map_state(v, fn) for v in state)
    if _is_dataclass_value(state):
        return dataclasses.replace(
            state, **{name: map_state(getattr(state, name), fn) for name in _init_fields(state)})
    return state


def plain_numbers(state: Any, like: Any) -> Any:
    """``state`` with each 0-d array that ``like`` holds as a Python number turned into one.

    A compiled step hands its solver state back as arrays (JAX makes a rate
    or a step count a 0-d array); a model file keeps those as the numbers the
    solver's fresh state (``like``, from :meth:`Solver.init_state`) holds.
    Reads those few values back to the host.

    Parameters
    ----------
    state : a solver state
    like : the solver's fresh state, the template

    Returns
    -------
    A state of the same structure.
    """
    if _is_array(state) and isinstance(like, numbers.Real) and not _is_array(like) \
            and not isinstance(like, bool) and math.prod(state.shape) == 1:
        value = float(to_numpy(state).reshape(()))
        return int(value) if isinstance(like, numbers.Integral) else value
    if isinstance(state, (list, tuple)) and isinstance(like, (list, tuple)) \
            and len(state) == len(like):
        return type(state)(plain_numbers(v, t) for v, t in zip(state, like))
    if _is_dataclass_value(state) and type(state) is type(like):
        return dataclasses.replace(state, **{name: plain_numbers(getattr(state, name),
                                                                 getattr(like, name))
                                             for name in _init_fields(state)})
    return state


def state_to_arrays(state: Any) -> tuple[dict[str, Any], dict]:
    """Split a solver state into its arrays and a JSON description of the rest.

    Parameters
    ----------
    state : None, or a value of numbers, arrays, lists, tuples and dataclasses

    Returns
    -------
    arrays : dict of str to array
        The state's arrays, as they are (not moved), named after where they
        sit: ``AdamState.first[0]`` is ``"first_0"``, item 2 of a list state
        is ``"2"``.
    description : dict
        Plain JSON: the structure, the numbers, the dataclasses' names and
        the arrays' names. :func:`state_from_arrays` inverts it.

    Raises
    ------
    TypeError
        For a value of another kind (a string, a dict, an object).
    """
    arrays: dict[str, Any] = {}

    def encode(value, path):
        if value is None:
            return {"type": "none"}
        if isinstance(value, bool):
            return {"type": "bool", "value": value}
        if isinstance(value, str):
            return {"type": "str", "value": value}
        if isinstance(value, numbers.Integral) and not _is_array(value):
            return {"type": "int", "value": int(value)}
        if isinstance(value, numbers.Real) and not _is_array(value):
            return {"type": "float", "value": float(value)}
        if _is_array(value):
            name = "_".join(path) or "value"
            while name in arrays:
                name += "_"
            arrays[name] = value
            return {"type": "array", "name": name}
        if isinstance(value, (list, tuple)):
            return {"type": type(value).__name__,
                    "items": [encode(v, [*path, str(i)]) for i, v in enumerate(value)]}
        if _is_dataclass_value(value):
            return {"type": "dataclass", "class": type(value).__name__,
                    "fields": {name: encode(getattr(value, name), [*path, name])
                               for name in _init_fields(value)}}
        raise TypeError(f"a solver state holds only None, numbers, strings, arrays, lists, "
                        f"tuples and dataclasses, not {type(value).__name__}")

    return arrays, encode(state, [])


def _state_class(name: str) -> type:
    """A dataclass of this module, by name (a state's class); never a solver."""
    cls = globals().get(name)
    if isinstance(cls, type) and dataclasses.is_dataclass(cls) and not issubclass(cls, Solver):
        return cls
    raise ValueError(f"unknown solver-state class {name!r:.40}")


#: ``like`` when a state is not checked against a template.
_UNCHECKED = object()


def _scalar_kind(value) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, numbers.Integral) and not _is_array(value):
        return "int"
    if isinstance(value, numbers.Real) and not _is_array(value):
        return "float"
    return None


def state_from_arrays(description: Any, arrays: Mapping[str, Any],
                      like: Any = _UNCHECKED) -> Any:
    """The solver state :func:`state_to_arrays` described, checked against a template.

    Parameters
    ----------
    description : dict
        The description :func:`state_to_arrays` returned (untrusted: from a file).
    arrays : mapping of str to array
        The arrays it names; each must be named exactly once.
    like : state, optional
        A state of the expected structure, such as ``solver.init_state(params)``
        (``None`` for a stateless solver). The result must match it: the same
        dataclasses, lists of the same lengths (an empty list in ``like``
        allows any length, for histories that grow, unchecked below), arrays
        of the same shapes and dtypes, numbers of the same kinds.

    Returns
    -------
    state

    Raises
    ------
    ValueError
        When the description is malformed, names a missing or an unused
        array, holds a negative count, or does not match ``like``.
    """
    used: set[str] = set()

    def mismatch(what, like):
        return ValueError(f"the state holds {what} where this solver keeps "
                          f"{type(like).__name__}")

    def decode(node, like):
        checked = like is not _UNCHECKED
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            raise ValueError(f"malformed state description {node!r:.80}")
        kind = node["type"]
        if kind == "none":
            if checked and like is not None:
                raise mismatch("None", like)
            return None
        if kind == "str":
            value = node.get("value")
            if not isinstance(value, str) or len(value) > 1000:
                raise ValueError(f"a state str is {value!r:.80}")
            if checked and not isinstance(like, str):
                raise mismatch("a str", like)
            return value
        if kind in ("bool", "int", "float"):
            value = node.get("value")
            if _scalar_kind(value) != kind and not (kind == "float"
                                                    and _scalar_kind(value) == "int"):
                raise ValueError(f"a state {kind} is {value!r:.80}")
            if kind == "int" and value < 0:
                raise ValueError(f"a state count is negative ({value})")
            if checked and _scalar_kind(like) != kind:
                raise mismatch(f"a {kind}", like)
            return float(value) if kind == "float" else value
        if kind == "array":
            name = node.get("name")
            if not isinstance(name, str) or name not in arrays:
                raise ValueError(f"the state names an array {name!r:.80} that is not there")
            if name in used:
                raise ValueError(f"the state names the array {name!r} twice")
            used.add(name)
            value = arrays[name]
            if checked:
                if not _is_array(like):
                    raise mismatch("an array", like)
                if tuple(value.shape) != tuple(like.shape) or value.dtype != like.dtype:
                    raise ValueError(
                        f"state array {name!r} has shape {tuple(value.shape)} and dtype "
                        f"{value.dtype}, where this solver keeps {tuple(like.shape)} and "
                        f"{like.dtype}")
            return value
        if kind in ("list", "tuple"):
            items = node.get("items")
            if not isinstance(items, list):
                raise ValueError(f"a state {kind} has no items")
            if checked and type(like).__name__ != kind:
                raise mismatch(f"a {kind}", like)
            if checked and len(like) and len(items) != len(like):
                raise ValueError(f"a state {kind} has {len(items)} items, where this "
                                 f"solver keeps {len(like)}")
            templates = like if checked and len(like) else [_UNCHECKED] * len(items)
            values = [decode(item, template) for item, template in zip(items, templates)]
            return values if kind == "list" else tuple(values)
        if kind == "dataclass":
            name, fields = node.get("class"), node.get("fields")
            if not isinstance(name, str) or not isinstance(fields, dict):
                raise ValueError("a state dataclass lacks its class or fields")
            if checked and not (_is_dataclass_value(like) and type(like).__name__ == name):
                raise mismatch(f"a {name:.40}", like)
            cls = type(like) if checked else _state_class(name)
            init = [f for f in dataclasses.fields(cls) if f.init]
            names = [f.name for f in init]
            # A field a state class lists as added later (ADDED_LATER) may be
            # absent from a file written before it existed: it gets the
            # template's value (the solver's fresh state), else its default.
            # Any other field missing is a damaged file.
            optional = set(getattr(cls, "ADDED_LATER", ()))
            missing = set(names) - set(fields)
            if set(fields) - set(names) or missing - optional:
                raise ValueError(f"a {name} state has fields {sorted(fields)!r:.200}, "
                                 f"not {names}")
            values = {key: decode(fields[key], getattr(like, key) if checked else _UNCHECKED)
                      for key in names if key in fields}
            if checked:
                values.update({key: getattr(like, key) for key in missing})
            return cls(**values)
        raise ValueError(f"unknown state node type {kind!r:.40}")

    state = decode(description, like)
    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"the state arrays {', '.join(unused)} belong nowhere in it")
    return state


@dataclass(frozen=True)
class AutoGDState:
    """:class:`AutoGD`'s state: where the search stands, what is known there, the rates.

    Attributes
    ----------
    learning_rate : float
        The rate of the last step tried (NaN before the first).
    params, grads : list of arrays
        The search's current point (always one whose step was accepted, or
        the start) and the gradient there. A call may return another point
        (:meth:`AutoGD.end_fit`); the search goes on from this one.
    loss : float
        The loss at ``params``, read on the host; NaN before the first
        evaluation.
    grad_sq : float
        ``|grads|**2``, read on the host.
    flat_grads : array
        ``grads`` laid end to end, one vector.
    next_rate : float
        The rate of the next step to try (NaN: ``learning_rate``).
    recent_losses : tuple of float
        The losses of the points accepted before ``params``, the last
        :data:`gpumlp.step_size.MEMORY` of them, oldest first: with ``loss``,
        the reference of the non-monotone test.
    best_loss : float
        The lowest loss of the points the search accepted since it last
        started afresh (NaN before the first evaluation), and ``best_params``
        the point itself, which :meth:`AutoGD.end_fit` returns.
    best_params : list of arrays
    monotone : bool
        The monotone test is in force (after the stopping rule's first
        plateau, :meth:`AutoGD.on_plateau`).
    stale : bool
        A call has begun (:meth:`AutoGD.begin_fit`) and its first step has
        not yet checked where it stands.
    accepted : bool
        Whether the last step tried was taken (a decision the fit record keeps).
    improved : bool
        Whether that step's point became the best one (a decision too).
    """

    learning_rate: float
    params: list
    grads: list
    loss: float
    grad_sq: float = float("nan")
    flat_grads: Any = None
    next_rate: float = float("nan")
    recent_losses: tuple = ()
    best_loss: float = float("nan")
    best_params: Any = None
    monotone: bool = False
    stale: bool = False
    #: Whether the last step tried was accepted (the fit record keeps it).
    accepted: bool = False
    #: Whether it became the best point (the fit record keeps it).
    improved: bool = False
    #: Whether this call's first step went on with the search the last call left
    #: (:meth:`AutoGD.goes_on`) rather than starting afresh (the fit record keeps it).
    continued: bool = False
    #: Fields a model file written before they existed lacks (read back from
    #: the fresh state; the next call checks where it stands, :meth:`AutoGD.update`).
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("grad_sq", "flat_grads", "next_rate",
                                              "recent_losses", "best_loss", "best_params",
                                              "monotone", "stale", "accepted", "improved",
                                              "continued")


def _relative(decrease: float, loss: float) -> float:
    """``decrease / |loss|``; +inf before any loss is known, 0 for no decrease at a zero loss."""
    if math.isnan(decrease) or math.isinf(decrease):
        return math.inf if not decrease < 0 else -math.inf
    if loss == 0:
        return math.inf if decrease > 0 else 0.0
    return decrease / abs(loss)


def _same_point(a: list, b: list | None, xp) -> bool:
    """Whether two parameter lists hold the same numbers, bit for bit (one host read)."""
    if b is None or len(a) != len(b) or any(tuple(p.shape) != tuple(q.shape)
                                            for p, q in zip(a, b)):
        return False
    if all(p is q for p, q in zip(a, b)):
        return True
    flat_a, flat_b = kernels.flatten(a, xp), kernels.flatten(b, xp)
    if flat_a.dtype != flat_b.dtype:
        return False
    (same,) = read_floats(xp.all(flat_a == flat_b), xp=xp)
    return bool(same)


@dataclass(frozen=True)
class AutoGD(Solver):
    """Gradient descent with ``learning_rate_init="auto"``: the rate from the curvature.

    The first rate is ``1.9 / L`` from a power-iteration estimate of the
    Hessian's largest eigenvalue ``L``. Each step is tried: when its loss is
    far enough below the highest of the last few accepted (Armijo, in the
    non-monotone form of Grippo, Lampariello and Lucidi) it is taken, and
    the next rate is the inverse of the curvature along it
    (Barzilai-Borwein); when it is not, training stays where it was and the
    next try has a smaller rate (a backtracking line search's step). So the
    parameters after every update are a point whose loss is known, and
    :meth:`end_fit` returns the one of lowest loss. The maths and the
    thresholds are in :mod:`gpumlp.step_size`. ``learning_rate`` is unused
    (the state holds the rates). Each step reads three numbers on the host.
    """

    learning_rate: float = float("nan")
    NAME: ClassVar[str] = "gd"
    host_reads: ClassVar[bool] = True

    def init_state(self, params):
        xp = array_namespace(*params)
        zeros = [xp.zeros_like(p) for p in params]
        return AutoGDState(float("nan"), zeros, list(zeros), float("nan"), float("nan"),
                           kernels.flatten(zeros, xp), float("nan"), (), float("nan"),
                           list(zeros), False, False)

    def begin_fit(self, state):
        """Mark the state: the call's first step checks where it stands (:meth:`update`)."""
        return replace(state, stale=True)

    def on_plateau(self, state):
        """The first plateau switches to the monotone test; the next one stops."""
        if state.monotone or step_size.MEMORY == 0:
            return state, True
        return replace(state, monotone=True, recent_losses=()), False

    def plateau_action(self, state):
        return "Going on with the monotone test (the loss no longer rises)."

    def progress(self, state, loss, best_loss):
        """The decrease the next step is expected to make, as a fraction of the loss.

        ``0.5 * rate * |g|**2 / loss`` at the search's point, with ``rate``
        the next rate, the inverse of the curvature just measured along the
        gradient (:func:`gpumlp.step_size.remaining_decrease`): scale-free,
        and it does not fall while a flat stretch is being crossed (there
        the rate is long).
        """
        if state is None or math.isnan(state.loss) or best_loss == math.inf:
            return math.inf   # the first epoch counts as progress, as in the loss's rule
        rate = state.next_rate if not math.isnan(state.next_rate) else state.learning_rate
        return _relative(step_size.remaining_decrease(rate, state.grad_sq), state.loss)

    def end_fit(self, params, state):
        """The point of lowest loss the search accepted, when it is not where the search is.

        The non-monotone test lets the loss rise for a few epochs; a call
        that ends during such a rise would otherwise return weights worse
        than some it had already measured. The state is kept as it is: a
        call that continues the search (``partial_fit``, a resumed run)
        goes on from where it stood, as one uninterrupted call would.
        """
        if state is None or not state.best_loss < state.loss:
            return params, state
        return list(state.best_params), state

    def _start(self, params, state, objective, xp):
        """The state a call's first step starts from.

        The search goes on where it stood, with its memory, when the call
        starts from the point the last one left (the search's own, or the
        best point it returned) *and* the loss there is still the one the
        search measured: the same rows. Otherwise (new rows, other weights,
        another dtype, the first call) it starts afresh at ``params``; the
        rates are kept.
        """
        evaluated = None
        if not math.isnan(state.loss) and (_same_point(params, state.params, xp)
                                           or _same_point(params, state.best_params, xp)):
            loss, grads = objective(state.params)
            flat = kernels.flatten(grads, xp)
            host_loss, host_grad_sq = read_floats(loss, xp.vecdot(flat, flat), xp=xp)
            if self.goes_on(host_loss, state.loss):
                best_loss, best_params = state.best_loss, state.best_params
                if not best_loss <= host_loss:   # a state saved before the best was kept
                    best_loss, best_params = host_loss, list(state.params)
                return replace(state, grads=list(grads), flat_grads=flat,
                               grad_sq=host_grad_sq, best_loss=best_loss,
                               best_params=best_params, stale=False, continued=True)
            if _same_point(params, state.params, xp):
                evaluated = loss, grads, flat, host_loss, host_grad_sq
        if evaluated is None:
            loss, grads = objective(params)
            flat = kernels.flatten(grads, xp)
            host_loss, host_grad_sq = read_floats(loss, xp.vecdot(flat, flat), xp=xp)
        else:
            loss, grads, flat, host_loss, host_grad_sq = evaluated
        rate = state.next_rate if not math.isnan(state.next_rate) else state.learning_rate
        if math.isnan(rate):
            rate = step_size.initial_learning_rate(
                step_size.largest_curvature(objective, params, grads))
        return AutoGDState(rate, list(params), list(grads), host_loss, host_grad_sq, flat, rate,
                           (), host_loss, list(params), False, False)

    def update(self, params, state, objective):
        xp = array_namespace(*params)
        if state.stale or math.isnan(state.loss):
            state = self._start(params, state, objective, xp)
        # The search's point: ``params`` itself, except on a call's first step
        # when the last call returned its best point and the search goes on.
        params = state.params
        rate = state.next_rate if not math.isnan(state.next_rate) else state.learning_rate
        # The step s = -rate g, tried: s.s = rate**2 |g|**2, s.y = -rate g.(g_new - g).
        trial = kernels.gd_step(params, state.grads, rate)
        trial_loss, trial_grads = objective(trial)
        flat = kernels.flatten(trial_grads, xp)
        previous = state.flat_grads
        host_loss, host_grad_sq, slope_change = read_floats(
            trial_loss, xp.vecdot(flat, flat), xp.vecdot(previous, flat - previous), xp=xp)
        eps = float(xp.finfo(params[0].dtype).eps)
        memory = 0 if state.monotone else step_size.MEMORY
        accept, next_rate = self.decide(
            rate, state.loss, state.grad_sq, host_loss, rate * rate * state.grad_sq,
            -rate * slope_change, eps, max((state.loss, *state.recent_losses[-memory:]))
            if memory > 0 else None)
        # The epoch's loss is the loss where it started, as for every solver.
        loss = xp.asarray(state.loss, dtype=params[0].dtype, device=device(params[0]))
        if not accept:
            return list(params), replace(state, learning_rate=rate, next_rate=next_rate,
                                         accepted=False), loss
        recent = (*state.recent_losses, state.loss)[-memory:] if memory > 0 else ()
        best_loss, best_params = state.best_loss, state.best_params
        improved = self.improves(host_loss, best_loss)
        if improved:
            best_loss, best_params = host_loss, list(trial)
        return trial, AutoGDState(rate, list(trial), list(trial_grads), host_loss,
                                  host_grad_sq, flat, next_rate, recent, best_loss,
                                  best_params, state.monotone, False, True, improved,
                                  state.continued), loss

    def goes_on(self, loss: float, kept_loss: float) -> bool:
        """Whether a call that starts at the search's own point goes on with its search:
        when the loss measured there now is the one the search kept, bit for bit
        (the same rows); else it starts afresh (:meth:`_start`).

        Its own method, like :meth:`decide`, so that a replay can impose it.
        """
        return loss == kept_loss

    def improves(self, loss: float, best_loss: float) -> bool:
        """Whether an accepted point of ``loss`` becomes the best one (lower, or no best yet).

        Its own method, like :meth:`decide`, so that a replay can impose it.
        """
        return not loss >= best_loss

    def decide(self, learning_rate: float, previous_loss: float, previous_grad_sq: float,
               loss: float, ss: float, sy: float, eps: float,
               reference_loss: float | None) -> tuple[bool, float]:
        """Accept or refuse the step just tried, and the next rate: the rule's decision.

        :func:`gpumlp.step_size.next_learning_rate` with these host-read
        numbers; its own method so that a replay (:mod:`gpumlp.certificate`)
        can impose a recorded decision and check the rule's against it.
        """
        return step_size.next_learning_rate(learning_rate, previous_loss, previous_grad_sq,
                                            loss, ss, sy, eps, reference_loss)
