"""Scores, written once against the array API.

``y`` and ``y_pred`` of shapes ``(n,)`` and ``(n, 1)`` mean the same thing
everywhere; any other difference of shape is an error, never a broadcast.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace

from ._checks import check_sample_weight, check_y
from .devices import to_numpy

__all__ = ["as_columns", "r2_score", "score"]


def as_columns(y, y_pred):
    """``y`` and ``y_pred`` as 2-D ``(n, k)`` arrays of the same shape.

    Raises
    ------
    ValueError
        When the shapes differ other than by ``(n,)`` against ``(n, 1)``.
    """
    xp = array_namespace(y, y_pred)
    y2 = xp.reshape(y, (y.shape[0], -1)) if y.ndim == 1 else y
    p2 = xp.reshape(y_pred, (y_pred.shape[0], -1)) if y_pred.ndim == 1 else y_pred
    if y.ndim > 2 or y_pred.ndim > 2 or tuple(y2.shape) != tuple(p2.shape):
        raise ValueError(
            f"y has shape {tuple(y.shape)} but the predictions have shape "
            f"{tuple(y_pred.shape)}: pass y with one column per output of the model.")
    return y2, p2


def r2_score(y, y_pred, sample_weight=None):
    """Coefficient of determination, averaged uniformly over outputs, as a 0-d array.

    Parameters
    ----------
    y, y_pred : arrays, shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : array, shape (n_samples,), optional
        In the same namespace and dtype as ``y``.

    Notes
    -----
    scikit-learn's conventions for a constant target: 1 if it is predicted
    exactly, else 0; and NaN for fewer than two samples, where R² is not
    defined (one sample is a constant target by that rule, which would make
    up a score).
    """
    y, y_pred = as_columns(y, y_pred)
    xp = array_namespace(y, y_pred)
    if y.shape[0] < 2:
        return xp.asarray(float("nan"), dtype=y.dtype)
    # Each output divided by a power of two near its largest |y|: exact (the
    # score is the same to the last bit), and the squares below cannot
    # overflow for any y the dtype holds (y of 1e300 in float64, 1e20 in float32).
    peak = xp.max(xp.abs(y), axis=0)
    unit = 2.0 ** xp.floor(xp.log2(xp.where(peak > 0, peak, xp.ones_like(peak))))
    y, y_pred = y / unit, y_pred / unit
    diff = y - y_pred
    if sample_weight is None:
        sse = xp.sum(diff * diff, axis=0)
        centred = y - xp.mean(y, axis=0)
        sst = xp.sum(centred * centred, axis=0)
        top, bottom = xp.max(y, axis=0), xp.min(y, axis=0)
    else:
        w = xp.reshape(sample_weight, (-1, 1))
        sse = xp.sum(w * diff * diff, axis=0)
        centred = y - xp.sum(w * y, axis=0) / xp.sum(w)
        sst = xp.sum(w * centred * centred, axis=0)
        inf = xp.full_like(y, float("inf"))
        top = xp.max(xp.where(w > 0, y, -inf), axis=0)
        bottom = xp.min(xp.where(w > 0, y, inf), axis=0)
    # A constant target is known by its values, not by sst: a mean that is not
    # exact (0.1 three times) leaves an sst of 1e-33 that would divide the
    # errors into a score of -1e31, by how each backend happens to round.
    sst = xp.where(top > bottom, sst, xp.zeros_like(sst))
    safe = xp.where(sst > 0, sst, xp.ones_like(sst))
    per_output = xp.where(sst > 0, 1.0 - sse / safe, xp.astype(sse == 0, sse.dtype))
    return xp.mean(per_output)


def score(y, y_pred, sample_weight=None, estimator_name="MLPRegressor") -> float:
    """R² of ``y_pred`` against a user's ``y``, as an estimator's ``score`` returns it.

    ``y`` (array-like) is validated; both are copied to the host and
    compared in float64, whatever the model's dtype; ``sample_weight``
    (array-like of shape (n_samples,)) weights the rows.

    Returns
    -------
    float
    """
    y = check_y(y, y_pred.shape[0], estimator_name, purpose="scoring")
    # In float64 on the host, whatever the model's dtype and device: in float32
    # a y of 1e8 + noise rounds to a constant (the spacing there is 8), and a
    # constant prediction would score 1.0. One copy of n predictions.
    y_pred = np.asarray(to_numpy(y_pred), dtype=np.float64)
    y = np.asarray(to_numpy(y), dtype=np.float64)
    if sample_weight is not None:
        weights = check_sample_weight(sample_weight, y_pred.shape[0])
        sample_weight = np.asarray(to_numpy(weights), dtype=np.float64)
    return float(r2_score(y, y_pred, sample_weight))
