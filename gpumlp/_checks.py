"""Checks at the public boundary: shapes, dtypes, finiteness, parameters.

Each check raises with what was wrong and what to do, so that bad input never
surfaces as a traceback from inside a matrix product. Arrays of any array-API
namespace are checked in their own namespace; anything else (lists, pandas
frames, memory maps) goes through ``numpy.asarray`` first.
"""

from __future__ import annotations

import datetime
import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import array_api_compat as aac
import numpy as np

from .devices import Device, to_numpy

__all__ = ["DataSummary", "check_dtype_limits", "check_eval_set", "check_feature_names",
           "check_n_features", "check_non_negative", "check_params", "check_sample_weight",
           "check_validation_fraction", "check_X", "check_y", "column_peaks", "effective_rows",
           "feature_names", "resolve_dtype"]


def _check_not_meta(x, name):
    if getattr(x, "is_meta", False) is True:
        raise ValueError(
            f"{name} is a PyTorch tensor on the 'meta' device, which has a shape but "
            f"no values; create it on a device that holds data ('cpu', 'cuda').")


#: Python's and NumPy's dates and durations, which NumPy would turn into ticks.
_DATES = (np.datetime64, np.timedelta64, datetime.date, datetime.timedelta)


def _as_array(x, name, purpose="fitting"):
    if aac.is_array_api_obj(x) and not aac.is_numpy_array(x):
        _check_not_meta(x, name)
        return x
    if hasattr(x, "tocsr") or hasattr(x, "toarray"):
        raise TypeError(
            f"{name} is a sparse matrix, and gpumlp does not support sparse input. "
            f"Convert it with {name}.toarray() first."
        )
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be read as a numeric array: {exc}") from None
    if arr.dtype.kind == "c":
        raise ValueError(f"Complex data not supported in {name}; pass real numbers.")
    if arr.dtype.kind in "mM":
        # As a dataframe's date column is refused (its Timestamps are not
        # numbers): raw ticks since an epoch are no feature anyone meant.
        raise TypeError(
            f"{name} contains non-numeric values (dtype {arr.dtype}: dates or durations). "
            f"Encode or drop those entries before {purpose}.")
    if arr.dtype.kind == "O" and any(isinstance(v, _DATES) for v in arr.flat):
        raise TypeError(
            f"{name} contains non-numeric values (dates or durations, as objects). "
            f"Encode or drop those entries before {purpose}.")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            index, value = _first_non_numeric(arr)
            where = "" if index is None else f" (first at index {index}: {value!r})"
            if index is not None and _is_missing(value):
                # pandas' NA or None: a missing value, as a NaN is, not a word.
                raise ValueError(
                    f"{name} contains missing values{where}. Remove or impute them before "
                    f"{purpose}.") from None
            # Keep the exception's type: a TypeError (a dict, say) is not a
            # bad value but a wrong kind of object.
            raise type(exc)(
                f"{name} contains non-numeric values{where}: {exc}. "
                f"Encode or drop those entries before {purpose}."
            ) from None
    return arr


def _is_missing(value) -> bool:
    """None, or pandas' ``NA`` (recognised by its type's name: pandas is not imported)."""
    return value is None or type(value).__name__ == "NAType"


def _first_non_numeric(arr):
    """The index and value of ``arr``'s first entry that ``float`` refuses, or (None, None)."""
    flat = arr.reshape(arr.shape[0], -1) if arr.ndim >= 1 and arr.size else arr
    for index, value in np.ndenumerate(flat):
        try:
            float(value)
        except (TypeError, ValueError):
            return index, value
    return None, None


def check_dtype(requested):
    """``"float32"``, ``"float64"`` or ``None``, from a name or a NumPy dtype."""
    if requested is None:
        return None
    try:
        name = requested if isinstance(requested, str) else np.dtype(requested).name
    except TypeError:
        name = None
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32', 'float64' or None, got {requested!r}.")
    return name


def resolve_dtype(requested, x):
    """The floating dtype to compute in: ``requested``, else the input's own.

    ``None`` keeps float32 and float64 input as it is and turns anything
    else (integers, booleans, float16) into float64.
    """
    if requested is not None:
        return check_dtype(requested)
    xp = aac.array_namespace(x)
    return "float32" if x.dtype == xp.float32 else "float64"


def _check_finite(x, name, purpose="fitting"):
    xp = aac.array_namespace(x)
    finite = xp.isfinite(x)
    if bool(xp.all(finite)):
        return
    host = to_numpy(x)
    n_nan = int(np.isnan(host).sum())
    n_inf = int(np.isinf(host).sum())
    where = np.argwhere(~np.isfinite(host))[0]
    place = f"row {where[0]}" + (f", column {where[1]}" if len(where) > 1 else "")
    parts = [f"{n_nan} NaN"] if n_nan else []
    parts += [f"{n_inf} infinity"] if n_inf else []
    raise ValueError(
        f"Input {name} contains {' and '.join(parts)} value(s), first at {place}. "
        f"Remove or impute them before {purpose}."
    )


def check_X(X, estimator_name="MLPRegressor", n_features=None, purpose="fitting"):
    """Validate a feature matrix; return it as a 2-D real array.

    ``purpose`` ends the advice of a refusal (``"fitting"``, ``"predicting"``).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, is empty, is not numeric, holds NaN or infinity,
        or has a feature count other than ``n_features``.
    TypeError
        If ``X`` is sparse.
    """
    if X is None:
        raise ValueError(f"{estimator_name} needs X, got None.")
    X = _as_array(X, "X", purpose)
    xp = aac.array_namespace(X)
    if X.ndim != 2:
        hint = (
            "Reshape your data either using X.reshape(-1, 1) if your data has a "
            "single feature or X.reshape(1, -1) if it contains a single sample."
        )
        raise ValueError(f"Expected 2D array, got {X.ndim}D array instead. {hint}")
    n_samples, n_cols = X.shape
    if n_samples < 1:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum "
            f"of 1 is required by {estimator_name}. Pass at least one row."
        )
    if n_cols < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum "
            f"of 1 is required by {estimator_name}."
        )
    if not (xp.isdtype(X.dtype, "real floating") or xp.isdtype(X.dtype, "integral")
            or X.dtype == xp.bool):
        raise ValueError(f"X must be real numbers, got dtype {X.dtype}.")
    if xp.isdtype(X.dtype, "real floating"):
        _check_finite(X, "X", purpose)
    check_n_features(n_cols, n_features, estimator_name)
    return X


def check_n_features(n_cols, n_features, estimator_name="MLPRegressor"):
    """Raise when ``X`` has ``n_cols`` columns but a fitted model expects ``n_features``."""
    if n_features is not None and n_cols != n_features:
        raise ValueError(
            f"X has {n_cols} features, but {estimator_name} is expecting "
            f"{n_features} features as input."
        )


def check_y(y, n_samples, estimator_name="MLPRegressor", purpose="fitting"):
    """Validate a target; return it as a 1-D or 2-D real array."""
    if y is None:
        raise ValueError(
            f"{estimator_name} requires y to be passed, but the target y is None."
        )
    y = _as_array(y, "y", purpose)
    xp = aac.array_namespace(y)
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got shape {tuple(y.shape)}.")
    if y.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: "
            f"[{n_samples}, {y.shape[0]}]. X and y need one row per sample."
        )
    if y.ndim == 2 and y.shape[1] < 1:
        raise ValueError("y has 0 outputs; pass at least one target column.")
    if xp.isdtype(y.dtype, "real floating"):
        _check_finite(y, "y", purpose)
    return y


def _check_number(name, value, low, high=None, low_open=False, integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r}.")
    too_low = value <= low if low_open else value < low
    # An integer is finite however large; for a real one, an int beyond a float
    # (10**400) is as unusable as infinity (math.isfinite would overflow on it).
    infinite = not integer and not _is_finite_real(value)
    if too_low or (high is not None and value > high) or infinite:
        bound = f"> {low}" if low_open else f">= {low}"
        if high is not None:
            bound += f" and <= {high}"
        if infinite and not too_low:
            bound = f"a finite number {bound}"
        shown = repr(value)
        if len(shown) > 40:   # an int of hundreds of digits
            shown = f"{shown[:12]}... ({len(shown)} digits)"
        raise ValueError(f"{name} must be {bound}, got {shown}.")


def _is_finite_real(value):
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_sample_weight(sample_weight, n_samples):
    """Validate sample weights; return them as a float64 NumPy array of shape (n_samples,).

    Raises
    ------
    ValueError
        If the weights are not one number per row, are negative, NaN or
        infinite, or are all zero.
    """
    _check_not_meta(sample_weight, "sample_weight")
    weights = to_numpy(sample_weight) if aac.is_array_api_obj(sample_weight) else sample_weight
    complex_ = False
    try:
        weights = np.asarray(weights)
        # float64 would drop an imaginary part with only NumPy's ComplexWarning.
        complex_ = weights.dtype.kind == "c"
        weights = weights if complex_ else np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:   # OverflowError: 10**400
        raise ValueError(f"sample_weight must be numbers, one per row: {exc}") from None
    if complex_:
        raise ValueError("sample_weight holds complex numbers; pass real weights, one per row.")
    if weights.ndim == 0:
        weights = np.full(n_samples, float(weights))
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight has shape {weights.shape}; it needs one weight per "
                         f"row, shape ({n_samples},).")
    if not np.all(np.isfinite(weights)):
        raise ValueError("sample_weight contains NaN or infinity; pass finite weights.")
    if np.any(weights < 0):
        raise ValueError("sample_weight contains negative weights; weights must be >= 0.")
    if not np.any(weights > 0):
        raise ValueError("sample_weight is all zero; at least one row must have weight > 0.")
    return weights


def effective_rows(sample_weight) -> float:
    """Kish's effective number of rows, ``(sum w)**2 / sum w**2``; 0 without weight.

    One row of weight 1 beside rows of 1e-40 is one row: an R² over such rows
    ranks nothing. The weights are scaled by their largest first, so that
    neither tiny nor huge weights underflow or overflow the squares.
    """
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    top = w.max() if w.size else 0.0
    if not top > 0:
        return 0.0
    scaled = w / top
    return float(scaled.sum() ** 2 / (scaled * scaled).sum())


def feature_names(X):
    """The column names of a dataframe ``X``, as an object array, or ``None``.

    Any object with a ``columns`` attribute that is not an array counts as a
    dataframe (pandas, polars, ...), so no dataframe library is imported; a
    pyarrow ``Table`` or ``RecordBatch`` gives its names as ``column_names``
    (its ``columns`` are the data). Names are kept only when every one is a
    string, as in scikit-learn.

    Raises
    ------
    TypeError
        When string and non-string names are mixed.
    ValueError
        When a string name is repeated.
    """
    if aac.is_array_api_obj(X) or not hasattr(X, "columns") or not hasattr(X, "shape"):
        return None
    names = np.asarray(list(getattr(X, "column_names", None) or X.columns), dtype=object)
    if names.size == 0:
        return None
    types = sorted({type(v).__qualname__ for v in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            f"Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. Convert "
            f"them all to strings (X.columns = X.columns.astype(str)), or all to another "
            f"type to have them ignored.")
    if types != ["str"]:
        return None
    repeated = sorted({v for v in names.tolist() if names.tolist().count(v) > 1})
    if repeated:
        # Two columns of one name cannot be told apart when the names are
        # checked (a swap of them would pass): refuse rather than guess.
        raise ValueError(
            f"X has more than one column named {', '.join(map(repr, repeated))}; columns "
            f"are matched by name, so each name must be unique. Rename or drop the "
            f"repeated columns.")
    return names


def check_feature_names(fitted, X, estimator_name="MLPRegressor"):
    """Compare ``X``'s column names with those seen in ``fit``, as scikit-learn does.

    Warns when only one side has names; raises when both have names and they
    differ, or come in another order.

    Parameters
    ----------
    fitted : array of str or None
        The estimator's ``feature_names_in_``, or ``None``.
    X : array-like or dataframe
    """
    names = feature_names(X)
    if fitted is None and names is None:
        return
    if fitted is None:
        warnings.warn(f"X has feature names, but {estimator_name} was fitted without "
                      f"feature names", UserWarning, stacklevel=3)
        return
    if names is None:
        warnings.warn(f"X does not have valid feature names, but {estimator_name} was "
                      f"fitted with feature names", UserWarning, stacklevel=3)
        return
    if len(fitted) == len(names) and np.all(fitted == names):
        return
    unseen = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))

    def listing(values):
        shown = [f"- {v}\n" for v in values[:5]]
        return "".join(shown) + ("- ...\n" if len(values) > 5 else "")

    message = "The feature names should match those that were passed during fit.\n"
    if unseen:
        message += "Feature names unseen at fit time:\n" + listing(unseen)
    if missing:
        message += "Feature names seen at fit time, yet now missing:\n" + listing(missing)
    if not unseen and not missing:
        message += "Feature names must be in the same order as they were in fit.\n"
    raise ValueError(message)


def check_non_negative(y, what="loss='poisson'"):
    """Raise a clear ``ValueError`` when ``y`` holds a negative value (one host read)."""
    xp = aac.array_namespace(y)
    if bool(xp.any(y < 0)):
        raise ValueError(f"y contains negative values, and {what} needs y >= 0 (it models "
                         f"counts or rates). Use loss='squared_error' for such targets.")


def check_validation_fraction(fraction, early_stopping=False):
    """scikit-learn's range, [0, 1); (0, 1) when rows are held out for early stopping.

    ``early_stopping``: whether this fit splits off validation rows (not
    ``partial_fit``, nor a fit given an ``eval_set``).
    """
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(f"validation_fraction must be a number, got {fraction!r}.")
    if early_stopping and not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_fraction must be in the open interval (0, 1) with "
                         f"early_stopping=True (the fraction of the rows held out), got "
                         f"{fraction!r}.")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1) (in (0, 1) with "
                         f"early_stopping=True), got {fraction!r}.")


def check_params(est):
    """Validate the estimator's hyper-parameters (called at the start of fit).

    Returns
    -------
    hidden_layer_sizes : tuple of int
    activation : Activation
        The activation's record, aliases resolved.
    """
    from .activations import NAMES as ACTIVATIONS
    from .activations import get_activation

    sizes = est.hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    try:
        sizes = tuple(sizes)
    except TypeError:
        raise TypeError(
            f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}."
        ) from None
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(
                f"hidden_layer_sizes must hold positive integers, got {est.hidden_layer_sizes!r}."
            )
    if est.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {est.activation!r}.")
    from .solvers import SOLVERS

    if not isinstance(est.solver, str) or est.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {tuple(SOLVERS)}, got {est.solver!r}.")
    if est.loss not in ("squared_error", "poisson"):
        raise ValueError(f"loss must be 'squared_error' or 'poisson', got {est.loss!r}.")
    if est.learning_rate not in ("constant", "invscaling", "adaptive"):
        raise ValueError(f"learning_rate must be 'constant', 'invscaling' or 'adaptive', "
                         f"got {est.learning_rate!r}.")
    _check_number("power_t", est.power_t, 0.0)
    _check_number("max_fun", est.max_fun, 1, integer=True)
    _check_number("alpha", est.alpha, 0.0)
    if not (isinstance(est.learning_rate_init, str) and est.learning_rate_init == "auto"):
        if isinstance(est.learning_rate_init, str):
            raise ValueError(f"learning_rate_init must be 'auto' or a number > 0, "
                             f"got {est.learning_rate_init!r}.")
        _check_number("learning_rate_init", est.learning_rate_init, 0.0, low_open=True)
    if not (isinstance(est.max_iter, str) and est.max_iter == "auto"):
        if isinstance(est.max_iter, str):
            raise ValueError(f"max_iter must be 'auto' or an int >= 1, got {est.max_iter!r}.")
        _check_number("max_iter", est.max_iter, 1, integer=True)
    _check_number("tol", est.tol, 0.0)
    if not (isinstance(est.n_iter_no_change, numbers.Real)
            and not isinstance(est.n_iter_no_change, bool) and est.n_iter_no_change == math.inf):
        # np.inf, as in scikit-learn: the stopping rule never fires.
        _check_number("n_iter_no_change", est.n_iter_no_change, 1, integer=True)
    _check_number("momentum", est.momentum, 0.0, 1.0)
    _check_number("beta_1", est.beta_1, 0.0, 1.0)
    _check_number("beta_2", est.beta_2, 0.0, 1.0)
    if est.beta_1 == 1.0 or est.beta_2 == 1.0:
        raise ValueError("beta_1 and beta_2 must be < 1.")
    _check_number("epsilon", est.epsilon, 0.0, low_open=True)
    for name in ("shuffle", "warm_start", "early_stopping", "nesterovs_momentum"):
        # Text such as 'False' or 'no' would be read by its truthiness, as True.
        if not isinstance(getattr(est, name), (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {getattr(est, name)!r}.")
    if isinstance(est.verbose, (str, bytes)) or not isinstance(est.verbose, numbers.Integral):
        raise TypeError(f"verbose must be True, False or an int, got {est.verbose!r}.")
    check_validation_fraction(est.validation_fraction)
    if est.batch_size != "auto":
        _check_number("batch_size", est.batch_size, 1, integer=True)
    check_dtype(est.dtype)
    if est.device is not None and not isinstance(est.device, (str, Device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {est.device!r}.")
    backend = getattr(est, "backend", None)
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'torch' or 'auto', got {backend!r}.")
    return sizes, get_activation(est.activation)


def check_eval_set(eval_set):
    """``eval_set`` as ``(X_val, y_val)``; a clear error for anything else.

    Raises
    ------
    TypeError
        When ``eval_set`` is not a pair (a tuple or list of two items).
    """
    if not isinstance(eval_set, (tuple, list)) or len(eval_set) != 2:
        what = (f"a {type(eval_set).__name__} of {len(eval_set)} items"
                if isinstance(eval_set, (tuple, list)) else f"a {type(eval_set).__name__}")
        raise TypeError(f"eval_set must be a pair (X_val, y_val), got {what}. Pass "
                        f"eval_set=(X_val, y_val); sample weights are not taken there.")
    return eval_set[0], eval_set[1]


# --------------------------------------------------- the training dtype's limits
#
# Every number that enters the training dtype is checked here, once, before
# training, against limits derived from that dtype's ``finfo``: ``big`` (its
# largest number) and ``tiny`` (its smallest normal number; below it numbers
# lose precision, and in float32 numbers under 1.4e-45 become 0). The
# reasons, each stated where it is checked:
#
# * a column (of X or y) or a set of weights is used relative to its largest
#   value, so values below ``tiny`` do no harm as long as they are below that
#   largest value's own rounding step (largest * eps): the largest must be at
#   least ``tiny / eps``;
# * one gradient step puts X's square into the first layer's
#   pre-activations (W1 moves by lr * X^T delta, then X @ W1), and Adam squares
#   the gradients: |X| must stay below sqrt(big);
# * the loss adds up weight * (y - y_pred)**2 over the rows and outputs, with
#   |y - y_pred| up to 2|y| while the predictions move towards y: that sum,
#   sum(w) * k * (2 max|y|)**2, and each squared error, must stay below big;
# * the sum of the weights is a divisor: it must be finite;
# * a rate, an L2 strength or Adam's epsilon is one number of the dtype: it
#   must not overflow, and a rate or epsilon must not underflow (a rate that
#   rounds to 0 trains nothing; an epsilon that does divides by 0).

def _limits(dtype):
    info = np.finfo(dtype)
    return float(info.max), float(info.tiny), float(info.eps)


def _dtype_advice(dtype, fits_float64):
    if dtype == "float32" and fits_float64:
        return " Or train in float64: dtype='float64' (on the command line: --dtype float64)."
    return ""


def column_peaks(a):
    """Each column's largest magnitude, as float64 NumPy (one small host read).

    ``a``: an array of any namespace, of shape (n,) (one column) or (n, k).
    Run on Dask workers too, chunk by chunk (see :func:`check_dtype_limits`).
    """
    xp = aac.array_namespace(a)
    a2 = xp.reshape(a, (a.shape[0], -1)) if a.ndim != 2 else a
    if a2.dtype == xp.bool:
        a2 = xp.astype(a2, xp.int8)
    # The largest and the smallest, rather than abs(a): no copy of the data.
    highs = np.asarray(to_numpy(xp.max(a2, axis=0)), dtype=np.float64)
    lows = np.asarray(to_numpy(xp.min(a2, axis=0)), dtype=np.float64)
    return np.maximum(np.abs(highs), np.abs(lows))


def _check_values(name, peaks, dtype, ceiling, reason, fix):
    """Refuse values above ``ceiling(dtype)``, or columns that lose their precision in ``dtype``.

    ``peaks``: each column's largest magnitude (:func:`column_peaks`);
    ``ceiling`` maps a dtype name to the largest magnitude allowed in it;
    ``reason`` says where that limit comes from.
    """
    largest = float(peaks.max())
    if largest > ceiling(dtype):
        raise ValueError(
            f"{name} holds values up to {largest:.3g}, beyond {ceiling(dtype):.3g} in "
            f"{dtype}: {reason}. {fix}.{_dtype_advice(dtype, largest <= ceiling('float64'))}")
    small = (peaks > 0) & (peaks < _floor(dtype))
    if small.any():
        column = int(np.argmax(small))
        where = f"column {column} of {name}" if peaks.shape[0] > 1 else name
        raise ValueError(
            f"{where} holds nothing larger than {peaks[column]:.3g}, below {_floor(dtype):.3g} "
            f"({dtype}'s smallest normal number over its epsilon): its values lose their "
            f"precision in {dtype} or become 0. {fix}."
            f"{_dtype_advice(dtype, peaks[column] >= _floor('float64'))}")


def _floor(dtype):
    """The smallest largest-value a column (or a set of weights) may have: tiny / eps."""
    _, tiny, eps = _limits(dtype)
    return tiny / eps


def check_dtype_limits(est, dtype, X=None, y=None, sample_weight=None, where="",
                       held=None) -> None:
    """The one check, before training, of every number that enters the training dtype.

    Parameters
    ----------
    est : MLPRegressor
        Its ``alpha``, ``learning_rate_init`` and ``epsilon`` are checked (the
        integers and ``power_t`` stay on the host, in Python, and have no
        limit but their range, checked by :func:`check_params`).
    dtype : {"float32", "float64"}
        The training dtype.
    X : array, shape (n_samples, n_features), optional
    y : array, shape (n_samples,) or (n_samples, n_outputs), optional
        As the estimator trains on them (after a StandardizedRegressor's
        scaling).
    sample_weight : float64 NumPy array, shape (n_samples,), optional
    where : str
        Prefix for the arrays' names in messages (``"eval_set's "``).
    held : DataSummary, optional
        Instead of ``X``, ``y`` and ``sample_weight``: the same figures for
        data held elsewhere (Dask chunks, summarised on the workers).

    Raises
    ------
    ValueError
        Naming the parameter, its value and the limit, with what to do (and
        float64 where that helps).
    """
    big, tiny, _ = _limits(dtype)
    big64, tiny64, _ = _limits("float64")
    rate = est.learning_rate_init
    numbers_ = [("alpha", est.alpha, 0.0)]
    if not isinstance(rate, str) and est.solver != "lbfgs":   # L-BFGS takes no rate
        numbers_.append(("learning_rate_init", rate, tiny))
    if est.solver == "adam":
        numbers_.append(("epsilon", est.epsilon, tiny))
    for name, value, low in numbers_:
        value = float(value)
        if value > big:
            raise ValueError(
                f"{name}={value:g} overflows {dtype} (its largest number is {big:.3g}); "
                f"pass a smaller {name}.{_dtype_advice(dtype, value <= big64)}")
        if 0 < value < low:
            raise ValueError(
                f"{name}={value:g} is below {dtype}'s smallest normal number ({tiny:.3g}): "
                f"it loses its precision or becomes 0 in {dtype}, and "
                f"{'no step is taken' if name != 'epsilon' else 'Adam may divide by 0'}. "
                f"Pass a larger {name}.{_dtype_advice(dtype, value >= tiny64)}")
    data = held if held is not None else DataSummary.of(X, y, sample_weight)
    total, peak = data.weight_total, data.weight_peak
    if total is not None:
        if total > big:
            raise ValueError(
                f"{where}sample_weight adds up to "
                f"{f'{total:.3g}' if math.isfinite(total) else 'more than float64 holds'}, "
                f"beyond {dtype}'s largest "
                f"number ({big:.3g}); the loss divides by that sum. Divide every weight by "
                f"one constant (only the L2 penalty's weight changes: alpha is divided by "
                f"the sum).{_dtype_advice(dtype, total <= big64)}")
        if peak < _floor(dtype):
            raise ValueError(
                f"{where}sample_weight holds nothing larger than {peak:.3g}, below "
                f"{_floor(dtype):.3g} ({dtype}'s smallest normal number over its epsilon): "
                f"the weights lose their precision in {dtype} or become 0. Multiply every "
                f"weight by one constant (only the L2 penalty's weight changes: alpha is "
                f"divided by the sum).{_dtype_advice(dtype, peak >= _floor('float64'))}")
    standardise = ("Standardise it (gpumlp.StandardizedRegressor, the command line's "
                   "default)")
    if data.X_peaks is not None:
        _check_values(f"{where}X", data.X_peaks, dtype, lambda d: math.sqrt(_limits(d)[0]),
                      "one gradient step puts the square of X into the first layer's "
                      "pre-activations (the limit is the square root of the largest number)",
                      standardise)
    if data.y_peaks is not None:
        n_outputs = data.y_peaks.shape[0]
        weight = data.n_rows if total is None else total
        rows = f"{weight:g} rows" if total is None else f"weights adding up to {weight:.3g}"
        _check_values(f"{where}y", data.y_peaks, dtype,
                      # Each squared error must be finite too: at least one row's worth.
                      lambda d: math.sqrt(_limits(d)[0] / max(weight * n_outputs, 1.0)) / 2,
                      f"the loss adds up the squared errors, up to (2 y)**2, of {rows} and "
                      f"{n_outputs} output(s), and the sum must stay below the largest number",
                      standardise)


@dataclass(frozen=True)
class DataSummary:
    """What :func:`check_dtype_limits` needs of the data: a few numbers per column.

    Attributes
    ----------
    X_peaks, y_peaks : float64 arrays, shape (n_features,) and (n_outputs,), or None
        Each column's largest magnitude.
    n_rows : int
    weight_total, weight_peak : float or None
        The sum and the largest of the sample weights (None without them).
    """

    X_peaks: Any = None
    y_peaks: Any = None
    n_rows: int = 0
    weight_total: float | None = None
    weight_peak: float | None = None

    @classmethod
    def of(cls, X=None, y=None, sample_weight=None) -> DataSummary:
        """The summary of arrays in this process (dask arrays are left out)."""
        total = peak = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            with np.errstate(over="ignore"):
                total = float(np.sum(weights))
            peak = float(weights.max())
        in_memory = [a is not None and not aac.is_dask_array(a) for a in (X, y)]
        n_rows = next((a.shape[0] for a, here in zip((X, y), in_memory) if here), 0)
        return cls(column_peaks(X) if in_memory[0] else None,
                   column_peaks(y) if in_memory[1] else None, n_rows, total, peak)

    @classmethod
    def of_chunks(cls, client, X_blocks, y_blocks, w_blocks, n_rows) -> DataSummary:
        """The summary of row chunks held on Dask workers (futures), each summarised there.

        One task per chunk, all gathered at once.
        """
        weights = w_blocks if w_blocks is not None else [None] * len(X_blocks)
        parts = client.gather([client.submit(_chunk_summary, x, y, w, pure=False)
                               for x, y, w in zip(X_blocks, y_blocks, weights)])
        total = peak = None
        if w_blocks is not None:
            with np.errstate(over="ignore"):
                total = float(np.sum([part[2] for part in parts]))
            peak = float(max(part[3] for part in parts))
        return cls(np.max([part[0] for part in parts], axis=0),
                   np.max([part[1] for part in parts], axis=0), n_rows, total, peak)


def _chunk_summary(X, y, w):
    """On a worker: one chunk's column peaks of X and y, and its weights' sum and largest."""
    if w is None:
        return column_peaks(X), column_peaks(y), None, None
    w = np.asarray(to_numpy(w), dtype=np.float64)
    with np.errstate(over="ignore"):
        return column_peaks(X), column_peaks(y), float(np.sum(w)), float(w.max())
