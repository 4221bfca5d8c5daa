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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from array_api_compat import array_namespace, device

from . import kernels, step_size

__all__ = ["SOLVERS", "Adam", "AdamState", "GradientDescent", "SGD", "Solver", "make_solver",
           "map_state", "AutoGD", "AutoGDState"]

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


@dataclass(frozen=True)
class GradientDescent(Solver):
    """Plain gradient descent, ``p <- p - lr * g``: the specified algorithm."""

    def update(self, params, state, objective):
        loss, grads = objective(params)
        return kernels.gd_step(params, grads, self.learning_rate), state, loss


@dataclass(frozen=True)
class SGD(Solver):
    """Gradient descent with heavy-ball or Nesterov momentum (scikit-learn's form).

    With ``momentum == 0`` it is plain gradient descent and keeps no state.
    """

    momentum: float = 0.9
    nesterov: bool = True
    HYPER: ClassVar[tuple[str, ...]] = ("momentum", "nesterovs_momentum")

    def init_state(self, params):
        if not self.momentum:
            return None
        xp = array_namespace(*params)
        return [xp.zeros_like(p) for p in params]

    def update(self, params, state, objective):
        loss, grads = objective(params)
        if not self.momentum:
            return kernels.gd_step(params, grads, self.learning_rate), state, loss
        params, velocities = kernels.momentum_step(
            params, grads, state, self.learning_rate, self.momentum, self.nesterov)
        return params, velocities, loss


@dataclass(frozen=True)
class AdamState:
    """Adam's step count and moment estimates."""

    t: int
    first: list
    second: list


@dataclass(frozen=True)
class Adam(Solver):
    """Adam (Kingma and Ba, 2014), with its step count and moments as state."""

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


#: Solver name (the estimator's ``solver``) -> class.
SOLVERS: dict[str, type[Solver]] = {"gd": GradientDescent, "sgd": SGD, "adam": Adam}

#: Estimator parameter name -> solver field, where they differ.
_FIELD = {"nesterovs_momentum": "nesterov"}


def make_solver(name: str, learning_rate_init: float, params: Mapping[str, Any]) -> Solver:
    """Build the solver ``name`` from explicit hyper-parameters.

    Parameters
    ----------
    name : str
        A key of :data:`SOLVERS`.
    learning_rate_init : float
    params : mapping
        Estimator parameters; only the solver's :attr:`Solver.HYPER` are read.

    Returns
    -------
    Solver
    """
    try:
        cls = SOLVERS[name]
    except KeyError:
        raise ValueError(f"solver must be one of {tuple(SOLVERS)}, got {name!r}.") from None
    hyper = {_FIELD.get(key, key): _plain(key, params[key]) for key in cls.HYPER}
    return cls(float(learning_rate_init), **hyper)


def _plain(key, value):
    # Python scalars keep a float32 computation in float32 (see kernels).
    return bool(value) if key == "nesterovs_momentum" else float(value)


def map_state(state, fn):
    """A solver state with ``fn`` applied to each of its arrays (to move it, say)."""
    if state is None:
        return None
    if hasattr(state, "map"):
        return state.map(fn)
    if isinstance(state, AdamState):
        return AdamState(state.t, [fn(a) for a in state.first], [fn(a) for a in state.second])
    return [fn(a) for a in state]


@dataclass(frozen=True)
class AutoGDState:
    """:class:`AutoGD`'s state: the rate, and the last accepted point to step back to.

    Attributes
    ----------
    learning_rate : float
        The rate of the last step taken (NaN before the first).
    params, grads : list of arrays or None
        The last accepted point and its gradient (None before the first step).
    loss : float
        The loss at ``params``, read on the host.
    """

    learning_rate: float = float("nan")
    params: list | None = None
    grads: list | None = None
    loss: float = float("nan")

    def map(self, fn):
        """This state with ``fn`` applied to each of its arrays."""
        if self.params is None:
            return self
        return AutoGDState(self.learning_rate, [fn(a) for a in self.params],
                           [fn(a) for a in self.grads], self.loss)


@dataclass(frozen=True)
class AutoGD(Solver):
    """Gradient descent with ``learning_rate_init="auto"``: the rate from the curvature.

    The first rate is ``1.9 / L`` from a power-iteration estimate of the
    Hessian's largest eigenvalue ``L``; then a step that raises the loss is
    taken back and the rate halved, and a rate whose steps lower the loss
    grows. The maths and the thresholds are in :mod:`gpumlp.step_size`.
    ``learning_rate`` is unused (the state holds the rate in force).
    """

    learning_rate: float = float("nan")

    def update(self, params, state, objective):
        loss, grads = objective(params)
        (host_loss,) = step_size.read_floats(loss)
        if state is None or state.params is None:
            rate = step_size.initial_learning_rate(
                step_size.largest_curvature(objective, params, grads))
        else:
            eps = float(array_namespace(*params).finfo(params[0].dtype).eps)
            accept, rate = step_size.next_learning_rate(state.learning_rate, state.loss,
                                                        host_loss, eps)
            if not accept:
                # Step again from the last accepted point, with the smaller rate.
                params, grads, loss, host_loss = state.params, state.grads, None, state.loss
        new = kernels.gd_step(params, grads, rate)
        if loss is None:
            xp = array_namespace(*params)
            loss = xp.asarray(host_loss, dtype=params[0].dtype, device=device(params[0]))
        return new, AutoGDState(rate, params, grads, host_loss), loss
