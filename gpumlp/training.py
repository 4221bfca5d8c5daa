"""The training loop: epochs, minibatches, solvers and the stopping rule.

Parameters are held as one flat list, ``coefs + intercepts``, on the device
of the data. Within an epoch nothing is read back to the host: the epoch's
loss, a finiteness flag and, when a validation set is given, its loss and R²
is accumulated as 0-d device arrays and read back in a single transfer by
:func:`read_scalars` once per epoch. The only other traffic is the upload of
one epoch's row permutation when minibatches are shuffled; permutations are
drawn on the host from a NumPy ``Generator`` so that every backend sees the
same batch order.

The stopping rule ("repeat until converged"): an epoch counts as an
improvement when its loss is at least ``tol`` below the best loss so far (with
early stopping: when the validation R² is at least ``tol`` above the best so
far). Training stops after ``n_iter_no_change`` consecutive epochs without
improvement, or after ``max_iter`` epochs with a ``ConvergenceWarning``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from array_api_compat import array_namespace

from . import fastpath, kernels
from ._sklearn_compat import convergence_warning
from .devices import to_numpy

__all__ = ["Trainer", "TrainingDivergedError", "make_solver", "read_scalars"]


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite; the last finite weights were kept."""


def read_scalars(*values):
    """Read 0-d device arrays back to the host as Python floats, in one transfer.

    This is the training loop's only synchronisation point with the device.
    """
    xp = array_namespace(*values)
    stacked = xp.stack([xp.reshape(v, ()) for v in values])
    return [float(v) for v in to_numpy(stacked)]


class GDSolver:
    """Plain gradient descent, ``p <- p - lr * g``: the specified algorithm."""

    def __init__(self, learning_rate):
        self.learning_rate = float(learning_rate)

    def init_state(self, params):
        pass

    def update(self, params, grads):
        return kernels.gd_step(params, grads, self.learning_rate)


class MomentumSolver(GDSolver):
    """Heavy-ball or Nesterov momentum (scikit-learn's formulation)."""

    def __init__(self, learning_rate, momentum, nesterov):
        super().__init__(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocities = None

    def init_state(self, params):
        xp = array_namespace(*params)
        self.velocities = [xp.zeros_like(p) for p in params]

    def update(self, params, grads):
        params, self.velocities = kernels.momentum_step(
            params, grads, self.velocities, self.learning_rate, self.momentum, self.nesterov
        )
        return params


class AdamSolver(GDSolver):
    """Adam, with its step count and moment estimates."""

    def __init__(self, learning_rate, beta_1, beta_2, epsilon):
        super().__init__(learning_rate)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.t = 0
        self.first = self.second = None

    def init_state(self, params):
        xp = array_namespace(*params)
        self.t = 0
        self.first = [xp.zeros_like(p) for p in params]
        self.second = [xp.zeros_like(p) for p in params]

    def update(self, params, grads):
        self.t += 1
        params, self.first, self.second = kernels.adam_step(
            params, grads, self.first, self.second, self.t,
            self.learning_rate, self.beta_1, self.beta_2, self.epsilon,
        )
        return params


def make_solver(est):
    """Build the solver an estimator's parameters describe."""
    if est.solver == "adam":
        return AdamSolver(est.learning_rate_init, est.beta_1, est.beta_2, est.epsilon)
    if est.solver == "sgd" and est.momentum > 0:
        return MomentumSolver(est.learning_rate_init, est.momentum, est.nesterovs_momentum)
    return GDSolver(est.learning_rate_init)


def r2_score(y, y_pred):
    """Coefficient of determination, averaged uniformly over outputs (0-d array)."""
    xp = array_namespace(y, y_pred)
    diff = y - y_pred
    sse = xp.sum(diff * diff, axis=0)
    centred = y - xp.mean(y, axis=0)
    sst = xp.sum(centred * centred, axis=0)
    # scikit-learn's conventions for a constant target: 1 if predicted
    # exactly, else 0.
    safe = xp.where(sst > 0, sst, xp.ones_like(sst))
    per_output = xp.where(sst > 0, 1.0 - sse / safe, xp.astype(sse == 0, sse.dtype))
    return xp.mean(per_output)


def _all_finite(params):
    xp = array_namespace(*params)
    flags = xp.stack([xp.all(xp.isfinite(p)) for p in params])
    return xp.astype(xp.all(flags), params[0].dtype)


@dataclass
class Trainer:
    """Training state that outlives one call to ``fit``: solver state and history.

    Attributes
    ----------
    params : list of arrays
        ``coefs + intercepts`` on the training device.
    loss_curve : list of float
        The loss (mean squared error plus penalty) of each epoch, averaged
        over its minibatches.
    """

    activation: str
    solver: GDSolver
    alpha: float
    n_layers: int
    params: list = field(default_factory=list)
    loss_curve: list = field(default_factory=list)
    validation_losses: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    best_params: list | None = None
    no_improvement_count: int = 0
    samples_seen: int = 0
    use_fastpath: bool = True

    @property
    def coefs(self):
        return self.params[: self.n_layers]

    @property
    def intercepts(self):
        return self.params[self.n_layers :]

    def batch_loss_and_grads(self, X, y):
        """Loss and gradients of one batch under the current parameters.

        Uses a backend's fast path when :func:`gpumlp.fastpath.select` offers
        one, else the generic kernels.
        """
        fast = fastpath.select(X, self.n_layers, self.activation, self.alpha) \
            if self.use_fastpath else None
        if fast is not None:
            loss, coef_grads, intercept_grads = fast(X, y, self.coefs, self.intercepts)
            return loss, coef_grads + intercept_grads
        activations = kernels.forward(X, self.coefs, self.intercepts, self.activation)
        loss = kernels.squared_error(y, activations[-1])
        if self.alpha:
            loss = loss + kernels.l2_penalty(self.coefs, self.alpha, X.shape[0])
        coef_grads, intercept_grads = kernels.backward(
            y, activations, self.coefs, self.activation, self.alpha
        )
        return loss, coef_grads + intercept_grads

    def draw_order(self, rng, n, batch_size, shuffle, device):
        """This epoch's row order on ``device``, or ``None`` to keep rows in place.

        A single full batch is never shuffled: a permutation would change
        nothing but the summation order.
        """
        if shuffle and batch_size < n:
            return device.asarray(rng.permutation(n))
        return None

    def epoch(self, X, y, batch_size, order):
        """One pass over ``X``; returns the epoch's mean loss as a 0-d array.

        ``order`` is a device array of row indices (a shuffled epoch), or
        ``None`` for rows in their stored order.
        """
        xp = array_namespace(X, y)
        n = X.shape[0]
        total = None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if order is None:
                Xb, yb = (X, y) if stop - start == n else (X[start:stop, ...], y[start:stop, ...])
            else:
                rows = order[start:stop]
                Xb, yb = xp.take(X, rows, axis=0), xp.take(y, rows, axis=0)
            loss, grads = self.batch_loss_and_grads(Xb, yb)
            self.params = self.solver.update(self.params, grads)
            weighted = loss * float(stop - start)
            total = weighted if total is None else total + weighted
        self.samples_seen += n
        return total / float(n)

    def fit(self, X, y, *, device, rng, batch_size, shuffle, max_iter, tol,
            n_iter_no_change, validation=None, stop_on_validation=False, verbose=False,
            check_convergence=True, on_epoch=None):
        """Run up to ``max_iter`` epochs; stop early by the rule in the module docs.

        Parameters
        ----------
        X, y : arrays on ``device``, shapes (n, f) and (n, k)
        device : Device
        rng : numpy.random.Generator
            Draws each epoch's row order (on the host).
        validation : tuple of arrays, optional
            ``(X_val, y_val)``, evaluated after every epoch: its loss goes to
            ``validation_losses`` and its R² to ``validation_scores``.
        stop_on_validation : bool
            Apply the stopping rule to the validation R² instead of the
            training loss (early stopping).
        check_convergence : bool
            False for ``partial_fit``: run the epochs, apply no stopping rule.
        on_epoch : callable, optional
            Called as ``on_epoch(epoch, loss, validation_loss)`` after each
            epoch (``validation_loss`` is None without ``validation``).

        Returns
        -------
        converged : bool

        Raises
        ------
        TrainingDivergedError
            When the loss or the weights stop being finite. The trainer's
            parameters are then the last finite ones.
        KeyboardInterrupt
            Re-raised, as is any other exception, after restoring the
            parameters of the last whole epoch.
        """
        batch_size = min(batch_size, X.shape[0])
        n = X.shape[0]
        last_good = list(self.params)
        # Divergence is detected from the loss and reported once, clearly;
        # NumPy's overflow warnings on the way there would only be noise.
        errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        try:
            with errstate:
                for _ in range(max_iter):
                    order = self.draw_order(rng, n, batch_size, shuffle, device)
                    to_read = [self.epoch(X, y, batch_size, order), _all_finite(self.params)]
                    if validation is not None:
                        X_val, y_val = validation
                        y_val_pred = kernels.predict(X_val, self.coefs, self.intercepts,
                                                     self.activation)
                        to_read += [kernels.squared_error(y_val, y_val_pred),
                                    r2_score(y_val, y_val_pred)]
                    values = read_scalars(*to_read)
                    loss, params_finite = values[0], values[1]
                    if not (math.isfinite(loss) and params_finite):
                        self.params = last_good
                        raise TrainingDivergedError(
                            f"Training diverged at epoch {len(self.loss_curve) + 1}: the "
                            f"loss became {loss}. The weights of the last finite epoch were "
                            f"kept. Lower learning_rate_init (now "
                            f"{self.solver.learning_rate:g}) or standardise X and y."
                        )
                    last_good = list(self.params)
                    self.loss_curve.append(loss)
                    validation_loss = score = None
                    if validation is not None:
                        validation_loss, score = values[2], values[3]
                        self.validation_losses.append(validation_loss)
                        self.validation_scores.append(score)
                    if verbose:
                        print(f"Iteration {len(self.loss_curve)}, loss = {loss:.8f}")
                    if on_epoch is not None:
                        on_epoch(len(self.loss_curve), loss, validation_loss)
                    if check_convergence and self._should_stop(
                            tol, n_iter_no_change, score if stop_on_validation else None):
                        if verbose:
                            what = "Validation score" if stop_on_validation else "Training loss"
                            print(f"{what} did not improve more than tol={tol:f} for "
                                  f"{n_iter_no_change} consecutive epochs. Stopping.")
                        return True
        except BaseException:
            # Ctrl-C, or a failure part-way through an epoch: keep the last
            # complete epoch's weights.
            self.params = last_good
            raise
        if check_convergence:
            warnings.warn(
                f"Maximum iterations ({max_iter}) reached and the optimization hasn't "
                f"converged yet. Raise max_iter or learning_rate_init.",
                convergence_warning(),
                stacklevel=3,
            )
        return False

    def _should_stop(self, tol, n_iter_no_change, score):
        if score is not None:
            improved = score >= self.best_validation_score + tol
            if score > self.best_validation_score:
                self.best_validation_score = score
                self.best_params = list(self.params)
        else:
            loss = self.loss_curve[-1]
            improved = loss <= self.best_loss - tol
            self.best_loss = min(self.best_loss, loss)
        self.no_improvement_count = 0 if improved else self.no_improvement_count + 1
        return self.no_improvement_count >= n_iter_no_change


def split_validation(n, fraction, rng):
    """Host indices ``(train, validation)`` for early stopping."""
    n_val = int(math.ceil(fraction * n)) if fraction else 0
    if n_val < 2 or n - n_val < 1:
        raise ValueError(
            f"early_stopping needs at least 2 validation rows and 1 training row; "
            f"with {n} samples and validation_fraction={fraction} there are {n_val}. "
            f"Pass more data or a larger validation_fraction."
        )
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
