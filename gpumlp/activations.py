"""Hidden-layer activations: one record each, holding every form of it.

An :class:`Activation` carries what every code path needs about one
function: the generic array-API forward, its derivative written in terms of
the activation's *output* (so the forward pass need not keep ``z``), and the
forms a fast path uses (the NumPy path's ``tanh`` form, the CUDA kernels' C
expressions). A fast path that finds no form for an activation declines it,
and the generic kernels run instead.

Adding an activation is adding one record to :data:`ACTIVATIONS` (and tests).
Aliases (``"logistic"`` is scikit-learn's name for the sigmoid) are resolved
once, by :func:`get_activation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from array_api_compat import array_namespace

__all__ = ["ACTIVATIONS", "ALIASES", "NAMES", "Activation", "get_activation"]


@dataclass(frozen=True)
class Activation:
    """Everything about one hidden-layer activation.

    Parameters
    ----------
    name : str
        The canonical name.
    forward : callable
        ``forward(z) -> a``, elementwise, in ``z``'s namespace.
    derivative : callable or None
        ``derivative(a) -> da/dz`` from the output ``a``; ``None`` means the
        derivative is 1 (the identity), so the backward pass skips it.
    tanh_form : tuple of 4 floats or None
        For the NumPy fast path: ``(c, s, shift, g)`` with
        ``a = s * tanh(c z) + shift`` and ``da/dz = g * (1 - tanh(c z)**2)``;
        ``None`` if the activation has no such form.
    cuda_forward : str or None
        A C expression of ``z`` (type ``T``): the CUDA row kernels' form.
    cuda_forward_biased : str or None
        A C expression of ``z`` and the bias ``b``, ``f(z + b)``: the CUDA
        elementwise kernel's form (bias and activation in one pass).
    cuda_derivative : str or None
        A C expression of ``a`` (type ``T``) for the CUDA kernels.
    """

    name: str
    forward: Callable
    derivative: Callable | None
    tanh_form: tuple[float, float, float, float] | None = None
    cuda_forward: str | None = None
    cuda_forward_biased: str | None = None
    cuda_derivative: str | None = None

    def __reduce__(self):
        # A record pickles as its name (a fitted estimator keeps one).
        return (get_activation, (self.name,))


def _sigmoid(z):
    # tanh(z/2)/2 + 1/2 equals 1 / (1 + exp(-z)) but never overflows:
    # exp(-z) would overflow in float32 already for z < -88.
    xp = array_namespace(z)
    return 0.5 * xp.tanh(0.5 * z) + 0.5


def _relu(z):
    xp = array_namespace(z)
    return xp.where(z > 0, z, xp.zeros_like(z))


def _relu_derivative(a):
    xp = array_namespace(a)
    return xp.astype(a > 0, a.dtype)


ACTIVATIONS: dict[str, Activation] = {
    act.name: act for act in (
        Activation(
            "sigmoid", _sigmoid, lambda a: a * (1.0 - a),
            tanh_form=(0.5, 0.5, 0.5, 0.25),
            cuda_forward="(T)0.5 * tanh((T)0.5 * z) + (T)0.5",
            cuda_forward_biased="(T)0.5 * tanh((T)0.5 * (z + b)) + (T)0.5",
            cuda_derivative="a * ((T)1 - a)",
        ),
        Activation(
            "tanh", lambda z: array_namespace(z).tanh(z), lambda a: 1.0 - a * a,
            tanh_form=(1.0, 1.0, 0.0, 1.0),
            cuda_forward="tanh(z)",
            cuda_forward_biased="tanh(z + b)",
            cuda_derivative="((T)1 - a * a)",
        ),
        Activation(
            "relu", _relu, _relu_derivative,
            cuda_forward="(z > (T)0 ? z : (T)0)",
            cuda_forward_biased="(z + b > (T)0 ? z + b : (T)0)",
            cuda_derivative="(a > (T)0 ? (T)1 : (T)0)",
        ),
        Activation(
            "identity", lambda z: z, None,
            cuda_forward="z",
            cuda_forward_biased="z + b",
            cuda_derivative="(T)1",
        ),
    )
}

#: Other names for the same functions.
ALIASES = {"logistic": "sigmoid"}

#: Every name :func:`get_activation` accepts.
NAMES = (*ACTIVATIONS, *ALIASES)


def get_activation(name: str | Activation) -> Activation:
    """The record for an activation name (aliases resolved), or the record itself.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, Activation):
        return name
    try:
        return ACTIVATIONS[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown activation {name!r}; choose one of {NAMES}.") from None
