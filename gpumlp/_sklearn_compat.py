"""scikit-learn's estimator protocol, without importing scikit-learn.

scikit-learn is optional, and importing it takes about a second, so
``import gpumlp`` does not. The light ``BaseEstimator`` and
``RegressorMixin`` here give ``get_params``/``set_params`` (nested ones too),
a compact ``repr`` and the ``__sklearn_tags__`` hook that scikit-learn >= 1.6
asks for (built from scikit-learn's own tag classes, imported only then), so
the estimator works with ``clone``, pipelines, grid searches and
``parametrize_with_checks``.

The exception and warning, ``NotFittedError`` and ``ConvergenceWarning``,
are gpumlp's own; when scikit-learn has been imported in the process, what
is raised (:func:`not_fitted_error`, :func:`convergence_warning`) also
subclasses scikit-learn's class of the same name, so code that catches or
filters either one works, and a process that never uses scikit-learn never
pays for importing it.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys

__all__ = ["BaseEstimator", "ConvergenceWarning", "NotFittedError", "RegressorMixin",
           "UndefinedMetricWarning", "convergence_warning", "not_fitted_error",
           "undefined_metric_warning"]


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


class ConvergenceWarning(UserWarning):
    """The solver stopped at ``max_iter`` before converging."""


class UndefinedMetricWarning(UserWarning):
    """A score that is not defined for the data given (R² of one sample)."""


def _with_sklearn(ours, name):
    """``ours``, or when scikit-learn is already imported, a subclass of it and of
    scikit-learn's class of the same name, so that filters on either match.

    scikit-learn is never imported here: a process that has not imported it
    cannot be filtering on its classes, and importing it costs a second.
    """
    exceptions = sys.modules.get("sklearn.exceptions")
    if exceptions is None:
        return ours
    return _both(ours, getattr(exceptions, name))


@functools.cache
def _both(ours, theirs):
    return type(ours.__name__, (ours, theirs), {"__module__": ours.__module__,
                                                "__doc__": ours.__doc__})


def undefined_metric_warning():
    """The class to warn with for an undefined score: see :func:`_with_sklearn`."""
    return _with_sklearn(UndefinedMetricWarning, "UndefinedMetricWarning")


def not_fitted_error():
    """The class to raise before ``fit``: see :func:`_with_sklearn`."""
    return _with_sklearn(NotFittedError, "NotFittedError")


def convergence_warning():
    """The class to warn with at ``max_iter``: see :func:`_with_sklearn`."""
    return _with_sklearn(ConvergenceWarning, "ConvergenceWarning")


class BaseEstimator:
    """Parameters from the ``__init__`` signature, as scikit-learn defines them."""

    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep=True):
        params = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update({f"{name}__{k}": v for k, v in value.get_params().items()})
            params[name] = value
        return params

    def set_params(self, **params):
        valid = self._get_param_names()
        nested = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        changed = []
        for name in self._get_param_names():
            value = getattr(self, name)
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = value is default or bool(value == default)
            except Exception:  # arrays and other objects without a plain ==
                same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False),
                    transformer_tags=None, regressor_tags=None, classifier_tags=None)


class RegressorMixin:
    """Marks a regressor for scikit-learn, and gives it ``score``."""

    _estimator_type = "regressor"

    def score(self, X, y, sample_weight=None):
        """R² of the predictions, averaged uniformly over outputs.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
            ``(n,)`` and ``(n, 1)`` mean the same; any other difference from
            the predictions' shape is an error.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        float
        """
        from .metrics import score

        result = score(y, self.predict(X), sample_weight, type(self).__name__)
        if math.isnan(result) and len(X) < 2:   # as scikit-learn's r2_score: NaN, warned
            import warnings

            warnings.warn("R^2 score is not well-defined with less than two samples.",
                          undefined_metric_warning(), stacklevel=2)
        return result

    def __sklearn_tags__(self):
        from sklearn.utils import RegressorTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "regressor"
        tags.regressor_tags = RegressorTags()
        tags.target_tags.required = True
        return tags
