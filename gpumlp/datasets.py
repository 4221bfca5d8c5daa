"""The embedded default dataset: Friedman #1, generated reproducibly."""

from __future__ import annotations

import numpy as np

__all__ = ["make_friedman1"]


def make_friedman1(n_samples=2000, n_features=10, noise=1.0, random_state=0):
    """Friedman's first regression problem (Friedman, 1991).

    ``y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)**2 + 10 x3 + 5 x4 + noise * N(0, 1)``
    with every ``x_j ~ U(0, 1)``; features beyond the fifth are pure noise.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features), float64
    y : ndarray, shape (n_samples,), float64
    """
    if n_features < 5:
        raise ValueError(f"Friedman #1 needs n_features >= 5, got {n_features}.")
    rng = np.random.default_rng(random_state)
    X = rng.uniform(size=(n_samples, n_features))
    y = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2
         + 10 * X[:, 3] + 5 * X[:, 4] + noise * rng.standard_normal(n_samples))
    return X, y
