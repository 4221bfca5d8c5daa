"""``StandardizedRegressor``: standardise X and y around an MLPRegressor.

Gradient descent on a sigmoid network wants inputs and targets of unit
scale. This wrapper learns each column's mean and standard deviation from the
training data, trains the regressor on the standardised data, and undoes the
target's scaling in ``predict``. The scalers are fitted state, saved with the
model, so predictions on raw data stay right wherever the model is loaded.
"""

from __future__ import annotations

import copy

import array_api_compat as aac
import numpy as np

from ._checks import (
    check_eval_set,
    check_feature_names,
    check_sample_weight,
    check_X,
    check_y,
    feature_names,
    resolve_dtype,
)
from ._sklearn_compat import BaseEstimator, RegressorMixin, not_fitted_error
from .devices import device_of, move
from .estimator import MLPRegressor
from .selection import check_alphas, search_alpha

__all__ = ["DEFAULT_PARAMS", "StandardizedRegressor", "default_regressor", "mean_scale"]


#: The parameters of the regressor :class:`StandardizedRegressor` trains when
#: given none, and of ``gpumlp train``: chosen on the real-data benchmark
#: (``scripts/bench_realdata.py``, docs/real-data.md). Adam at the
#: estimator's rate (``learning_rate_init="auto"``: 0.01) with an L2 penalty of
#: 0.1, up to 2000 epochs, stopped after 20 epochs without progress (not
#: scikit-learn's 10: an epoch of 200-row batches on a few thousand rows is
#: a few noisy steps, and 10 of them ended 11 of 600 seeded fits of the
#: README's example on a plateau at R² 0.29; none with 20), the rest
#: MLPRegressor's defaults.
DEFAULT_PARAMS = {"solver": "adam", "alpha": 0.1, "max_iter": 2000, "n_iter_no_change": 20}


def default_regressor() -> MLPRegressor:
    """The regressor :class:`StandardizedRegressor` trains when given none.

    Returns
    -------
    MLPRegressor
        A new, unfitted ``MLPRegressor(**DEFAULT_PARAMS)``.
    """
    return MLPRegressor(**DEFAULT_PARAMS)


def mean_scale(x):
    """Each column's mean and standard deviation; a constant column gets a scale of 1.

    Parameters
    ----------
    x : array, shape (n_samples, n_columns)
        Any array-API array, or a dask array (then both are computed on the
        workers, in one pass, and returned as NumPy arrays).

    Returns
    -------
    mean, scale : arrays, shape (n_columns,)
    """
    if isinstance(x, np.ndarray):
        # NumPy sums a column in an order that follows the memory layout (down a
        # Fortran column pairwise, across C rows one by one), so the same numbers
        # would give means that differ in the last bit: the statistics come from
        # one layout, so that a fit and its certificate agree bit for bit.
        x = np.ascontiguousarray(x)
    xp = aac.array_namespace(x)
    mean = xp.mean(x, axis=0)
    # The deviations are divided by their largest magnitude before squaring,
    # so values near the dtype's limit do not overflow the variance.
    deviation = x - mean
    peak = xp.max(xp.abs(deviation), axis=0)
    peak = xp.where(peak > 0, peak, xp.ones_like(peak))
    scale = peak * xp.sqrt(xp.mean((deviation / peak) ** 2, axis=0))
    if aac.is_dask_array(x):
        # Two small vectors, computed on the workers in one pass.
        import dask

        mean, scale = (np.asarray(v) for v in dask.compute(mean, scale))
        xp = aac.array_namespace(mean)
    # A constant column keeps a scale of 1 rather than dividing by zero.
    return mean, xp.where(scale > 0, scale, xp.ones_like(scale))


#: A fitted StandardizedRegressor's own state (the regressor's is its own).
_FITTED = ("feature_names_in_", "x_mean_", "x_scale_", "y_mean_", "y_scale_", "regressor_",
           "alpha_search_")


class StandardizedRegressor(RegressorMixin, BaseEstimator):
    """Fit ``regressor`` on standardised X and y; predict in the original units.

    Parameters
    ----------
    regressor : MLPRegressor, optional
        A template: ``fit`` trains a new regressor with its parameters
        (``get_params``, as scikit-learn's ``clone``), ``regressor_``, and
        never changes the template, so that two StandardizedRegressors built
        on one template are independent. Default: :func:`default_regressor`,
        ``MLPRegressor(solver="adam", alpha=0.1, max_iter=2000,
        n_iter_no_change=20)``, the defaults that did best on real data
        (``scripts/bench_realdata.py``).
    alphas : None or sequence of float, default=None
        None: the regressor's own alpha. A sequence, such as
        ``gpumlp.selection.DEFAULT_ALPHAS`` (1, 0.1, 0.01): the regressor's
        alpha is set to the one of these with the best mean held-out R² in
        ``selection.DEFAULT_FOLDS``-fold cross-validation (:mod:`gpumlp.selection`;
        ``len(alphas) * 5`` extra fits), then it is fit on all rows.
        In-memory data only.

    Attributes
    ----------
    regressor_ : MLPRegressor
        The regressor ``fit`` trained. A fit whose template has
        ``warm_start=True`` continues it, given the template's parameters
        (``set_params(regressor__warm_start=True, regressor__max_iter=...)``);
        so does one where ``regressor_`` itself was given ``warm_start=True``,
        with its own parameters. Any other fit trains a new one.
    x_mean_, x_scale_ : arrays, shape (n_features,)
    y_mean_, y_scale_ : arrays, shape (n_outputs,)
    alpha_search_ : dict or None
        The choice of alpha (:func:`gpumlp.selection.search_alpha`): the
        candidates, their held-out R² per fold, the chosen ``alpha``; None
        when the fit chose none.
    """

    def __init__(self, regressor=None, alphas=None):
        self.regressor = regressor
        self.alphas = alphas

    def fit(self, X, y, sample_weight=None, *, eval_set=None, callback=None, client=None):
        """Learn the scalers from ``X`` and ``y``, then fit the regressor.

        ``eval_set`` is scaled with the training statistics (a dataframe's
        columns must be the training frame's, in its order). Dask arrays are
        scaled lazily, with statistics computed on the workers, and trained
        on ``client`` (see :mod:`gpumlp.distributed`). ``sample_weight`` is
        passed to the regressor (the scalers are unweighted). With
        ``loss="poisson"`` the target is only scaled, not centred, so that it
        stays non-negative.

        The regressor trained is a new one with the template's parameters
        (``self.regressor``'s, which ``fit`` never changes), or, when this
        model is fitted and its template has ``warm_start=True``, the fitted
        ``regressor_``, given the template's parameters and continued from
        its weights (also when ``regressor_`` itself has ``warm_start=True``:
        then with its own parameters). The scalers are learnt again from
        ``X`` and ``y``: the same data gives the same ones.

        A fit refused before the regressor's weights change (bad
        ``sample_weight``, say) leaves a fitted model as it was: its scalers
        are those its weights were trained with. A fit stopped once training
        began (an interrupt, a divergence) keeps what it trained, as
        ``MLPRegressor`` does.
        """
        kept = {name: self.__dict__[name] for name in _FITTED if name in self.__dict__}
        regressor = kept.get("regressor_")
        weights = getattr(regressor, "coefs_", None)
        # A warm start gives the fitted regressor_ the template's parameters
        # before training: a refusal must take them back with the rest.
        params = regressor.get_params(deep=False) if regressor is not None else None
        try:
            return self._fit(X, y, sample_weight, eval_set, callback, client)
        except BaseException:
            # Trained is the regressor this fit set, if it has weights other
            # than those it had before (a new one has none until it trains).
            trained = self.__dict__.get("regressor_")
            untouched = getattr(trained, "coefs_", None) is None or (
                trained is regressor and trained.coefs_ is weights)
            if regressor is not None and untouched:
                for name in _FITTED:
                    self.__dict__.pop(name, None)
                self.__dict__.update(kept)
                regressor.set_params(**params)
            raise

    def _fit(self, X, y, sample_weight, eval_set, callback, client):
        if self.regressor is not None and not isinstance(self.regressor, MLPRegressor):
            raise TypeError(f"{type(self).__name__}'s regressor must be a gpumlp "
                            f"MLPRegressor, not {type(self.regressor).__name__}: its scalers, "
                            f"dtype checks and model files are made for it. For another "
                            f"estimator, scale with scikit-learn (make_pipeline(StandardScaler(),"
                            f" TransformedTargetRegressor(...))).")
        names = feature_names(X)
        if names is not None:
            self.feature_names_in_ = names
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if not aac.is_dask_array(X):
            X = check_X(X, type(self).__name__)
            y = check_y(y, X.shape[0], type(self).__name__)
        elif y is not None and not aac.is_dask_array(y):
            from .distributed import as_dask_like_rows

            y = as_dask_like_rows(y, X)
        xp = aac.array_namespace(X)
        X = xp.astype(X, xp.float64) if not xp.isdtype(X.dtype, "real floating") else X
        # y keeps its own precision (float32 X must not round a float64 y).
        yp = aac.array_namespace(y)
        y = y if yp.isdtype(y.dtype, "real floating") else yp.astype(y, yp.float64)
        y_2d = xp.reshape(y, (y.shape[0], -1))
        self.x_mean_, self.x_scale_ = mean_scale(X)
        self.y_mean_, self.y_scale_ = mean_scale(y_2d)
        if aac.is_dask_array(X) and not (np.all(np.isfinite(self.x_mean_))
                                         and np.all(np.isfinite(self.y_mean_))):
            # A NaN spreads to every scaled row: report it where it is, in X or y.
            from .distributed import check_finite

            check_finite(X, "X")
            check_finite(y, "y")
        alphas = check_alphas(self.alphas, type(self).__name__)
        self.regressor_ = self._regressor_to_train()
        if getattr(self.regressor_, "loss", "squared_error") == "poisson":
            self.y_mean_ = self.y_mean_ * 0.0   # counts keep their sign: scale only
        self._check_representable(X, y)
        if eval_set is not None:
            X_val, y_val = check_eval_set(eval_set)
            # Scaled, it reaches the regressor as a bare array: its names are checked here.
            check_feature_names(getattr(self, "feature_names_in_", None), X_val,
                                type(self).__name__)
            eval_set = (self._scale_X(X_val), self._scale_y(y_val))
        extra = {} if client is None else {"client": client}
        X_scaled, y_scaled = self._scale_X(X), self._scale_y(y)
        self.alpha_search_ = self._choose_alpha(alphas, X_scaled, y_scaled, sample_weight)
        self.regressor_.fit(X_scaled, y_scaled, sample_weight,
                            eval_set=eval_set, callback=callback, **extra)
        return self

    def _regressor_to_train(self):
        """A new regressor with the template's parameters, or the fitted one on a warm start.

        The template's mutable parameters (a NumPy ``Generator`` or
        ``RandomState`` as ``random_state``) are copied, so that training
        never draws from, and so never advances, the template's generator.
        """
        template = self.regressor if self.regressor is not None else default_regressor()
        params = {name: copy.deepcopy(value)
                  if isinstance(value, (np.random.Generator, np.random.RandomState)) else value
                  for name, value in template.get_params(deep=False).items()}
        fitted = self.__dict__.get("regressor_")
        if type(fitted) is type(template) and hasattr(fitted, "coefs_"):
            if params.get("warm_start"):
                return fitted.set_params(**params)
            if getattr(fitted, "warm_start", False):
                # warm_start set on the fitted regressor_ itself (the way
                # before templates were copied): continued with its own parameters.
                return fitted
        return type(template)(**params)

    def _choose_alpha(self, alphas, X, y, sample_weight):
        """The regressor's alpha set by cross-validation among ``alphas``; the search's record."""
        if alphas is None:
            return None
        if aac.is_dask_array(X):
            raise ValueError(f"{type(self).__name__}'s alphas={self.alphas!r} chooses alpha "
                             f"by cross-validation, which needs in-memory data, not Dask "
                             f"arrays; pass alphas=None and the regressor's alpha, or "
                             f"compute the arrays.")
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X.shape[0])
        record = search_alpha(self.regressor_, X, y, sample_weight, alphas=alphas)
        self.regressor_.set_params(alpha=record["alpha"])
        return record

    def _check_representable(self, X, y):
        """Refuse a target whose units the regressor's dtype cannot hold.

        Predictions come back as ``y_scaled * y_scale + y_mean`` in the
        regressor's dtype; in float32 a target beyond about 3.4e38 would
        come back as infinity.
        """
        dtype = resolve_dtype(self.regressor_.dtype, X)
        if aac.is_dask_array(y):
            return  # the workers' chunks are checked when they are read
        yp = aac.array_namespace(y)
        largest = float(yp.max(yp.abs(yp.astype(y, yp.float64))))
        if largest > float(np.finfo(dtype).max):
            raise ValueError(
                f"y holds values too large for {dtype} (up to {largest:.3g}, which "
                f"overflows to infinity); pass dtype='float64' to the regressor (on the "
                f"command line: --dtype float64), or rescale y.")

    def _scale_X(self, X, purpose="fitting"):
        if aac.is_dask_array(X):
            return (X - np.asarray(self.x_mean_)) / np.asarray(self.x_scale_)
        X = check_X(X, type(self).__name__, n_features=self.x_mean_.shape[0], purpose=purpose)
        place = device_of(X)
        return (X - move(self.x_mean_, place)) / move(self.x_scale_, place)

    def _scale_y(self, y):
        if aac.is_dask_array(y):
            mean, scale = np.asarray(self.y_mean_), np.asarray(self.y_scale_)
            return (y - mean) / scale if y.ndim == 2 else (y - mean[0]) / scale[0]
        y = check_y(y, y.shape[0], type(self).__name__)
        xp = aac.array_namespace(y)
        place = device_of(y)
        mean, scale = move(self.y_mean_, place), move(self.y_scale_, place)
        if y.ndim == 1:
            mean, scale = xp.reshape(mean, ()), xp.reshape(scale, ())
        return (y - mean) / scale

    def predict(self, X):
        """Predictions for raw ``X``, in the target's original units.

        Returned in float64 whatever the regressor's dtype (float32 only on a
        device without float64, Apple's MPS), as the target's scalers are kept.
        """
        if not hasattr(self, "regressor_"):
            raise not_fitted_error()(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")
        check_feature_names(getattr(self, "feature_names_in_", None), X, type(self).__name__)
        y_scaled = self.regressor_.predict(self._scale_X(X, "predicting"))
        if aac.is_dask_array(y_scaled):
            mean, scale = np.asarray(self.y_mean_), np.asarray(self.y_scale_)
            if y_scaled.ndim == 1:
                mean, scale = mean[0], scale[0]
            return y_scaled * scale + mean
        xp = aac.array_namespace(y_scaled)
        place = device_of(y_scaled)
        # The target's units are restored in float64 (where the device has it),
        # as its scalers are kept: a float32 network's prediction of y + 1e8
        # would otherwise come back rounded to a multiple of 8.
        wide = xp.float64 if _has_float64(place) else y_scaled.dtype
        with place.context():   # JAX: float64 on
            y_scaled = xp.astype(y_scaled, wide)
            mean = xp.astype(move(self.y_mean_, place), wide)
            scale = xp.astype(move(self.y_scale_, place), wide)
            if y_scaled.ndim == 1:
                mean, scale = xp.reshape(mean, ()), xp.reshape(scale, ())
            return y_scaled * scale + mean


def _has_float64(place) -> bool:
    """Whether arrays on ``place`` can be float64 (Apple's MPS cannot)."""
    try:
        place.check_dtype("float64")
    except ValueError:
        return False
    return True
