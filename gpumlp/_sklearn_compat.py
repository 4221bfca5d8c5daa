"""scikit-learn's base classes and exceptions, or small stand-ins without it.

scikit-learn is optional. When it is installed, the estimator inherits its
``BaseEstimator`` and ``RegressorMixin`` and raises its ``NotFittedError`` and
``ConvergenceWarning``, so it works in pipelines, grid searches and
``parametrize_with_checks``. Without it, the stand-ins below give the same
``get_params``/``set_params``/``repr`` manners and exception types (a
``NotFittedError`` that is both a ValueError and an AttributeError).
"""

from __future__ import annotations

import inspect

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    HAVE_SKLEARN = False

    class NotFittedError(ValueError, AttributeError):
        """The estimator is used before ``fit``."""

    class ConvergenceWarning(UserWarning):
        """The solver stopped at ``max_iter`` before converging."""

    class BaseEstimator:
        """``get_params``/``set_params`` from the ``__init__`` signature."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values() if p.name != "self")

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for {type(self).__name__}; "
                        f"valid parameters are {valid}."
                    )
                setattr(self, key, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class RegressorMixin:
        """Marks a regressor; ``score`` is defined by the estimator itself."""

        _estimator_type = "regressor"

__all__ = [
    "HAVE_SKLEARN",
    "BaseEstimator",
    "ConvergenceWarning",
    "NotFittedError",
    "RegressorMixin",
]
