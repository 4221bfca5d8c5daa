"""Initial weights, drawn on the host so that every backend starts identically."""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["as_generator", "glorot_uniform"]


def as_generator(random_state):
    """A ``numpy.random.Generator`` from ``None``, an int, a Generator or a RandomState."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise TypeError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}."
    )


def glorot_uniform(layer_sizes, rng, dtype="float64"):
    """Glorot-uniform weights and intercepts for a fully connected network.

    Each layer's weights and intercepts are drawn from ``U(-r, r)`` with
    ``r = sqrt(6 / (fan_in + fan_out))`` (Glorot and Bengio, 2010). Values are
    drawn in float64 and then rounded to ``dtype``, so that float32 and
    float64 runs start from the same numbers up to that rounding.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, *hidden_layer_sizes, n_outputs]``.
    rng : numpy.random.Generator
    dtype : str

    Returns
    -------
    coefs, intercepts : lists of numpy arrays
        ``coefs[i]`` of shape ``(layer_sizes[i], layer_sizes[i+1])`` and
        ``intercepts[i]`` of shape ``(layer_sizes[i+1],)``.
    """
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
        intercepts.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
    return coefs, intercepts
