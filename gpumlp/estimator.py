"""``MLPRegressor``: the scikit-learn-style face of the kernels.

This is the edge where data moves: inputs are validated, moved once onto the
training device in the training dtype, and fitted weights are copied back once
at the end of ``fit`` into the kind of array the user passed (NumPy for
NumPy or lists). The loop in between never leaves the device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import os
import warnings

import array_api_compat as aac
import numpy as np

from . import fastpath, kernels
from ._checks import (
    DataSummary,
    check_dtype_limits,
    check_eval_set,
    check_feature_names,
    check_non_negative,
    check_params,
    check_sample_weight,
    check_validation_fraction,
    check_X,
    check_y,
    effective_rows,
    feature_names,
    resolve_dtype,
)
from ._fitrecord import PendingFingerprint, Recorder, model_digest, seeded_generator
from ._sklearn_compat import (
    BaseEstimator,
    RegressorMixin,
    convergence_warning,
    not_fitted_error,
)
from .devices import Device, device_of, dtype_name, get_device, move, to_numpy
from .initialization import as_generator, glorot_uniform
from .losses import get_loss
from .solvers import AutoGD, AutoGDState, LBFGSState, make_solver, map_state, solver_name
from .sources import ArraySource, Network
from .training import Trainer

__all__ = ["GD_MAX_ITER", "MLPRegressor", "UnscaledDataWarning", "far_from_standardised"]


class UnscaledDataWarning(UserWarning):
    """X's columns or y are far from standardised, which gradient-based training handles badly."""


#: A column is "far from standardised" when its standard deviation is above
#: ``SCALE_LIMITS[1]`` or (not constant) below ``SCALE_LIMITS[0]``, or its mean
#: is more than ``MEAN_LIMIT`` away from 0 (in its own units). A one-hot column
#: with one row in 10,000 set has a deviation of 0.01, so it passes.
SCALE_LIMITS = (0.01, 10.0)
MEAN_LIMIT = 10.0


def far_from_standardised(a) -> list[int]:
    """The columns of ``a`` far from mean 0 and deviation 1 (see :data:`SCALE_LIMITS`).

    Parameters
    ----------
    a : array, shape (n_samples, n_columns)
        Any array-API array; two vectors are read back to the host.

    Returns
    -------
    list of int
        The offending columns' indices (empty: close enough).
    """
    xp = aac.array_namespace(a)
    if not xp.isdtype(a.dtype, "real floating"):
        a = xp.astype(a, xp.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mean = xp.mean(a, axis=0)
        deviation = xp.sqrt(xp.mean((a - mean) ** 2, axis=0))
        mean, deviation = to_numpy(mean), to_numpy(deviation)
        low, high = SCALE_LIMITS
        bad = ((deviation > high) | ((deviation > 0) & (deviation < low))
               | (np.abs(mean) > MEAN_LIMIT) | ~np.isfinite(deviation))
    return [int(j) for j in np.flatnonzero(bad)]


def _warn_if_unscaled(X, y, loss):
    """Warn once when X or y is far from standardised (see :func:`far_from_standardised`)."""
    columns = far_from_standardised(X)
    xp = aac.array_namespace(y)
    target = [] if loss == "poisson" else far_from_standardised(
        xp.reshape(y, (y.shape[0], -1)))
    if not columns and not target:
        return
    parts = []
    if columns:
        shown = ", ".join(map(str, columns[:5])) + (", ..." if len(columns) > 5 else "")
        parts.append(f"{len(columns)} column(s) of X (index {shown})")
    if target:
        parts.append("y")
    import warnings

    verb = "is" if parts == ["y"] else "are"
    warnings.warn(
        f"{' and '.join(parts)} {verb} far from mean 0 and standard deviation 1; gradient-based "
        f"training on such data learns slowly or not at all. Standardise them: use "
        f"gpumlp.StandardizedRegressor(MLPRegressor(...)), which scales X and y and "
        f"predicts in y's units, or a scikit-learn Pipeline with StandardScaler (for y, "
        f"TransformedTargetRegressor).", UnscaledDataWarning, stacklevel=4)

#: The trainer's stopping-rule bookkeeping that a checkpoint carries.
_HISTORY = ("validation_losses", "validation_scores", "best_loss", "best_validation_score",
            "no_improvement_count", "samples_seen")
#: ``learning_rate_init="auto"`` for ``"sgd"`` and ``"adam"``: a fixed rate.
_AUTO_RATE = 0.01
#: ``max_iter="auto"``: scikit-learn's 200 epochs, and for ``"gd"`` (one step
#: an epoch) this many.
SKLEARN_MAX_ITER = 200
GD_MAX_ITER = 5000


def _host_pair(pair, name):
    """``eval_set`` as two checked NumPy arrays, for the data's fingerprint; None otherwise."""
    if pair is None or not all(isinstance(a, np.ndarray) for a in pair):
        return pair
    X_val = check_X(pair[0], name)
    return X_val, check_y(pair[1], X_val.shape[0], name)


def _recording(recorder, callback):
    """The fit callback with the fit record's bookkeeping run first."""
    def on_epoch(epoch, loss, validation_loss):
        recorder.on_epoch()
        if callback is not None:
            callback(epoch, loss, validation_loss)

    return on_epoch


def _state_array_on(a, device, dtype):
    """A solver-state array on ``device``; floating ones in ``dtype``, counts as they are."""
    floating = aac.array_namespace(a).isdtype(a.dtype, "real floating")
    return move(a, device, dtype if floating else None)


def _network_bytes(layer_sizes, dtype):
    """Bytes of a network's weights and intercepts and of their gradients (two copies).

    The least any solver holds at once; momenta, Adam's moments and
    L-BFGS's memory add more copies.
    """
    n_params = sum((fan_in + 1) * fan_out
                   for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]))
    return 2 * n_params * np.dtype(dtype).itemsize


def _gib(n_bytes):
    return f"{n_bytes / 2**30:.3g} GiB"


def _check_network_memory(network_bytes, device, hidden):
    """Refuse, before allocating, a network larger than this machine's memory (CPU only).

    Other devices report their own out-of-memory error, which fit then
    explains with the same estimate.
    """
    if device.kind != "cpu":
        return
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return   # not known here (Windows)
    if network_bytes > physical:
        raise MemoryError(
            f"hidden_layer_sizes={tuple(hidden)} makes a network whose weights and "
            f"gradients alone need about {_gib(network_bytes)}, more than this machine's "
            f"{_gib(physical)} of memory. Use smaller hidden layers.")


def _check_validation_split(validation: ArraySource, dtype) -> None:
    """Refuse early stopping on held-out rows whose R² cannot rank epochs.

    R² of a constant target (in the training dtype, in which the scores are
    computed) is 0 by convention whatever the model, and rows that all
    weigh 0 have none: early stopping would stop on a flat line, keeping
    epoch 1. The same as an ``eval_set`` of constant targets is refused.
    """
    y = np.asarray(to_numpy(validation.y))
    y = y.reshape(y.shape[0], -1)
    n = y.shape[0]
    advice = ("Pass a larger validation_fraction, an eval_set whose targets vary, or "
              "early_stopping=False.")
    if validation.sample_weight is not None:
        w = np.asarray(to_numpy(validation.sample_weight), dtype=np.float64).reshape(-1)
        weighted = w > 0
        effective = effective_rows(w)
        if effective < 2:
            raise ValueError(
                f"early stopping's validation split ({n} rows held out at random) holds "
                f"{np.count_nonzero(weighted)} row(s) of sample_weight above 0, as many as "
                f"{effective:.3g} row(s) by their weights ((sum w)^2 / sum w^2), so its R² "
                f"(the criterion) cannot tell one epoch from another. {advice}")
        y = y[weighted]
    if np.all(y.max(axis=0) == y.min(axis=0)):
        rows = " on its rows of weight above 0" if validation.sample_weight is not None else ""
        raise ValueError(f"early stopping's validation split ({n} rows held out at random) has "
                         f"a y that is constant in {y.dtype.name}{rows}, so its R² (the "
                         f"criterion) is 0 whatever the model and cannot tell one epoch from "
                         f"another. {advice}")


class MLPRegressor(RegressorMixin, BaseEstimator):
    """Multi-layer perceptron regressor trained by hand-written array-API kernels.

    The default is exactly the specified network: one sigmoid hidden layer, a
    linear output, the mean-squared-error loss ``mean((y - y_pred)**2)`` (not
    half of it) and full-batch gradient descent. The same code trains on NumPy
    (CPU), CuPy (CUDA) or any array-API namespace.

    Every parameter scikit-learn's ``MLPRegressor`` has means what it means
    there (issue 12); the README's "Coming from scikit-learn" lists the
    differences of default, and the one of scale: our squared-error loss is
    twice scikit-learn's, so the same trajectory takes half its learning rate.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(100,)
        Width of each hidden layer.
    activation : {"sigmoid", "logistic", "tanh", "relu", "identity"}, default="sigmoid"
        Hidden-layer activation; ``"logistic"`` is an alias of ``"sigmoid"``.
        The output layer is always linear.
    loss : {"squared_error", "poisson"}, default="squared_error"
        ``"squared_error"``: the mean squared error (twice scikit-learn's half
        of it). ``"poisson"``: half the Poisson deviance with an ``exp``
        output, exactly scikit-learn's; ``y`` must be non-negative.
    solver : {"gd", "sgd", "adam", "lbfgs"}, default="gd"
        ``"gd"``: full-batch gradient descent, the specified algorithm.
        ``"sgd"``: minibatch SGD with optional (Nesterov) momentum.
        ``"adam"``: Adam on minibatches.
        ``"lbfgs"``: full-batch L-BFGS with a strong-Wolfe line search
        (:class:`gpumlp.solvers.LBFGS`); often best for small data sets.
    alpha : float, default=0.0
        L2 penalty, with scikit-learn's meaning: the same ``alpha`` gives the
        same model. The loss gains ``(alpha / n) * sum ||W||**2`` for the
        squared error and one output (twice scikit-learn's term, as the
        loss is twice theirs); see :mod:`gpumlp.kernels` for the general form.
    batch_size : int or "auto", default="auto"
        Minibatch size for ``"sgd"`` and ``"adam"``; ``"auto"`` is
        ``min(200, n_samples)``. Ignored by ``"gd"`` and ``"lbfgs"``.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        The schedule for ``"sgd"`` and for ``"gd"`` at a fixed rate
        (scikit-learn's meanings): ``"invscaling"`` sets the rate to
        ``learning_rate_init / (t + 1) ** power_t`` after each epoch, ``t``
        being the rows seen; ``"adaptive"`` divides it by 5 whenever the loss
        has not improved by ``tol`` for more than ``n_iter_no_change`` epochs,
        stopping only when it is at most 1e-6. Adam, L-BFGS and
        ``learning_rate_init="auto"`` ignore it.
    power_t : float, default=0.5
        The exponent of ``"invscaling"``. Where ``(t + 1) ** power_t`` is
        beyond a float, the rate underflows to 0.0 (scikit-learn raises
        OverflowError).
    learning_rate_init : float or "auto", default="auto"
        Step size. ``"auto"``: for ``"gd"``, set from the loss's curvature
        and adapted as training proceeds (see :mod:`gpumlp.step_size`): the
        largest stable rate shrinks with the width (about ``4 / h`` for a
        sigmoid layer of width ``h`` on standardised data), so no fixed rate
        suits every network. Its steps may raise the loss for a few epochs
        (never above where the search began); ``coefs_`` and ``intercepts_``
        are then the point of lowest training loss the fit measured (after
        an interrupt, the last whole epoch's, as for every solver), and the
        first plateau of the stopping rule switches to steps that never
        raise it (the second stops). For ``"sgd"`` and ``"adam"``, 0.01;
        L-BFGS needs no rate.
    max_iter : int or "auto", default="auto"
        Maximum epochs per call to ``fit`` (for ``"gd"``, one epoch is one
        step; for ``"lbfgs"``, one iteration). ``"auto"``: 200 for ``"sgd"``,
        ``"adam"`` and ``"lbfgs"`` (scikit-learn's default), and
        :data:`GD_MAX_ITER` for ``"gd"``, whose epoch is a single step: room
        to converge by its stopping rule at the sizes users have.
    max_fun : int, default=15000
        For ``"lbfgs"``: the most loss evaluations per call to ``fit``.
    shuffle : bool, default=True
        Shuffle rows each epoch when there is more than one minibatch.
    random_state : int, numpy Generator or None, default=None
        Seeds the initial weights, the batch order and the validation split.
    tol : float, default=1e-4
        For ``"sgd"`` and ``"adam"``, scikit-learn's meaning: training stops
        when the loss improves by less than ``tol`` (in the units of
        scikit-learn's loss; or the validation R² by less than ``tol``, with
        early stopping) for more than ``n_iter_no_change`` consecutive
        epochs. For ``"gd"``, a fraction of the loss, so that it means the
        same whatever the loss's scale: it stops when, for more than
        ``n_iter_no_change`` consecutive epochs, the next step is expected
        to lower the loss by at most ``tol`` times the loss (with
        ``learning_rate_init="auto"``, from the gradient and the curvature
        just measured; at a fixed rate, the last step's fall); see
        :mod:`gpumlp.training`. For ``"lbfgs"``: it stops when the largest
        entry of scikit-learn's gradient is at most ``tol`` (ours, scaled
        accordingly).
    verbose : bool, default=False
        Print the loss of each epoch.
    warm_start : bool, default=False
        Continue from the current ``coefs_`` and ``intercepts_`` (including
        arrays assigned by hand) instead of re-initialising. As in
        scikit-learn, the solver starts afresh (Adam's moments, momenta,
        the learning rate); only ``partial_fit`` keeps its state.
    momentum : float, default=0.9
        Momentum for ``"sgd"``; 0 disables it.
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum with ``"sgd"``.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows and stop on their R²;
        the weights with the best validation score are kept. Not so with
        L-BFGS (as in scikit-learn, where early stopping is for the
        stochastic solvers): it stops on its own tests and keeps its last
        weights, and warns that the held-out rows are only scored.
    validation_fraction : float, default=0.1
        The fraction of the rows held out for early stopping: in [0, 1), as
        in scikit-learn, and in (0, 1) when rows are held out (early
        stopping in ``fit`` without an ``eval_set``).
    beta_1, beta_2, epsilon : float, defaults 0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int or np.inf, default=10
        ``np.inf``: the stopping rule never fires (training runs ``max_iter``
        epochs), as in scikit-learn.
    backend : {"auto", "numpy", "cupy", "torch", "jax"} or None, default=None
        The array library that trains. ``"auto"`` is NumPy on the CPU and
        CuPy on CUDA (and PyTorch for ``device="mps"`` or ``"xpu"``, JAX for
        ``"tpu"``, the only libraries that drive them). A named backend never
        falls back to another: a missing library or device raises
        :class:`gpumlp.devices.BackendUnavailableError` naming the extra to
        install (``gpumlp[torch]``, ``gpumlp[jax]``). ``None``: arrays of a
        library other than NumPy train where they live, and NumPy input uses
        the environment variable ``GPUMLP_BACKEND`` if set, else ``"auto"``.
        Fitted weights and predictions come back as NumPy for NumPy input
        and in the input's kind otherwise, whichever backend trained.
    device : str or None, default=None
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; with PyTorch also
        ``"mps"`` and ``"xpu:N"``, with JAX ``"gpu:N"`` and ``"tpu:N"``.
        ``None`` trains where a non-NumPy input array lives (when it is an
        array of ``backend``, or ``backend`` is None or ``"auto"``), and for
        NumPy input uses the environment variable ``GPUMLP_DEVICE`` if set,
        else ``"auto"``.
    dtype : {"float32", "float64"} or None, default=None
        Computation dtype; ``None`` keeps float32 or float64 input as is and
        uses float64 for anything else.

    Attributes
    ----------
    coefs_ : list of arrays, ``coefs_[i]`` of shape (fan_in, fan_out)
    intercepts_ : list of arrays, ``intercepts_[i]`` of shape (fan_out,)
        In the kind of array ``fit`` was given (NumPy for NumPy or lists).
    loss_curve_ : list of float
        The loss of each epoch (over every call).
    loss_ : float or None
        The last loss: for ``"lbfgs"``, and ``"gd"`` with
        ``learning_rate_init="auto"``, the loss at the weights returned;
        otherwise the last epoch's (at the weights it started from).
    learning_rate_ : float or None
        The step size in force at the end of the last epoch: with
        ``learning_rate_init="auto"`` the one chosen and adapted, else
        ``learning_rate_init`` (as a schedule left it). L-BFGS takes its
        steps by a line search and uses no rate: for it this is
        ``learning_rate_init`` as given, unused.
    learning_rates_ : list of float
        The step size of each epoch (they add up over warm starts and
        ``partial_fit``, like ``loss_curve_``); for L-BFGS, the unused
        ``learning_rate_init`` (see ``learning_rate_``).
    best_loss_ : float or None
        The smallest entry of ``loss_curve_``, which the stopping rule
        compares each epoch's loss with; None with early stopping (which
        compares validation scores), as in scikit-learn. ``loss_`` can be
        lower (L-BFGS and ``"auto"``: the loss at the weights returned, after
        the last epoch's step).
    validation_scores_ : list of float or None
        R² on the validation set (early stopping or ``eval_set``) per epoch.
    validation_loss_curve_ : list of float or None
        The loss on the validation set per epoch.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs (L-BFGS iterations) run by the last call to ``fit`` or
        ``partial_fit``, as in scikit-learn. (Before issue 12 it added up over
        calls; ``len(loss_curve_)`` still does.)
    t_ : int
        Training samples seen.
    n_features_in_ : int
    n_outputs_ : int
    n_layers_ : int
    out_activation_ : str
        ``"identity"``, or ``"exp"`` for ``loss="poisson"``.
    feature_names_in_ : array of str
        The column names of a dataframe ``X`` given to ``fit`` (only then).
    device_ : Device
        Where the last ``fit`` ran.

    Examples
    --------
    >>> import numpy as np
    >>> from gpumlp import MLPRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> model = MLPRegressor(hidden_layer_sizes=(16,), max_iter=500, device="cpu",
    ...                      random_state=0).fit(X, y)
    >>> model.score(X, y) > 0.9
    True
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="sigmoid",
        *,
        loss="squared_error",
        solver="gd",
        alpha=0.0,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init="auto",
        power_t=0.5,
        max_iter="auto",
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
        device=None,
        dtype=None,
    ):
        self.loss = loss
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.max_fun = max_fun
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, sample_weight=None, *, eval_set=None, callback=None, client=None):
        """Train on ``X`` and ``y``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            NumPy, CuPy or any array-API array, a list, or a dataframe (whose
            column names become ``feature_names_in_``).
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like, shape (n_samples,), optional
            Row weights, as in scikit-learn: every mean over rows (the loss,
            its gradient, the L2 penalty's ``n``) becomes a weighted mean.
            A dask array chunked like ``X``'s rows for dask ``X``.
        eval_set : tuple (X_val, y_val), optional
            A held-out set evaluated after every epoch; its loss is recorded in
            ``validation_loss_curve_`` and its R² in ``validation_scores_``.
            With ``early_stopping=True`` it replaces the internal split.
        callback : callable, optional
            Called after every epoch as ``callback(epoch, loss, validation_loss)``.
        client : distributed.Client, optional
            For dask arrays: the cluster to train on (default: the current
            client). See :mod:`gpumlp.distributed`.

        Returns
        -------
        self

        Raises
        ------
        TrainingDivergedError
            If the loss becomes NaN or infinite; ``coefs_`` then hold the
            last finite weights.
        ValueError
            Before training, for a number beyond the training dtype's limits
            (see :func:`gpumlp._checks.check_dtype_limits`), and for bad input.
        MemoryError
            Before training, on the CPU, for a network whose weights and
            gradients alone exceed the machine's memory.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight,
                         eval_set=eval_set, callback=callback, client=client)

    def partial_fit(self, X, y, sample_weight=None, *, client=None):
        """Run one epoch on ``X`` and ``y``, continuing from the current state.

        ``sample_weight`` weights the rows as in :meth:`fit`. Not available
        with ``solver="lbfgs"``, as in scikit-learn.
        """
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers; "
                                 "lbfgs is not stochastic. Use fit with warm_start=True.")
        if self.early_stopping:
            # scikit-learn's words: one epoch has no held-out rows to stop on.
            raise ValueError("partial_fit does not support early_stopping=True; set "
                             "early_stopping=False (set_params) to train incrementally.")
        return self._fit(X, y, incremental=True, sample_weight=sample_weight, client=client)

    def _fit(self, X, y, incremental, sample_weight=None, eval_set=None, callback=None,
             client=None):
        hidden, activation = check_params(self)
        if eval_set is not None:
            check_eval_set(eval_set)
        # The held-out rows of early stopping (an eval_set replaces them).
        check_validation_fraction(self.validation_fraction, early_stopping=(
            self.early_stopping and not incremental and eval_set is None))
        name = type(self).__name__
        continuing = (incremental or self.warm_start) and hasattr(self, "coefs_")
        n_features = self.coefs_[0].shape[0] if continuing else None
        if continuing:
            check_feature_names(getattr(self, "feature_names_in_", None), X, name)
        else:
            names = feature_names(X)
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        if eval_set is not None:
            # Its columns are used by position: a frame's must be the training frame's.
            check_feature_names(getattr(self, "feature_names_in_", None), eval_set[0], name)
        if aac.is_dask_array(X):
            from .distributed import ChunkSource

            source = ChunkSource.from_arrays(X, y, client, name, n_features,
                                             sample_weight=sample_weight,
                                             non_negative=self.loss == "poisson")
            device = input_device = Device("cpu")
            dtype = self.dtype or source.dtype
            y_was_1d = source.y_ndim == 1
        else:
            X = check_X(X, name, n_features=n_features)
            y = check_y(y, X.shape[0], name)
            if self.loss == "poisson":
                check_non_negative(y)
            if sample_weight is not None:
                sample_weight = check_sample_weight(sample_weight, X.shape[0])
            device, input_device = self._resolve_device(X), device_of(X)
            dtype = resolve_dtype(self.dtype, X)
            y_was_1d = y.ndim == 1
            source = None
        if continuing and self.dtype is None:
            dtype = dtype_name(self.coefs_[0])
        device.check_dtype(dtype)
        if source is None:
            # For the fit record (see _fitrecord): hashed in a thread beside the
            # checks below, single-threaded passes over the data.
            pending = PendingFingerprint(X, y, sample_weight, _host_pair(eval_set, name),
                                         y_1d=y_was_1d)
            check_dtype_limits(self, dtype, X, y, sample_weight)
            n_features, n_outputs = X.shape[1], 1 if y.ndim == 1 else y.shape[1]
            self._fingerprint = pending
            if not continuing:   # data the guard let through, judged for its scale
                _warn_if_unscaled(X, y, self.loss)
        else:   # summarised on the workers that hold the chunks
            try:
                check_dtype_limits(self, dtype, held=DataSummary.of_chunks(
                    source.client, source.X, source.y, source.w, source.n_samples))
            except BaseException:
                source.release()
                raise
            n_features, n_outputs = source.n_features, source.n_outputs
        layer_sizes = [n_features, *hidden, n_outputs]
        network_bytes = _network_bytes(layer_sizes, dtype)
        _check_network_memory(network_bytes, device, hidden)
        try:
            with device.context():
                if source is None:
                    source = ArraySource.from_arrays(X, y, device, dtype, sample_weight)
                else:
                    source.dtype = dtype
                return self._fit_source(source, device, input_device, dtype, hidden,
                                        activation, y_was_1d, continuing, incremental,
                                        eval_set, callback, client)
        except MemoryError as exc:
            # CuPy's OutOfMemoryError is a MemoryError too.
            n_rows = source.n_samples if source is not None else X.shape[0]
            data_bytes = n_rows * (n_features + n_outputs + max(hidden, default=0)) * \
                np.dtype(dtype).itemsize
            if network_bytes >= data_bytes:
                raise MemoryError(
                    f"{device} ran out of memory ({exc}): the network "
                    f"hidden_layer_sizes={tuple(hidden)} needs about "
                    f"{_gib(network_bytes)} for its weights and gradients alone, more "
                    f"than the data's batch. Use smaller hidden layers."
                ) from exc
            raise MemoryError(
                f"{device} ran out of memory while training on {n_rows} rows "
                f"({exc}); the network's weights and gradients take about "
                f"{_gib(network_bytes)}. Use solver='sgd' or 'adam' with a smaller "
                f"batch_size (on the command line: --solver adam --batch-size 1024), or "
                f"train on fewer rows."
            ) from exc
        finally:
            if hasattr(source, "release"):   # a Dask fit's chunks and shards, freed now
                source.release()

    def _fit_source(self, source, device, input_device, dtype, hidden, activation, y_was_1d,
                    continuing, incremental, eval_set, callback, client):
        """The one fit flow, for every batch source (see :mod:`gpumlp.sources`)."""
        layer_sizes = [source.n_features, *hidden, source.n_outputs]
        trainer = self._trainer_for(layer_sizes, device, dtype, activation, continuing,
                                    incremental)
        # A resumed run's loss that rose is judged over the run, as in one call.
        trainer.run_start = 0 if getattr(self, "_keep_solver_state", False) else None
        # An in-memory fit keeps a record of how to certify it (see _fitrecord):
        # checkpoint 0 is taken here, before the validation split is drawn.
        start, data_sha256 = self.__dict__.pop("_start", None), \
            self.__dict__.pop("_fingerprint", None)
        recorder = None
        # The parameters this call runs with, for its record: a set_params after
        # it (for a later call) changes the model's, not what this fit did.
        ran_with = {name: value for name, value in self.get_params().items()
                    if name not in ("device", "backend", "random_state")}
        if self.random_state is None or isinstance(self.random_state, numbers.Integral):
            ran_with["random_state"] = self.random_state    # (a generator's: in the start)
        if start is not None and isinstance(source, ArraySource):
            recorder = Recorder(trainer, self._rng, start=start, device=device,
                                data_sha256=data_sha256, n_samples=source.n_samples,
                                eval_set=eval_set is not None, incremental=incremental,
                                y_1d=y_was_1d)
            callback = _recording(recorder, callback)
        validation = None
        early_stopping = self.early_stopping and not incremental
        if eval_set is not None:
            validation = self._eval_source(eval_set, source, device, dtype, client)
        elif early_stopping:
            if self.solver == "lbfgs":
                warnings.warn("early_stopping does not stop solver='lbfgs' (as in "
                              "scikit-learn): it stops on its own tests, and "
                              "n_iter_no_change has no effect; the held-out rows are "
                              "left out of training and only scored (validation_scores_). "
                              "Pass early_stopping=False to train on every row.",
                              UserWarning, stacklevel=4)
            source, validation = source.split(self.validation_fraction,
                                              self._split_generator(continuing))
            if isinstance(validation, ArraySource):
                _check_validation_split(validation, dtype)
            elif hasattr(validation, "target_extremes"):
                n_coefs = trainer.network.n_coefs
                high, low = validation.target_extremes(
                    trainer.params[:n_coefs], trainer.params[n_coefs:], trainer.network)
                if np.all(high <= low):
                    raise ValueError(
                        f"early stopping's validation split (whole chunks held out at "
                        f"random) has a y that is constant in {dtype} on its rows of weight "
                        f"above 0, so its R² (the criterion) is 0 whatever the model and "
                        f"cannot tell one epoch from another. Pass a larger "
                        f"validation_fraction, an eval_set whose targets vary, or "
                        f"early_stopping=False.")
        batch_size = self._batch_size(source.n_samples)
        if (self.solver not in ("gd", "lbfgs") and self.batch_size != "auto"
                and self.batch_size > source.n_samples):
            warnings.warn(f"Got `batch_size` ({self.batch_size}) larger than the "
                          f"{source.n_samples} training rows; it is clipped to "
                          f"{source.n_samples}, one batch per epoch (as scikit-learn warns).",
                          UserWarning, stacklevel=3)
        # tol means what it means in scikit-learn: on the training loss, in
        # the units of scikit-learn's loss (ours is twice it for the squared error).
        # For "gd" it is a fraction of the loss (training.py), which needs no scaling.
        relative = trainer.solver.progress(trainer.state, math.nan, math.inf) is not None
        tol = self.tol if early_stopping or relative else \
            self.tol * trainer.network.loss.sklearn_ratio(source.n_outputs)
        # A fit callback may take a resumable snapshot of the running training.
        self._trainer, self._running_y_was_1d = trainer, y_was_1d
        finished = False
        try:
            trainer.fit(
                source, rng=self._rng, batch_size=batch_size, shuffle=self.shuffle,
                max_iter=1 if incremental else self._max_iter(), tol=tol,
                n_iter_no_change=self.n_iter_no_change, validation=validation,
                stop_on_validation=early_stopping, verbose=self.verbose,
                check_convergence=not incremental, on_epoch=callback,
            )
            self._last_params = None
            if early_stopping and trainer.best_params is not None:
                # The model is the best weights; a resume goes on from the last.
                self._last_params = trainer.params
                trainer.params = trainer.best_params
            if self.learning_rate == "invscaling" and trainer.learning_rates and \
                    trainer.learning_rates[-1] < np.finfo(dtype).tiny and \
                    self.solver in ("gd", "sgd"):
                warnings.warn(
                    f"The 'invscaling' learning rate underflowed to "
                    f"{trainer.learning_rates[-1]:g}, below {dtype}'s smallest normal "
                    f"number (learning_rate_init / (t + 1) ** power_t with power_t="
                    f"{self.power_t:g}): the last epochs moved the weights by nothing "
                    f"or by rounding. Pass a smaller power_t.", convergence_warning(),
                    stacklevel=3)
            finished = True
        finally:
            self._store(trainer, device, input_device, y_was_1d, early_stopping,
                        validation is not None)
            # An interrupted or diverged call keeps no record: it cannot be certified.
            self._fit_record = recorder.finish(len(trainer.loss_curve) - trainer.call_start) \
                if recorder is not None and finished else None
            if self._fit_record is not None:
                self._fit_record["params"] = ran_with
            if hasattr(validation, "release"):   # eval_set's or early stopping's Dask chunks
                validation.release()
        return self

    def _split_generator(self, continuing):
        """The generator early stopping draws its validation rows from.

        A fit draws them from the batch-order generator, as scikit-learn
        does, and keeps its state from before the draw; a fit that resumes
        a run (:meth:`_resuming`) draws the same rows again from that state,
        leaving the batch-order generator where the run left it, so that
        ``k`` epochs and a resume of ``m`` are the ``k + m`` of one fit.
        """
        saved = getattr(self, "_split_state", None)
        if continuing and saved is not None and getattr(self, "_keep_solver_state", False):
            generator = np.random.Generator(type(self._rng.bit_generator)())
            generator.bit_generator.state = saved
            return generator
        self._split_state = self._rng.bit_generator.state
        return self._rng

    def _batch_size(self, n_samples: int) -> int:
        """Rows per step for ``n_samples`` training rows (the fit and its certificate)."""
        if self.solver in ("gd", "lbfgs"):
            return n_samples
        if self.batch_size == "auto":
            return min(200, n_samples)
        return min(self.batch_size, n_samples)

    def _eval_source(self, eval_set, source, device, dtype, client):
        """A validation source for ``eval_set``, of the kind the training data is."""
        X_val, y_val = check_eval_set(eval_set)
        name = type(self).__name__
        if aac.is_dask_array(X_val):
            from .distributed import ChunkSource

            validation = ChunkSource.from_arrays(X_val, y_val, client, name, source.n_features,
                                                 non_negative=self.loss == "poisson")
            validation.dtype = dtype
            try:
                check_dtype_limits(self, dtype, where="eval_set's ", held=DataSummary.of_chunks(
                    validation.client, validation.X, validation.y, None, validation.n_samples))
            except BaseException:
                validation.release()
                raise
        else:
            X_val = check_X(X_val, name, n_features=source.n_features)
            y_val = check_y(y_val, X_val.shape[0], name)
            check_dtype_limits(self, dtype, X_val, y_val, where="eval_set's ")
            if self.loss == "poisson":
                check_non_negative(y_val, "loss='poisson'; eval_set's y")
            validation = ArraySource.from_arrays(X_val, y_val, device, dtype)
        if validation.n_outputs != source.n_outputs:
            if hasattr(validation, "release"):
                validation.release()
            raise ValueError(f"eval_set's y has {validation.n_outputs} outputs; "
                             f"y has {source.n_outputs}.")
        if validation.n_samples < 2:
            # Its R² (validation_scores_, early stopping's criterion) needs two.
            if hasattr(validation, "release"):
                validation.release()
            raise ValueError(f"eval_set has {validation.n_samples} row; R² is not defined on "
                             f"fewer than 2, so validation_scores_ and early stopping would "
                             f"be meaningless. Pass at least 2 rows.")
        if self.early_stopping and aac.is_dask_array(y_val):
            # Its extremes, computed on the workers (one pass over the eval_set).
            low, high = validation.client.compute([y_val.min(axis=0), y_val.max(axis=0)],
                                                  sync=True)
            low, high = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (low, high))
            if np.all(low.astype(dtype) == high.astype(dtype)):
                validation.release()
                raise ValueError(f"eval_set's y is constant in {dtype} (the training dtype), "
                                 f"so its R² (early stopping's criterion) cannot tell one "
                                 f"epoch from another. Pass an eval_set whose targets vary, "
                                 f"or early_stopping=False.")
        if self.early_stopping and not aac.is_dask_array(y_val):
            held = np.asarray(to_numpy(y_val), dtype=np.float64).reshape(len(y_val), -1)
            if held.size and np.all(held.max(axis=0) == held.min(axis=0)):
                # R² of a constant target is 0 or 1 by convention, whatever the model.
                raise ValueError("eval_set's y is constant, so its R² (early stopping's "
                                 "criterion) cannot tell one epoch from another. Pass an "
                                 "eval_set whose targets vary, or early_stopping=False.")
            rounded = held.astype(dtype)
            if held.size and np.all(rounded.max(axis=0) == rounded.min(axis=0)):
                # Its spread is below the training dtype's resolution at its values:
                # the scores, computed in that dtype, would all be 0.
                raise ValueError(
                    f"eval_set's y is constant in {dtype}, the training dtype (it varies "
                    f"by {float(np.ptp(held)):.3g} around {float(held.mean()):.6g}, below "
                    f"{dtype}'s resolution there), so its R² (early stopping's criterion) "
                    f"cannot tell one epoch from another. Pass dtype='float64', or use "
                    f"StandardizedRegressor, which keeps y's offset and scale in float64.")
        return validation

    def _trainer_for(self, layer_sizes, device, dtype, activation, continuing, incremental):
        """A trainer built from the current hyper-parameters.

        Its weights are the fitted ones when continuing (``warm_start`` or
        ``partial_fit``), else fresh Glorot-uniform ones. Like scikit-learn,
        ``partial_fit`` keeps the solver's state (momenta, Adam's moments and
        step) when the solver is the same kind, and a warm-start ``fit``
        starts a new one; the history (loss curve, stopping-rule counters)
        carries on in both.
        """
        loss = get_loss(self.loss)
        solver = self._make_solver(layer_sizes[-1])
        fastpath.check_environment()      # a typo'd variable is an error, never dropped
        network = Network(len(layer_sizes) - 1, activation, fastpath.is_enabled(), loss,
                          fastpath.cuda_graph_enabled())
        previous = getattr(self, "_trainer", None)
        if not continuing:
            # The seed is kept in the fit record, so that the initial weights can
            # be drawn again by a verifier (gpumlp.certificate).
            self._rng, seed = seeded_generator(self.random_state)
            coefs, intercepts = glorot_uniform(layer_sizes, self._rng, dtype)
            self._start = {"kind": "seed", "seed": seed}
            params = [device.asarray(p) for p in (*coefs, *intercepts)]
            return Trainer(network, solver, float(self.alpha), params,
                           solver.init_state(params))
        params = [move(p, device, dtype) for p in (*self.coefs_, *self.intercepts_)]
        # A continued fit names its parent, the model it started from.
        self._start = {"kind": "parent", "parent": model_digest(self.coefs_, self.intercepts_)}
        last = getattr(self, "_last_params", None)
        if getattr(self, "_keep_solver_state", False) and self.early_stopping and last:
            # A resumed early-stopping run goes on from its last weights; the
            # model's, its best so far, stay the best (previous.best_params).
            params = [move(p, device, dtype) for p in last]
        expected = list(zip(layer_sizes[:-1], layer_sizes[1:]))
        n_coefs = len(self.coefs_)
        shapes = [tuple(W.shape) for W in params[:n_coefs]]
        bias_shapes = [tuple(b.shape) for b in params[n_coefs:]]
        if shapes != expected or bias_shapes != [(b,) for _, b in expected]:
            if incremental and shapes[:-1] == expected[:-1] and \
                    shapes[-1][0] == expected[-1][0]:
                raise ValueError(
                    f"partial_fit continues the fitted network, which has "
                    f"{shapes[-1][1]} output(s); this y has {layer_sizes[-1]}. Pass y "
                    f"with {shapes[-1][1]} output(s), or call fit to start a new network.")
            what = "partial_fit" if incremental else "warm_start"
            raise ValueError(
                f"{what} needs coefs_ shaped {expected} and intercepts_ shaped "
                f"{[(b,) for _, b in expected]} for this data and "
                f"hidden_layer_sizes; they are {shapes} and {bias_shapes}."
            )
        if not hasattr(self, "_rng"):
            self._rng = as_generator(self.random_state)
        trainer = Trainer(network, solver, float(self.alpha), params, solver.init_state(params))
        if previous is not None:
            for name in ("loss_curve", "learning_rates", "validation_losses",
                         "validation_scores", "best_loss", "best_validation_score",
                         "no_improvement_count", "samples_seen"):
                setattr(trainer, name, getattr(previous, name))
            if previous.best_params is not None:   # early stopping's best weights so far
                trainer.best_params = [move(p, device, dtype) for p in previous.best_params]
            keep_state = incremental or getattr(self, "_keep_solver_state", False)
            if keep_state and type(previous.solver) is type(solver) and \
                    previous.state is not None:
                trainer.state = map_state(previous.state,
                                          lambda a: _state_array_on(a, device, dtype))
        return trainer

    def _max_iter(self) -> int:
        """``max_iter``, with ``"auto"`` resolved for the solver."""
        if isinstance(self.max_iter, str) and self.max_iter == "auto":
            return GD_MAX_ITER if self.solver == "gd" else SKLEARN_MAX_ITER
        return int(self.max_iter)

    def _make_solver(self, n_outputs=None):
        """The solver for the current hyper-parameters; ``"auto"`` resolved.

        ``n_outputs`` (default: the fitted model's) scales L-BFGS's ``tol``
        to scikit-learn's units: our gradient over theirs.
        """
        if self.learning_rate_init == "auto" and self.solver == "gd":
            return AutoGD()
        rate = _AUTO_RATE if self.learning_rate_init == "auto" else self.learning_rate_init
        k = n_outputs if n_outputs is not None else self.coefs_[-1].shape[1]
        return make_solver(self.solver, rate, self.get_params(),
                           gradient_scale=get_loss(self.loss).factor / k)

    def _store(self, trainer, device, input_device, y_was_1d, early_stopping, validated):
        """Copy the trained state back, once, into the kind of array given to fit."""
        self._trainer = trainer
        self.device_ = device
        final_loss = None
        state = trainer.state
        if isinstance(state, LBFGSState) and state.loss is not None:
            final_loss = float(to_numpy(state.loss))
        elif isinstance(state, AutoGDState) and not state.stale:
            # The loss at the weights returned, when they are the search's best
            # point or its current one (not early stopping's best weights).
            for point, loss in ((state.best_params, state.best_loss),
                                (state.params, state.loss)):
                if point is not None and len(point) == len(trainer.params) and all(
                        a is b for a, b in zip(point, trainer.params)):
                    final_loss = loss if math.isfinite(loss) else None
                    break
        self._set_fitted(
            [move(W, input_device) for W in trainer.coefs],
            [move(b, input_device) for b in trainer.intercepts],
            loss_curve=trainer.loss_curve, samples_seen=trainer.samples_seen,
            learning_rates=trainer.learning_rates,
            y_was_1d=y_was_1d, n_iter=len(trainer.loss_curve) - trainer.call_start,
            final_loss=final_loss,
            best_loss=None if early_stopping else (
                min(trainer.loss_curve) if trainer.loss_curve else None),
            validation_scores=trainer.validation_scores if validated else None,
            validation_losses=trainer.validation_losses if validated else None,
        )

    def _set_fitted(self, coefs, intercepts, *, loss_curve, y_was_1d, samples_seen=0,
                    n_iter=None, best_loss=None, validation_scores=None,
                    validation_losses=None, learning_rates=None, learning_rate=None,
                    final_loss=None):
        """Set every fitted attribute; the one place both ``fit`` and :func:`gpumlp.load` use."""
        self.coefs_ = list(coefs)
        self.intercepts_ = list(intercepts)
        self.loss_curve_ = list(loss_curve)
        self.learning_rates_ = [float(v) for v in learning_rates or ()]
        if learning_rate is None:
            learning_rate = (self.learning_rates_[-1] if self.learning_rates_
                             else self.learning_rate_init)
        # None for a model loaded from a file older than the rate's record.
        self.learning_rate_ = None if learning_rate == "auto" else float(learning_rate)
        self.n_iter_ = len(self.loss_curve_) if n_iter is None else int(n_iter)
        if final_loss is not None:
            self.loss_ = float(final_loss)
        else:
            self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else None
        self.t_ = int(samples_seen)
        self.best_loss_ = best_loss
        self.validation_scores_ = None if validation_scores is None else list(validation_scores)
        self.validation_loss_curve_ = (None if validation_losses is None
                                       else list(validation_losses))
        self.best_validation_score_ = (max(validation_scores) if validation_scores
                                       else None)
        self.n_features_in_ = int(self.coefs_[0].shape[0])
        self.n_outputs_ = int(self.coefs_[-1].shape[1])
        self.n_layers_ = len(self.coefs_) + 1
        self.out_activation_ = get_loss(self.loss).out_activation
        self._y_was_1d = bool(y_was_1d)

    # ------------------------------------------------- checkpoints and resume
    def _training_state(self):
        """What an exact resume needs besides the weights, or None before any fit.

        Returns a dict: ``solver`` (its :data:`~gpumlp.solvers.SOLVERS` name),
        ``state`` (the solver's state, where training left it), ``rng`` (the
        batch-order generator's bit-generator state, plain JSON) and
        ``history`` (the stopping rule's bookkeeping); see :mod:`gpumlp.io`.
        """
        trainer, rng = getattr(self, "_trainer", None), getattr(self, "_rng", None)
        if trainer is None or rng is None:
            return None
        # A solver that is not resumable (L-BFGS) starts every fit afresh; its
        # generator and history still are the model's, for the next warm start.
        state = trainer.state if trainer.solver.resumable else None
        return {
            "solver": solver_name(trainer.solver),
            "state": state,
            "rng": rng.bit_generator.state,
            "history": {name: getattr(trainer, name) for name in _HISTORY},
            # Early stopping's: the last weights (coefs_ are the best) and the
            # validation split's generator state, or None.
            "last_params": getattr(self, "_last_params", None) if self.early_stopping else None,
            "split": getattr(self, "_split_state", None) if self.early_stopping else None,
        }

    def _set_training_state(self, solver, state, rng, history, last_params=None, split=None):
        """Restore what :meth:`_training_state` gave (used by :func:`gpumlp.load`).

        The next ``partial_fit`` (or a fit under :meth:`_resuming`) then
        continues with this solver state and batch-order generator, exactly
        as the saved estimator would have.
        """
        _, activation = check_params(self)
        network = Network(len(self.coefs_), activation, fastpath.is_enabled(),
                          get_loss(self.loss), fastpath.cuda_graph_enabled())
        current = self._make_solver()
        params = [*self.coefs_, *self.intercepts_]
        if solver_name(current) != solver:
            # The parameters changed since the save: that solver's state is not this one's.
            state = current.init_state(params)
        trainer = Trainer(network, current, float(self.alpha), params, state,
                          loss_curve=list(self.loss_curve_),
                          learning_rates=list(self.learning_rates_))
        for name in _HISTORY:
            setattr(trainer, name, history[name])
        if last_params is not None:
            # Early stopping's: coefs_ are the best weights so far, as after fit.
            trainer.best_params = list(params)
        self._trainer, self._rng = trainer, rng
        self._last_params, self._split_state = last_params, split
        self.t_ = trainer.samples_seen

    @contextlib.contextmanager
    def _resuming(self):
        """Within it, a warm-start ``fit`` keeps the solver state, as ``partial_fit`` does.

        ``gpumlp train --resume`` runs its epochs so: a warm start otherwise
        starts a new solver state (see :meth:`_trainer_for`).
        """
        self._keep_solver_state = True
        try:
            yield self
        finally:
            del self._keep_solver_state

    def _snapshot(self):
        """A fitted copy as of the epoch a fit callback reports; call it from the callback.

        The trainer calls back once an epoch is wholly done (the solver's end
        of epoch and the stopping rule's bookkeeping included), so the copy
        holds the weights, the solver state, the batch-order generator and
        the history exactly as the next epoch would start from them, and a
        checkpoint saved from it resumes exactly. Its arrays are the
        trainer's, not moved (nothing is read back from the device until it
        is saved).
        """
        y_was_1d = self._running_y_was_1d
        source = self._trainer
        # Lists of their own (a compiled block's params are a lazy view of the
        # whole block); the block runner, which holds the data, is not copied.
        trainer = dataclasses.replace(
            source, params=list(source.params),
            **{name: list(getattr(source, name)) for name in
               ("loss_curve", "learning_rates", "validation_losses", "validation_scores")})
        copy = type(self)(**self.get_params())
        copy._split_state = getattr(self, "_split_state", None)
        copy._last_params = None
        coefs, intercepts = trainer.coefs, trainer.intercepts
        if self.early_stopping and trainer.best_params is not None:
            # As a fit that ended here: the best weights, the last kept for a resume.
            copy._last_params = trainer.params
            n_coefs = len(coefs)
            coefs, intercepts = trainer.best_params[:n_coefs], trainer.best_params[n_coefs:]
        copy._set_fitted(coefs, intercepts, loss_curve=trainer.loss_curve,
                         samples_seen=trainer.samples_seen, y_was_1d=y_was_1d,
                         n_iter=len(trainer.loss_curve) - trainer.call_start,
                         learning_rates=trainer.learning_rates)
        bit_generator = type(self._rng.bit_generator)()
        bit_generator.state = self._rng.bit_generator.state
        copy._trainer, copy._rng = trainer, np.random.Generator(bit_generator)
        return copy

    def _resolve_device(self, X) -> Device:
        """The device to compute on, from ``backend``, ``device`` and where ``X`` lives."""
        named = self.backend is not None and self.backend.strip().lower() != "auto"
        if self.device is None and not aac.is_numpy_array(X):
            here = device_of(X)
            if not named or here.backend == self.backend.strip().lower():
                return here
            return get_device("auto", self.backend)
        return get_device(self.device, self.backend)

    # -------------------------------------------------------------- predict
    def _check_fitted(self):
        if not hasattr(self, "coefs_"):
            raise not_fitted_error()(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                f"with appropriate arguments before using this estimator."
            )

    def predict(self, X):
        """Predict targets for ``X``.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)

        Returns
        -------
        y_pred : array, shape (n_samples,) or (n_samples, n_outputs)
            1-D when ``fit`` was given a 1-D ``y``; in the kind of array
            ``X`` is (NumPy for NumPy or lists; a dask array, computed
            lazily block by block, for a dask array).
        """
        self._check_fitted()
        if aac.is_dask_array(X):
            from . import distributed

            return distributed.predict(self, X)
        check_feature_names(getattr(self, "feature_names_in_", None), X, type(self).__name__)
        X = check_X(X, type(self).__name__, n_features=self.coefs_[0].shape[0],
                    purpose="predicting")
        device = self._resolve_device(X)
        dtype = dtype_name(self.coefs_[0])
        device.check_dtype(dtype)
        with device.context():
            with np.errstate(over="ignore"):
                Xd = move(X, device, dtype)
            if dtype == "float32" and dtype_name(X) == "float64" and \
                    not bool(device.xp.all(device.xp.isfinite(Xd))):
                raise ValueError(
                    f"X holds values beyond float32's largest number ({np.finfo('f4').max:.3g}"
                    f"), and this model computes in float32: they would become infinite. "
                    f"Scale X as for training, or use a model trained in float64.")
            coefs = [move(W, device, dtype) for W in self.coefs_]
            intercepts = [move(b, device, dtype) for b in self.intercepts_]
            out = getattr(self, "out_activation_", get_loss(self.loss).out_activation)
            with np.errstate(over="ignore", invalid="ignore"):   # judged just below
                y_pred = kernels.predict(Xd, coefs, intercepts, self.activation, out)
            if not bool(device.xp.all(device.xp.isfinite(y_pred))):
                # Finite X and finite weights can still overflow the output (a
                # fit whose last steps grew the weights): infinite predictions
                # would be a silent wrong answer.
                largest = max(float(device.xp.max(device.xp.abs(W))) for W in coefs)
                raise ValueError(
                    f"The predictions overflow {dtype}: the network's output is beyond "
                    f"its largest number for some rows of X (its weights reach "
                    f"{largest:.3g}). The fit that made this model did not converge (see "
                    f"its warnings): refit on standardised data (StandardizedRegressor), "
                    f"with a lower learning_rate_init, or with dtype='float64'.")
            if getattr(self, "_y_was_1d", False):
                y_pred = y_pred[:, 0]
            return move(y_pred, device_of(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.array_api_support = True
        return tags
