"""Splitting rows: a test split for the command line, a validation split for
early stopping. Both draw one permutation on the host from a seed, so every
backend sees the same rows.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["train_test_split", "validation_split"]


def train_test_split(X, y, test_size=0.2, random_state=0):
    """Split rows at random into train and test sets (NumPy arrays).

    Returns
    -------
    X_train, X_test, y_train, y_test
    """
    n = X.shape[0]
    n_test = int(round(test_size * n))
    if not 0 < n_test < n:
        raise ValueError(
            f"test_size={test_size} leaves {n_test} test rows of {n}; choose a value "
            f"that keeps at least one row on each side."
        )
    perm = np.random.default_rng(random_state).permutation(n)
    test, train = perm[:n_test], perm[n_test:]
    return X[train], X[test], y[train], y[test]


def validation_split(n, fraction, rng):
    """Host indices ``(train, validation)``, each sorted, for early stopping.

    Parameters
    ----------
    n : int
        Rows.
    fraction : float
        ``validation_fraction``: the validation rows are ``ceil(fraction * n)``.
    rng : numpy.random.Generator
    """
    n_val = int(math.ceil(fraction * n)) if fraction else 0
    if n_val < 2 or n - n_val < 1:
        raise ValueError(
            f"early_stopping needs at least 2 validation rows and 1 training row; "
            f"with {n} samples and validation_fraction={fraction} there are {n_val} "
            f"validation and {n - n_val} training rows. Pass more data, or a "
            f"{'larger' if n_val < 2 else 'smaller'} validation_fraction."
        )
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
