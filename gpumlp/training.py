"""The training loop: epochs of solver steps over a batch source, and the stopping rule.

One training step is the solver's pure update (:mod:`gpumlp.solvers`)::

    params, state, loss = solver.update(params, state, objective)

where ``objective(params)`` gives the batch's loss and gradients with the L2
penalty added, the one place where the penalty enters
(:func:`gpumlp.kernels.add_l2`). The trainer drives steps and never needs to
know where a batch lives:

* a source holding rows in memory (``source.epoch_rows(batches)``, each
  batch's ``(X, y)``) feeds them to :func:`step_function`, the whole step as one pure function
  ``(params, state, X, y) -> (params, state, loss)``, which the device may
  compile (:meth:`gpumlp.devices.Device.compile`: JAX puts it under
  ``jax.jit``; the others run it as it is). Compiled steps are cached per
  (device, network, solver, alpha), so a fit traces once, not per epoch or
  per ``partial_fit``;
* a source without rows (Dask chunks) is asked for each batch's loss and
  gradients (``source.loss_and_grads``) through :meth:`Trainer.objective`.

Parameters are held as one flat list, ``coefs + intercepts``, on the device
of the data. Within an epoch nothing is read back to the host: the epoch's
loss, a finiteness flag and, with a validation source, its loss and R² are
read back in a single transfer by :func:`read_scalars` once per epoch.

The stopping rule ("repeat until converged"): an epoch counts as an
improvement when its loss is at least ``tol`` below the best loss so far (with
early stopping: when the validation R² is at least ``tol`` above the best so
far). Training stops after ``n_iter_no_change`` consecutive epochs without
improvement, or after ``max_iter`` epochs with a ``ConvergenceWarning``.

Divergence is never called convergence: a loss that becomes NaN or infinite
raises :class:`TrainingDivergedError`, keeping the weights whose loss was
last finite; a fit that ends with a higher loss than it began with warns
(:class:`LossIncreasedWarning`), naming the learning rate.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from . import kernels
from ._sklearn_compat import convergence_warning
from .devices import to_numpy
from .solvers import Solver
from .sources import Network, rows_loss_and_grads

__all__ = ["LossIncreasedWarning", "Trainer", "TrainingDivergedError", "compiled_step",
           "read_scalars", "step_function"]


class TrainingDivergedError(ValueError):
    """The training loss became NaN or infinite; the last finite weights were kept."""


class LossIncreasedWarning(UserWarning):
    """A fit ended with a higher training loss than it started with."""


def read_scalars(*values):
    """Read 0-d device arrays back to the host as Python floats, in one transfer.

    This is the training loop's only synchronisation point with the device.
    """
    xp = array_namespace(*values)
    stacked = xp.stack([xp.reshape(v, ()) for v in values])
    return [float(v) for v in to_numpy(stacked)]


def _all_finite(params):
    xp = array_namespace(*params)
    flags = xp.stack([xp.all(xp.isfinite(p)) for p in params])
    return xp.astype(xp.all(flags), params[0].dtype)


def step_function(network: Network, solver: Solver, alpha: float):
    """One training step on rows ``X, y`` as a pure function of arrays.

    Parameters
    ----------
    network : Network
    solver : Solver
    alpha : float
        L2 penalty strength.

    Returns
    -------
    callable
        ``step(params, state, X, y) -> (params, state, loss)``, with
        ``params`` the list ``coefs + intercepts``, ``X`` of shape
        ``(n_rows, n_features)``, ``y`` of shape ``(n_rows, n_outputs)`` and
        ``loss`` the batch's loss (penalty included) at the old parameters,
        a 0-d array. No host read, no side effect: a compiler may trace it.
    """
    n_coefs = network.n_coefs

    def step(params, state, X, y):
        def objective(params):
            coefs, intercepts = params[:n_coefs], params[n_coefs:]
            loss, grads = rows_loss_and_grads(X, y, coefs, intercepts, network)
            loss, coef_grads = kernels.add_l2(loss, grads[:n_coefs], coefs, alpha, X.shape[0])
            return loss, coef_grads + grads[n_coefs:]

        return solver.update(params, state, objective)

    return step


@functools.lru_cache(maxsize=64)
def compiled_step(device, network: Network, solver: Solver, alpha: float):
    """:func:`step_function` compiled by ``device`` (``Device.compile``), cached."""
    return device.compile(step_function(network, solver, alpha))


def _weighted_mean(losses, rows):
    """``sum_i losses[i] * rows[i] / rows[-1]``: an epoch's loss from its batches'."""
    xp = array_namespace(*losses)
    return xp.sum(xp.stack(losses) * rows[:-1]) / rows[-1]


@functools.lru_cache(maxsize=16)
def _compiled_weighted_mean(device):
    return device.compile(_weighted_mean)


@functools.lru_cache(maxsize=16)
def _compiled_all_finite(device):
    return device.compile(_all_finite)


@dataclass
class Trainer:
    """Training state that outlives one call to ``fit``: parameters, solver state, history.

    Attributes
    ----------
    network : Network
    solver : Solver
    alpha : float
        L2 penalty strength.
    params : list of arrays
        ``coefs + intercepts`` on the training device.
    state : object
        The solver's state (see :mod:`gpumlp.solvers`).
    loss_curve : list of float
        The loss (mean squared error plus penalty) of each epoch, averaged
        over its minibatches.
    """

    network: Network
    solver: Solver
    alpha: float
    params: list
    state: Any = None
    loss_curve: list = field(default_factory=list)
    validation_losses: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    best_params: list | None = None
    no_improvement_count: int = 0
    samples_seen: int = 0

    @property
    def coefs(self):
        return self.params[: self.network.n_coefs]

    @property
    def intercepts(self):
        return self.params[self.network.n_coefs:]

    def objective(self, source, batch):
        """``params -> (loss, grads)`` on one batch, with the L2 penalty added."""
        n_coefs = self.network.n_coefs

        def evaluate(params):
            coefs, intercepts = params[:n_coefs], params[n_coefs:]
            loss, grads, rows = source.loss_and_grads(batch, coefs, intercepts, self.network)
            loss, coef_grads = kernels.add_l2(loss, grads[:n_coefs], coefs, self.alpha, rows)
            return loss, coef_grads + grads[n_coefs:]

        return evaluate

    def epoch(self, source, batches):
        """One pass over ``batches`` of ``source``; the epoch's mean loss as a 0-d array."""
        losses = []
        if hasattr(source, "epoch_rows"):
            step = compiled_step(source.device, self.network, self.solver, self.alpha)
            for X, y in source.epoch_rows(batches):
                self.params, self.state, loss = step(self.params, self.state, X, y)
                losses.append(loss)
        else:
            for batch in batches:
                self.params, self.state, loss = self.solver.update(
                    self.params, self.state, self.objective(source, batch))
                losses.append(loss)
        self.samples_seen += source.n_samples
        if len(losses) == 1:
            return losses[0]
        # The batches' losses weighted by their rows, in one (compiled)
        # operation rather than two per batch: on an accelerator each is a
        # dispatch. The rows, and the total last, in the loss's dtype (as a
        # Python number would be): exact in float32 up to 2**24.
        rows = np.asarray([source.batch_rows(batch) for batch in batches]
                          + [source.n_samples], dtype=str(losses[0].dtype).rsplit(".", 1)[-1])
        device = getattr(source, "device", None)
        if device is None:
            return _weighted_mean(losses, array_namespace(*losses).asarray(rows))
        return _compiled_weighted_mean(device)(losses, device.asarray(rows))

    def fit(self, source, *, rng, batch_size, shuffle, max_iter, tol, n_iter_no_change,
            validation=None, stop_on_validation=False, verbose=False,
            check_convergence=True, on_epoch=None):
        """Run up to ``max_iter`` epochs; stop early by the rule in the module docs.

        Parameters
        ----------
        source : batch source
            See :mod:`gpumlp.sources`.
        rng : numpy.random.Generator
            Draws each epoch's batch order (on the host).
        batch_size : int
        shuffle : bool
        max_iter, n_iter_no_change : int
        tol : float
        validation : batch source, optional
            Evaluated after every epoch: its loss goes to ``validation_losses``
            and its R² to ``validation_scores``.
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
            When the loss or the weights stop being finite. The parameters
            are then those at which the last finite loss was measured.
        KeyboardInterrupt
            Re-raised, as is any other exception, after restoring the
            parameters of the last whole epoch.
        """
        batch_size = min(batch_size, source.n_samples)
        first_epoch = len(self.loss_curve)
        # ``start`` holds the parameters at the start of the running epoch,
        # ``previous`` those at the start of the one before: for full-batch
        # descent, the point at which the last finite loss was measured.
        start = previous = list(self.params)
        # Divergence is detected from the loss and reported once, clearly;
        # NumPy's overflow warnings on the way there would only be noise.
        errstate = np.errstate(over="ignore", invalid="ignore", divide="ignore")
        try:
            with errstate:
                for _ in range(max_iter):
                    previous, start = start, list(self.params)
                    batches = source.batches(rng, batch_size, shuffle)
                    loss = self.epoch(source, batches)
                    device = getattr(source, "device", None)
                    all_finite = _all_finite if device is None else _compiled_all_finite(device)
                    to_read = [loss, all_finite(self.params)]
                    if validation is not None:
                        to_read += list(validation.evaluate(self.coefs, self.intercepts,
                                                            self.network.activation))
                    values = read_scalars(*to_read)
                    loss, params_finite = values[0], values[1]
                    if not math.isfinite(loss):
                        self.params = previous
                        raise self._diverged(loss)
                    if not params_finite:
                        self.params = start
                        raise self._diverged(loss)
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
                        self._warn_if_loss_rose(first_epoch, stop_on_validation)
                        return True
        except TrainingDivergedError:
            raise
        except BaseException:
            # Ctrl-C, or a failure part-way through an epoch: keep the last
            # complete epoch's weights.
            self.params = start
            raise
        if check_convergence:
            self._warn_if_loss_rose(first_epoch, stop_on_validation)
            warnings.warn(
                f"Maximum iterations ({max_iter}) reached and the optimization hasn't "
                f"converged yet. Raise max_iter or learning_rate_init.",
                convergence_warning(),
                stacklevel=3,
            )
        return False

    def _diverged(self, loss):
        return TrainingDivergedError(
            f"Training diverged at epoch {len(self.loss_curve) + 1}: the loss became "
            f"{loss}. The weights of the last epoch with a finite loss were kept. Lower "
            f"learning_rate_init (now {self.solver.learning_rate:g}) or standardise X and y."
        )

    def _warn_if_loss_rose(self, first_epoch, stop_on_validation):
        """Warn when this call's last loss is clearly above its first (by over 1%).

        A healthy fit, even a noisy minibatch one, does not end above where it
        began; a step that is too large does, without ever overflowing.
        """
        curve = self.loss_curve[first_epoch:]
        if stop_on_validation or len(curve) < 2 or not curve[-1] > 1.01 * curve[0]:
            return
        warnings.warn(
            f"The training loss rose from {curve[0]:.6g} to {curve[-1]:.6g} over "
            f"{len(curve)} epochs: the step is too large for this problem. Lower "
            f"learning_rate_init (now {self.solver.learning_rate:g}).",
            LossIncreasedWarning, stacklevel=4)

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

