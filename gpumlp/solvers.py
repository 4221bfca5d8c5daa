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

Besides the step, the trainer asks a solver two things, both pure:
:meth:`Solver.end_epoch` (after each epoch; the ``"invscaling"`` schedule
lowers the rate there) and :meth:`Solver.on_plateau` (when the loss has not
improved for more than ``n_iter_no_change`` epochs: stop, or for the
``"adaptive"`` schedule divide the rate by 5 and go on). The current learning
rate is therefore part of the state (:class:`SGDState`), so ``partial_fit``
keeps it and a warm-start ``fit`` starts again from ``learning_rate_init``,
as in scikit-learn. :class:`LBFGS` has its own stopping criteria instead, and
says why it stopped through :meth:`Solver.stop_reason`.

Every state is a plain value: ``None`` or a frozen dataclass of arrays,
lists of arrays and numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, ClassVar

import array_api_compat as aac
from array_api_compat import array_namespace

from . import kernels
from .devices import to_numpy

__all__ = ["SCHEDULES", "SOLVERS", "Adam", "AdamState", "GradientDescent", "LBFGS",
           "LBFGSState", "SGD", "SGDState", "Solver", "make_solver", "map_state"]

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
    """

    learning_rate: float
    HYPER: ClassVar[tuple[str, ...]] = ()

    def init_state(self, params: list) -> Any:
        """The state before the first step (``None`` for a stateless solver)."""
        return None

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

    def end_epoch(self, state: Any, samples_seen: int) -> Any:
        """The state after an epoch, ``samples_seen`` rows into training (default: as is)."""
        return state

    def on_plateau(self, state: Any) -> tuple[Any, bool]:
        """No improvement for more than ``n_iter_no_change`` epochs: ``(state, stop)``.

        By default: stop.
        """
        return state, True

    def stop_reason(self, state: Any) -> tuple[str, bool] | None:
        """``(why, converged)`` when the solver has stopped by its own criteria, else ``None``.

        Only solvers with ``uses_stopping_rule = False`` (L-BFGS) stop so.
        """
        return None

    #: Whether the trainer's stopping rule (``tol``, ``n_iter_no_change``) applies.
    uses_stopping_rule: ClassVar[bool] = True


#: Learning-rate schedules (scikit-learn's ``learning_rate``) for "gd" and "sgd".
SCHEDULES = ("constant", "invscaling", "adaptive")

#: The "adaptive" schedule stops once the rate is at or below this.
MIN_ADAPTIVE_RATE = 1e-6


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
        return replace(state, learning_rate=self.learning_rate
                       / float(samples_seen + 1) ** self.power_t)

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

    def init_state(self, params):
        xp = array_namespace(*params)
        return AdamState(0, [xp.zeros_like(p) for p in params],
                         [xp.zeros_like(p) for p in params])

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
    """

    steps: list
    changes: list
    loss: Any = None
    grads: list | None = None
    n_fun: int = 0
    stop: str = ""
    converged: bool = False


def _dot(a, b):
    """``sum_i <a_i, b_i>`` over two lists of arrays, as a 0-d array."""
    xp = array_namespace(*a)
    return sum(xp.sum(u * v) for u, v in zip(a, b))


def _axpy(alpha, x, y):
    """``alpha * x + y`` for lists of arrays (``alpha`` a number or 0-d array)."""
    return [alpha * u + v for u, v in zip(x, y)]


def _read(*values):
    """0-d arrays as Python floats, in one transfer: the line search's only host reads."""
    xp = array_namespace(*values)
    return [float(v) for v in to_numpy(xp.stack([xp.reshape(v, ()) for v in values]))]


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
    HYPER: ClassVar[tuple[str, ...]] = ("max_fun",)
    uses_stopping_rule: ClassVar[bool] = False

    def init_state(self, params):
        return LBFGSState([], [])

    def stop_reason(self, state):
        return (state.stop, state.converged) if state.stop else None

    def _evaluate(self, objective, params, state, direction=None):
        """Loss, gradients and their host scalars at ``params``; one more evaluation."""
        xp = array_namespace(*params)
        loss, grads = objective(params)
        largest = xp.max(xp.stack([xp.max(xp.abs(g)) for g in grads]))
        scalars = [loss, largest] + ([] if direction is None else [_dot(grads, direction)])
        return loss, grads, _read(*scalars), replace(state, n_fun=state.n_fun + 1)

    def _direction(self, grads, state):
        """``-H g`` by the two-loop recursion."""
        q = list(grads)
        history = list(zip(state.steps, state.changes))
        rhos = [1.0 / _dot(y, s) for s, y in history]
        alphas = []
        for (s, y), rho in zip(reversed(history), reversed(rhos)):
            a = rho * _dot(s, q)
            alphas.append(a)
            q = _axpy(-a, y, q)
        if history:
            s, y = history[-1]
            q = [(_dot(s, y) / _dot(y, y)) * v for v in q]
        for (s, y), rho, a in zip(history, rhos, reversed(alphas)):
            b = rho * _dot(y, q)
            q = _axpy(a - b, s, q)
        return [-v for v in q]

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
        f0 = _read(loss0)[0]
        for _ in range(2):
            direction = self._direction(grads0, state)
            slope = _read(_dot(grads0, direction))[0]
            if not slope < 0:
                # Not a descent direction (the memory went stale): steepest descent.
                state = replace(state, steps=[], changes=[])
                direction = [-g for g in grads0]
                slope = _read(_dot(grads0, direction))[0]
            first = 1.0 if state.steps else min(1.0, 1.0 / math.sqrt(-slope))
            found, state = self._line_search(objective, params, direction, f0, slope, first,
                                             state)
            if found is not None:
                break
            if state.n_fun >= self.max_fun:
                return params, replace(state, stop=f"max_fun ({self.max_fun}) loss "
                                       f"evaluations reached", converged=False), loss0
            if not state.steps:
                return params, replace(state, stop="the line search found no acceptable "
                                       "step", converged=False), loss0
            state = replace(state, steps=[], changes=[])  # forget the memory, try once more
        step, loss, grads, f, largest = found
        new_params = _axpy(step, direction, params)
        s = [step * d for d in direction]
        y = [g1 - g0 for g1, g0 in zip(grads, grads0)]
        sy, yy = _read(_dot(s, y), _dot(y, y))
        steps, changes = state.steps, state.changes
        if sy > 2.220446049250313e-16 * yy:   # keep H positive definite
            steps, changes = (steps + [s])[-self.memory:], (changes + [y])[-self.memory:]
        state = replace(state, steps=steps, changes=changes, loss=loss, grads=grads)
        if largest <= self.gtol:
            state = replace(state, stop="the largest gradient entry is at most gtol (tol)",
                            converged=True)
        elif (f0 - f) / max(abs(f0), abs(f), 1.0) <= self.ftol:
            state = replace(state, stop="the relative reduction of the loss is at most ftol",
                            converged=True)
        elif state.n_fun >= self.max_fun:
            state = replace(state, stop=f"max_fun ({self.max_fun}) loss evaluations reached",
                            converged=False)
        return new_params, state, loss0

    def _line_search(self, objective, params, direction, f0, slope, step, state):
        """A step satisfying the strong Wolfe conditions, or ``None``.

        Returns ``(found, state)`` with ``found = (step, loss, grads, f, largest)``.
        A step that only decreases the loss enough is accepted when the
        search runs out of evaluations.
        """
        def at(a, state):
            loss, grads, (f, largest, d), state = self._evaluate(
                objective, _axpy(a, direction, params), state, direction)
            return (a, loss, grads, f, largest, d), state

        def sufficient(p):
            return math.isfinite(p[3]) and p[3] <= f0 + self.c1 * p[0] * slope

        def curvature(p):
            return abs(p[5]) <= -self.c2 * slope

        def budget(state):
            return state.n_fun < self.max_fun

        origin = (0.0, None, None, f0, None, slope)
        previous, lo, hi = origin, None, None
        for i in range(self.max_line_search):
            if not budget(state):
                break
            trial, state = at(step, state)
            if not sufficient(trial) or (i > 0 and trial[3] >= previous[3]):
                lo, hi = previous, trial
                break
            if curvature(trial):
                return trial[:5], state
            if trial[5] >= 0:
                lo, hi = trial, previous
                break
            previous, step = trial, 2.0 * step
        else:
            return (previous[:5] if previous[0] > 0 else None), state
        if lo is None:  # out of evaluations while extrapolating
            return (previous[:5] if previous[0] > 0 else None), state
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
            if not sufficient(trial) or trial[3] >= lo[3]:
                hi = trial
            else:
                if curvature(trial):
                    return trial[:5], state
                if trial[5] * (b - a) >= 0:
                    hi = lo
                lo = trial
        return (lo[:5] if lo[0] > 0 else None), state


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


def map_state(state, fn):
    """A solver state with ``fn`` applied to each of its arrays (to move it, say)."""
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    if is_dataclass(state):
        return replace(state, **{f.name: map_state(getattr(state, f.name), fn)
                                 for f in fields(state)})
    if isinstance(state, list):
        return [map_state(v, fn) for v in state]
    if aac.is_array_api_obj(state):
        return fn(state)
    return state
