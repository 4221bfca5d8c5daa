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
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from array_api_compat import array_namespace, device, is_array_api_obj

from . import kernels, step_size

__all__ = ["SOLVERS", "Adam", "AdamState", "GradientDescent", "SGD", "Solver", "make_solver",
           "map_state", "solver_name", "state_from_arrays", "state_to_arrays", "AutoGD",
           "AutoGDState"]

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
        raise TypeError(f"a solver state holds only None, numbers, arrays, lists, tuples "
                        f"and dataclasses, not {type(value).__name__}")

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
            names = [f.name for f in dataclasses.fields(cls) if f.init]
            if sorted(fields) != sorted(names):
                raise ValueError(f"a {name} state has fields {sorted(fields)!r:.200}, "
                                 f"not {names}")
            return cls(**{key: decode(fields[key], getattr(like, key) if checked
                                      else _UNCHECKED) for key in names})
        raise ValueError(f"unknown state node type {kind!r:.40}")

    state = decode(description, like)
    unused = sorted(set(arrays) - used)
    if unused:
        raise ValueError(f"the state arrays {', '.join(unused)} belong nowhere in it")
    return state


@dataclass(frozen=True)
class AutoGDState:
    """:class:`AutoGD`'s state: the rate, and the last accepted point to step back to.

    Attributes
    ----------
    learning_rate : float
        The rate of the last step taken (NaN before the first).
    params, grads : list of arrays
        The last accepted point and its gradient (zeros before the first step).
    loss : float
        The loss at ``params``, read on the host (NaN before the first step).
    """

    learning_rate: float
    params: list
    grads: list
    loss: float


@dataclass(frozen=True)
class AutoGD(Solver):
    """Gradient descent with ``learning_rate_init="auto"``: the rate from the curvature.

    The first rate is ``1.9 / L`` from a power-iteration estimate of the
    Hessian's largest eigenvalue ``L``; then a step that raises the loss is
    taken back and the rate halved, and a rate whose steps lower the loss
    grows. The maths and the thresholds are in :mod:`gpumlp.step_size`.
    ``learning_rate`` is unused (the state holds the rate in force). Each
    step reads its loss on the host, to decide.
    """

    learning_rate: float = float("nan")
    NAME: ClassVar[str] = "gd"

    def init_state(self, params):
        xp = array_namespace(*params)
        zeros = [xp.zeros_like(p) for p in params]
        return AutoGDState(float("nan"), zeros, list(zeros), float("nan"))

    def update(self, params, state, objective):
        loss, grads = objective(params)
        (host_loss,) = step_size.read_floats(loss)
        if math.isnan(state.learning_rate):
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
        return new, AutoGDState(rate, list(params), list(grads), host_loss), loss
