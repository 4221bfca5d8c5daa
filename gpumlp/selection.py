"""Choosing a StandardizedRegressor's L2 penalty by cross-validation (opt-in).

``StandardizedRegressor(alphas=(1.0, 0.1, 0.01))`` does not fix ``alpha``
but chooses it per dataset, by a rule stated here once:

* the training rows are split into :data:`DEFAULT_FOLDS` folds (slices of a
  seeded permutation, so every row is held out once); for each candidate
  and fold a fresh copy of the regressor is fit, from its own initial
  weights, on the other folds and scored by R² on the held-out fold;
* the candidate with the highest mean held-out R² wins (a tie goes to the
  larger alpha, the simpler model); the regressor is then fit on all rows
  with it, exactly as it would be with that alpha given, so the final fit
  is an ordinary one (and certifiable as one).

A fold's fit sees ``m`` of the ``n`` rows. The L2 term is ``alpha / (2n)
||W||²`` in scikit-learn's units, beside a data term that is a mean over
the rows: relative to the *sum* of squared errors, which grows with the
data, the penalty is ``alpha ||W||²`` whatever ``n``. A fold's fit on fewer
rows therefore gets ``alpha * m / n``, so that it weighs the penalty against
its data as the final fit on ``n`` rows weighs ``alpha``.

It costs ``len(alphas) * n_folds`` extra fits. On the real-data benchmark
(docs/real-data.md) the decade grid :data:`DEFAULT_ALPHAS` with 5 folds
beat the fixed default's R² but took 4.6 times scikit-learn's Adam
pipeline's fit time, so it is not the default.

The whole search is kept as a plain dict (:func:`search_alpha`'s return
value, ``StandardizedRegressor.alpha_search_``) and saved with the model.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ._checks import effective_rows
from .devices import device_of
from .training import TrainingDivergedError

__all__ = ["DEFAULT_ALPHAS", "DEFAULT_FOLDS", "check_alphas", "search_alpha"]

#: A decade grid around the default's 0.1, over the range the benchmark's
#: datasets prefer (docs/real-data.md): the grid that was measured.
DEFAULT_ALPHAS = (1.0, 0.1, 0.01)

#: Folds of the search: the common 5, each holding out a fifth of the rows.
DEFAULT_FOLDS = 5


def check_alphas(alphas, owner="StandardizedRegressor"):
    """``alphas`` as a tuple of floats, largest first; None unchanged.

    Raises
    ------
    ValueError
        For anything else: a string, a number, an empty grid, or a value
        that is not a finite number >= 0.
    """
    if alphas is None:
        return alphas
    if isinstance(alphas, str) or not hasattr(alphas, "__iter__"):
        raise ValueError(f"{owner}'s alphas must be None or a sequence of penalties "
                         f">= 0 such as {DEFAULT_ALPHAS}, got {alphas!r}.")
    values = []
    for value in alphas:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, (bool, str)) or not math.isfinite(number) or number < 0:
            raise ValueError(f"{owner}'s alphas hold {value!r}; each must be a finite "
                             f"number >= 0.")
        values.append(number)
    if not values:
        raise ValueError(f"{owner}'s alphas is empty; pass at least one penalty, "
                         f"or None to keep the regressor's own alpha.")
    return tuple(sorted(set(values), reverse=True))


def search_alpha(regressor, X, y, sample_weight=None, *, alphas=DEFAULT_ALPHAS,
                 n_folds=DEFAULT_FOLDS) -> dict:
    """Score each of ``alphas`` by ``n_folds``-fold cross-validation of ``regressor``.

    Parameters
    ----------
    regressor : MLPRegressor
        The template: each fold fits a fresh copy of its parameters (with
        ``warm_start`` off and ``verbose`` off); it is not changed.
    X : array, shape (n_samples, n_features)
        Any array-API array (in memory), already standardised.
    y : array, shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : NumPy array, shape (n_samples,), optional
        Passed to each fold's fit and to its held-out R².
    alphas : sequence of float
        The candidates.
    n_folds : int
        At least 2, and at most half the rows (each held-out fold needs two
        rows for its R²).

    Returns
    -------
    dict
        ``alphas`` (the candidates, largest first), ``scores`` (a list per
        alpha of its held-out R² per fold; None for a fold whose fit
        diverged), ``mean_scores`` (None for an alpha that diverged on a
        fold: it is not chosen), ``alpha`` (the chosen one), ``n_folds``,
        ``fold_seed`` (the seed of the rows' permutation) and
        ``not_converged`` (how many fold fits ended at ``max_iter``).
    """
    alphas = check_alphas(alphas)
    n = int(X.shape[0])
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral) or n_folds < 2:
        raise ValueError(f"n_folds must be an int >= 2, got {n_folds!r}.")
    if n < 2 * n_folds:
        # A held-out fold of one row has no R².
        raise ValueError(f"choosing alpha by {n_folds}-fold cross-validation needs at least "
                         f"{2 * n_folds} rows (two per held-out fold); there are {n}. Pass "
                         f"alphas=None and the regressor's alpha.")
    seed = regressor.random_state
    seed = int(seed) if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) \
        else 0
    # The folds are a permutation's slices: every row is held out once.
    order = np.random.default_rng(seed).permutation(n)
    folds = [np.sort(order[k::n_folds]) for k in range(n_folds)]
    place = device_of(X)
    xp = place.xp

    def rows(a, index):
        if a is None or isinstance(a, np.ndarray):   # the weights stay on the host
            return None if a is None else a[index]
        return xp.take(a, place.asarray(index), axis=0)

    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        for k, held in enumerate(folds):
            w = weights[held]
            effective = effective_rows(w)
            if effective < 2:
                raise ValueError(
                    f"choosing alpha by {n_folds}-fold cross-validation: held-out fold "
                    f"{k + 1} holds {np.count_nonzero(w > 0)} row(s) of sample_weight above "
                    f"0 (of {len(held)}), as many as {effective:.3g} by their weights "
                    f"((sum w)^2 / sum w^2), so its R² is not defined. Drop the rows of "
                    f"weight 0 (they do not count in the fit), or pass alphas=None and the "
                    f"regressor's own alpha.")
    params = regressor.get_params()
    params.update(warm_start=False, verbose=False)
    scores = [[] for _ in alphas]
    not_converged = 0
    for held in folds:
        kept = np.setdiff1d(order, held)
        X_fit, y_fit, w_fit = rows(X, kept), rows(y, kept), rows(sample_weight, kept)
        X_held, y_held, w_held = rows(X, held), rows(y, held), rows(sample_weight, held)
        for i, alpha in enumerate(alphas):
            # The penalty weighed against m rows as alpha is against n (module docs).
            fold_model = type(regressor)(**{**params, "alpha": alpha * len(kept) / n})
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    fold_model.fit(X_fit, y_fit, w_fit)
                except TrainingDivergedError:
                    scores[i].append(None)   # out of the running (JSON has no -inf)
                    continue
                except ValueError as exc:
                    # Say whose fit it was: a fold's, not the user's.
                    raise ValueError(f"choosing alpha by {n_folds}-fold cross-validation, "
                                     f"the fit of fold {len(scores[i]) + 1} (alpha {alpha:g}, "
                                     f"{len(kept)} of the {n} rows) was refused: {exc}") \
                        from exc
            not_converged += any(w.category.__name__ == "ConvergenceWarning" for w in caught)
            scores[i].append(float(fold_model.score(X_held, y_held, w_held)))
    means = [None if None in s else float(np.mean(s)) for s in scores]
    # The first best: the largest alpha among equals; the largest of all
    # where every candidate diverged on some fold.
    best = max(range(len(alphas)),
               key=lambda i: (means[i] is not None, means[i] or 0.0, -i))
    return {"alphas": list(alphas), "scores": scores, "mean_scores": means,
            "alpha": alphas[best], "n_folds": n_folds, "fold_seed": seed,
            "not_converged": not_converged}
