"""The training loop: epochs of solver steps over a batch source, and the stopping rule.

One training step is the solver's pure update (:mod:`gpumlp.solvers`)::

    params, state, loss = solver.update(params, state, objective)

where ``objective(params)`` asks the batch source (:mod:`gpumlp.sources`)
for the batch's loss and gradients and adds the L2 penalty, the one place
where the penalty enters (:func:`gpumlp.kernels.add_l2`). The trainer drives
steps and never needs to know where a batch lives: in memory on a device, or
in chunks on Dask workers.

Parameters are held as one flat list, ``coefs + intercepts``, on the device
of the data. Epochs run in blocks (up to :data:`MAX_BLOCK`, as many as take
about :data:`BLOCK_SECONDS`): within a block nothing is read back to the host;
each epoch's loss, a finiteness flag and, with a validation source, its loss
and R² are read back in a single transfer by :func:`read_scalars` at the end
of the block. Every epoch's parameters, solver state, sample count and
generator state are kept (immutable values: keeping them copies nothing), and
the epochs are then recorded in order, so when the rule below fires inside a
block, training is put back exactly where the epoch-by-epoch rule leaves it.
A fit callback is called for each epoch once it is wholly done.

A backend may run a whole block itself, for plain gradient descent on the
full batch: on a device that compiles loops (JAX), the step above run for
every epoch of the block in one compiled program (:func:`epoch_function`,
:meth:`gpumlp.devices.Device.compile_blocks`,
:mod:`gpumlp.fastpath.compiled`), on by default and off with the fast paths
(``GPUMLP_FASTPATH=0``, :func:`gpumlp.fastpath.disabled`); on NumPy, the
optional C extension, one call per block, where it is built and faster
(:mod:`gpumlp.fastpath.cblocks`); with the opt-in ``GPUMLP_CUDA_GRAPH=1``
on CuPy, one CUDA graph per block (:func:`gpumlp.fastpath.select_blocks`);
on Dask, the worker that holds every chunk
(:class:`gpumlp.distributed.ShardBlocks`). Each gives every epoch's
parameters, loss and finiteness flag, and the block goes on from there as
above. Other backends, and CuPy without the opt-in, run epoch by epoch.

The stopping rule ("repeat until converged"), scikit-learn's: an epoch counts
as an improvement when its loss is at least ``tol`` below the best loss so far
(with early stopping: when the validation R² is at least ``tol`` above the
best so far). Once *more than* ``n_iter_no_change`` consecutive epochs have
not improved, the solver decides (:meth:`gpumlp.solvers.Solver.on_plateau`):
stop, or, for the ``"adaptive"`` learning rate, divide the rate by 5, reset
the count and go on (``learning_rate_init="auto"``: the first time, go on
with the monotone test, :mod:`gpumlp.step_size`). Otherwise training stops
after ``max_iter`` epochs with a ``ConvergenceWarning``. (Before issue 12 it
stopped after exactly ``n_iter_no_change`` epochs, one early.)
``partial_fit`` counts the same way and adapts the rate, but never stops
early.

The stopping rule for gd
------------------------
scikit-learn's rule above measures an epoch's fall of the loss in the loss's
own units, and an epoch of Adam is ``n / batch_size`` steps where an epoch
of full-batch descent (``"gd"``) is one: the same ``tol`` stopped gd after
100-200 epochs, far from converged, and means nothing once y is rescaled.
So for ``"gd"`` an epoch's progress is a fraction of the loss
(:meth:`gpumlp.solvers.Solver.progress`), and the epoch improves when that
fraction is above ``tol``:

* With ``learning_rate_init="auto"``, the decrease the *next* step is
  expected to make. Along ``p - t g`` the loss is, to second order,
  ``f(t) = f - t |g|**2 + t**2 c |g|**2 / 2`` with ``c = g.H g / |g|**2``
  the curvature along the gradient, lowest at ``t = 1 / c``, where it lies
  ``|g|**2 / (2 c)`` below ``f``. The rule already has ``1 / c``: its next
  rate is the inverse of the curvature it just measured (Barzilai-Borwein
  after a step taken, the parabola's minimiser after one refused;
  :mod:`gpumlp.step_size`). So the measure is ``0.5 * rate * |g|**2 / f``,
  from three numbers the solver reads anyway: no extra host read. It is
  scale-free (``|g|**2`` scales as ``f**2``, ``c`` as ``f``), and it stays
  large while a flat stretch is crossed (there the rate is long), where
  the loss's own fall per epoch is small.
* At a fixed rate, the fall of the best loss that the epoch's step achieved,
  ``(best - f) / f``.

Training stops when more than ``n_iter_no_change`` consecutive epochs were
not progress, so that each of the last steps was expected to gain at most
``tol`` of the loss: ``K`` more steps would gain about ``K * tol`` of it at
most while the gains keep shrinking (``tests/test_stopping.py`` checks
that 1000 more epochs gain at most 10% at ``tol=1e-4``). A loss that
falls towards 0 (data without noise) keeps its relative progress and
trains to ``max_iter`` with a ``ConvergenceWarning``: it has not converged
in this sense. ``max_iter="auto"`` gives gd 5000 steps
(:data:`gpumlp.estimator.GD_MAX_ITER`). ``"sgd"`` and ``"adam"`` keep
scikit-learn's rule, so that they stop at scikit-learn's epoch
(``tests/test_parity.py``); with early stopping every solver stops on the
validation R², already scale-free.

L-BFGS has its own criteria instead (:class:`gpumlp.solvers.LBFGS`): one
epoch is one of its iterations, and one that meets a convergence test on
the iteration that reaches ``max_iter`` stopped on the budget (a
``ConvergenceWarning``, as scikit-learn's L-BFGS-B). A call that ends by the rule or after
``max_iter`` epochs leaves the parameters where the solver says
(:meth:`gpumlp.solvers.Solver.end_fit`): where training stands, or for
``"auto"`` the accepted point of lowest loss (its state stays where the
search stands, for the next call).

Divergence is never called convergence: a loss that becomes NaN or infinite
raises :class:`TrainingDivergedError`, with training put back to the start of
the last recorded epoch (the weights at which the last finite loss was
measured, with their solver state, sample count and generator, and that
epoch out of the history); so does a step that makes the weights, or the
state a solver declares can overflow unseen
(:attr:`gpumlp.solvers.Solver.UNSEEN_OVERFLOW`), NaN or infinite, back to
the start of that epoch; a fit that ends with a higher loss than it began with warns
(:class:`LossIncreasedWarning`), naming the learning rate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import array_api_compat as aac
import numpy as np
from array_api_compat import array_namespace

from . import kernels
from ._sklearn_compat import convergence_warning
from .devices import dtype_name, read_floats, to_numpy
from .fastpath import cblocks, compiled
from .fastpath.compiled import MAX_EPOCHS, CompiledBlocks
from .solvers import (
    SGD,
    Adam,
    AutoGD,
    GradientDescent,
    SGDState,
    Solver,
    map_state,
    state_to_arrays,
)
from .sources import Network, rows_loss_and_grads, select_blocks, select_fast

__all__ = ["LossIncreasedWarning", "Trainer", "TrainingDivergedError", "compiled_blocks",
           "compiled_objective", "compiled_step", "epoch_function", "objective_function",
           "read_scalars", "step_function"]


class TrainingDivergedError(ValueError):
    """The training loss, the weights, or a solver state whose overflow the weights would not
    show (Adam's second moment) became NaN or infinite; the last finite weights were kept."""


class LossIncreasedWarning(UserWarning):
    """A fit ended with a higher training loss than it started with."""


def read_scalars(*values):
    """Read 0-d device arrays back to the host as Python floats, in one transfer.

    This is the training loop's only synchronisation point with the device
    (:func:`gpumlp.devices.read_floats`).
    """
    return read_floats(*values)


def _all_finite(params, xp=None):
    """1 when every parameter is finite, else 0, as a 0-d array (no host read).

    A sum is finite only if its terms are (it could overflow only for weights
    near the dtype's limit, which is divergence all the same). One sum over
    the parameters laid end to end: on NumPy, at the default network's size,
    a third of the time of one sum per array. ``xp``: the namespace, when
    the caller knows it.
    """
    xp = array_namespace(*params) if xp is None else xp
    total = xp.sum(kernels.flatten(params, xp))
    return xp.astype(xp.isfinite(total), params[0].dtype)


def _unseen_state(solver, state):
    """The state's arrays that can overflow while the weights stay finite (a list).

    They are checked for finiteness with the weights after each epoch
    (:attr:`gpumlp.solvers.Solver.UNSEEN_OVERFLOW`: Adam's second moment,
    whose overflow would freeze training unseen).
    """
    return [a for name in solver.UNSEEN_OVERFLOW for a in getattr(state, name)]


def _zero_weight_batch(run, rng_state):
    """The size of a batch of the epoch begun at ``rng_state`` whose weights are all 0, or None.

    Asked only after a non-finite loss (a weighted mean over such a batch is
    0 / 0): the epoch's batches are drawn again from its generator state.
    """
    source = run.source
    if getattr(source, "sample_weight", None) is None or not hasattr(source, "rows"):
        return None
    bit_generator = type(run.rng.bit_generator)()
    bit_generator.state = rng_state
    for batch in source.batches(np.random.Generator(bit_generator), run.batch_size,
                                run.shuffle):
        w = source.rows(batch)[2]
        if not bool(array_namespace(w).any(w > 0)):
            return source.batch_rows(batch)
    return None


#: ``Trainer._record``'s answers besides fit's own outcome.
_GO_ON, _REPLAY = object(), object()

#: The host reads of a block should cost little beside its epochs: blocks grow
#: until they take about this long (seconds), up to ``MAX_BLOCK`` epochs.
BLOCK_SECONDS = 0.02
MAX_BLOCK = 64


def _next_block_size(solver, size, done, seconds):
    """Epochs in the next block: as many as fit in :data:`BLOCK_SECONDS`.

    One after a block cut short (the rule changed the solver's state).
    """
    if done < size:
        return 1
    per_epoch = seconds / max(done, 1)
    target = int(BLOCK_SECONDS / per_epoch) if per_epoch > 0 else MAX_BLOCK
    return max(1, min(MAX_BLOCK, target, 2 * size))


@dataclass(frozen=True)
class _Snapshot:
    """Where training stands between two epochs (all immutable values).

    ``params`` is a list, or within a block a compiled block's lazy
    :class:`~gpumlp.fastpath.compiled.EpochParams` (a read-only sequence).
    """

    params: list
    state: Any
    seen: int
    rng: dict

    def restore(self, trainer, rng):
        trainer.params, trainer.state, trainer.samples_seen = list(self.params), self.state, \
            self.seen
        rng.bit_generator.state = self.rng


@dataclass(frozen=True)
class _Epoch:
    """One epoch of a block: where it began, and where it ended."""

    before: _Snapshot
    params: list
    state: Any       # before the solver's end_epoch
    ended: Any       # after it
    seen: int
    rng: dict
    rate: float      # the step size in force during the epoch


@dataclass(frozen=True)
class _Run:
    """One call to :meth:`Trainer.fit`: its data and its settings."""

    source: Any
    validation: Any
    rng: Any
    batch_size: int
    shuffle: bool
    tol: float
    n_iter_no_change: int
    stop_on_validation: bool
    verbose: bool
    check_convergence: bool
    on_epoch: Any
    first_epoch: int
    max_iter: int = 0


def step_function(network: Network, solver: Solver, alpha: float, n_outputs: int):
    """One training step on a batch's arrays, as a pure function.

    Parameters
    ----------
    network : Network
    solver : Solver
        One that does not read the host (``solver.host_reads`` is False).
    alpha : float
        L2 penalty strength.
    n_outputs : int

    Returns
    -------
    callable
        ``step(params, state, X, y, w) -> (params, state, loss)``, with
        ``params`` the list ``coefs + intercepts``, ``X`` of shape
        ``(n_rows, n_features)``, ``y`` of shape ``(n_rows, n_outputs)``, ``w``
        the rows' weights or None, and ``loss`` the batch's loss (penalty
        included) at the old parameters, a 0-d array. No host read and no
        side effect: a compiler may trace it (see ``Device.compile``).
    """
    chosen = {}   # the fast path for each kind of batch: chosen once, not per step

    def step(params, state, X, y, w):
        kind = (type(X), w is None)
        if kind not in chosen:
            chosen[kind] = objective_function(network, alpha, n_outputs,
                                              select_fast(X, w, network))
        objective = chosen[kind]
        return solver.update(params, state, lambda params: objective(params, X, y, w))

    return step


def objective_function(network: Network, alpha: float, n_outputs: int, fast=None):
    """A batch's loss and gradients, with the L2 penalty, as a pure function.

    Parameters
    ----------
    network : Network
    alpha : float
        L2 penalty strength.
    n_outputs : int
    fast : callable or None
        The backend's fast ``loss_and_grads`` for the batches (:func:`select_fast`),
        or None for the generic kernels.

    Returns
    -------
    callable
        ``objective(params, X, y, w) -> (loss, grads)``, ``grads`` shaped as
        ``params`` (``coefs + intercepts``), ``loss`` a 0-d array: what
        :func:`step_function`'s step hands its solver, and what a solver that
        reads the host evaluates (compiled where the device compiles,
        :func:`compiled_objective`).
    """
    n_coefs = network.n_coefs

    def objective(params, X, y, w):
        coefs, intercepts = params[:n_coefs], params[n_coefs:]
        loss, grads, total = rows_loss_and_grads(X, y, w, coefs, intercepts, network, fast)
        loss, coef_grads = kernels.add_l2(loss, grads[:n_coefs], coefs, alpha, total,
                                          n_outputs, network.loss)
        return loss, coef_grads + grads[n_coefs:]

    return objective


@functools.lru_cache(maxsize=64)
def compiled_objective(device, network: Network, alpha: float, n_outputs: int):
    """:func:`objective_function` on the generic kernels, compiled by ``device``, cached."""
    return device.compile(objective_function(network, alpha, n_outputs))


@functools.lru_cache(maxsize=64)
def compiled_step(device, network: Network, solver: Solver, alpha: float, n_outputs: int):
    """:func:`step_function` compiled by ``device`` (``Device.compile``), cached."""
    return device.compile(step_function(network, solver, alpha, n_outputs))


#: A device that compiles runs an epoch of at most this many minibatches as one
#: program (:func:`compiled_epoch`); more would be unrolled into a program
#: whose compilation outgrows what it saves.
MAX_EPOCH_BATCHES = 32


@functools.lru_cache(maxsize=64)
def compiled_epoch(device, network: Network, solver: Solver, alpha: float, n_outputs: int,
                   bounds: tuple, shuffled: bool):
    """An epoch of minibatch steps as one program, compiled by ``device``, cached.

    ``epoch(params, state, X, y, w, order) -> (params, state, loss)``: the
    batches ``bounds`` (``(start, stop)`` pairs) of the rows, in ``order`` when
    ``shuffled``, each one :func:`step_function`'s step, and the epoch's loss
    their losses weighted by their rows (:func:`_weighted_mean`). On JAX each
    compiled call costs a dispatch about as long as a step of a small network:
    one call per epoch instead of one per batch, plus the selection's and the
    mean's.
    """
    from .sources import selection_function

    step = step_function(network, solver, alpha, n_outputs)
    select = selection_function(device, bounds, shuffled)
    xp = device.xp
    rows = [stop - start for start, stop in bounds] + [bounds[-1][1]]

    def epoch(params, state, X, y, w, order):
        losses = []
        for X_b, y_b, w_b in select(X, y, w, order):
            params, state, loss = step(params, state, X_b, y_b, w_b)
            losses.append(loss)
        return params, state, _weighted_mean(losses, xp.asarray(rows, dtype=losses[0].dtype))

    return device.compile(epoch)


def epoch_function(network: Network, solver: Solver, alpha: float, n_outputs: int):
    """One epoch of plain full-batch gradient descent at a given rate, as a pure function.

    :func:`step_function`'s step on the whole batch, with the solver state of
    plain descent (:class:`gpumlp.solvers.SGDState` without velocities) at
    the epoch's rate, and the finiteness flag of the epoch loop
    (:func:`_all_finite`): what a device compiles into a block
    (``Device.compile_blocks``).

    Parameters
    ----------
    network, solver, alpha, n_outputs
        As for :func:`step_function`; ``solver`` an :class:`~gpumlp.solvers.SGD`
        without momentum.

    Returns
    -------
    callable
        ``epoch(params, rate, X, y, w) -> (params, loss, finite)``, with
        ``rate`` a 0-d array in the parameters' dtype, ``loss`` the loss at
        the old parameters (penalty included) and ``finite`` 1 or 0 (the new
        parameters' sum is finite), 0-d arrays.
    """
    step = step_function(network, solver, alpha, n_outputs)

    def epoch(params, rate, X, y, w):
        params, _, loss = step(params, SGDState(rate), X, y, w)
        return params, loss, _all_finite(params)

    return epoch


@functools.lru_cache(maxsize=64)
def compiled_blocks(device, network: Network, solver: Solver, alpha: float, n_outputs: int):
    """:func:`epoch_function` compiled into whole blocks by ``device``, cached; or None.

    See ``Device.compile_blocks`` (None where the device compiles no loops).
    """
    return device.compile_blocks(epoch_function(network, solver, alpha, n_outputs),
                                 MAX_EPOCHS)


def _weighted_mean(losses, rows):
    """``sum_i losses[i] * rows[i] / rows[-1]``: an epoch's loss from its batches'."""
    xp = array_namespace(*losses)
    return xp.sum(xp.stack(losses) * rows[:-1]) / rows[-1]


@functools.lru_cache(maxsize=16)
def _compiled_weighted_mean(device):
    return device.compile(_weighted_mean)


def _non_finite_state(state):
    """The name (as a model file's member) of the first non-finite array of ``state``, or None."""
    arrays, _ = state_to_arrays(state)
    for name, a in arrays.items():
        if not np.all(np.isfinite(to_numpy(a))):
            return name
    return None


@functools.lru_cache(maxsize=16)
def _compiled_all_finite(device):
    return device.compile(functools.partial(_all_finite, xp=device.xp))


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
        The loss (the network's loss plus penalty) of each epoch, averaged
        over its minibatches.
    learning_rates : list of float
        The step size in force at the end of each epoch.
    call_start : int
        ``len(loss_curve)`` when the last call to :meth:`fit` began, so the
        epochs of that call are ``len(loss_curve) - call_start``.
    run_start : int or None
        Where the run the next call continues began, when it continues one
        (a resume: ``gpumlp train --resume``): a loss that rose is judged
        from there, as the run done in one call would be. None: from the
        call's first epoch.
    """

    network: Network
    solver: Solver
    alpha: float
    params: list
    state: Any = None
    loss_curve: list = field(default_factory=list)
    learning_rates: list = field(default_factory=list)
    validation_losses: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    best_validation_score: float = -math.inf
    best_params: list | None = None
    no_improvement_count: int = 0
    samples_seen: int = 0
    #: ``(key, step)``: the compiled step of the last epoch, kept for the next.
    _step: Any = field(default=None, repr=False, compare=False)
    #: ``(key, runner or None)``: the backend's block runner for the last data.
    _blocks: Any = field(default=None, init=False, repr=False, compare=False)
    call_start: int = 0
    run_start: int | None = field(default=None, compare=False)

    def __getstate__(self):
        # The cached compiled step and block runner hold closures and device
        # buffers: rebuilt on demand, never pickled.
        state = {**self.__dict__, "_step": None, "_blocks": None}
        if self.params and aac.is_jax_array(self.params[0]):
            # JAX unpickles a float64 array as float32 unless 64-bit types are on,
            # which gpumlp turns on within each fit only: kept on the host with
            # their dtypes, and put back on their device by __setstate__.
            from .devices import device_of

            state["_jax_device"] = device_of(self.params[0])
            for name in ("params", "best_params"):
                if state[name] is not None:
                    state[name] = [np.asarray(a) for a in state[name]]
            state["state"] = map_state(self.state, np.asarray)
        return state

    def __setstate__(self, state):
        device = state.pop("_jax_device", None)
        self.__dict__.update(state)
        if device is not None:
            for name in ("params", "best_params"):
                if getattr(self, name) is not None:
                    setattr(self, name, [device.asarray(a) for a in getattr(self, name)])
            self.state = map_state(self.state, device.asarray)

    @property
    def learning_rate(self) -> float:
        """The step size in force: the solver's, or the one its state adapts."""
        return float(getattr(self.state, "learning_rate", self.solver.learning_rate))

    @property
    def coefs(self):
        return self.params[: self.network.n_coefs]

    @property
    def intercepts(self):
        return self.params[self.network.n_coefs:]

    def objective(self, source, batch):
        """``params -> (loss, grads)`` on one batch, with the L2 penalty added.

        On a device that compiles (JAX), for a source holding rows, one
        compiled program (:func:`compiled_objective`): a solver that reads
        the host (L-BFGS, ``"auto"``) evaluates it every step, and its some
        thirty operations one by one would each cost a dispatch.
        """
        device = getattr(source, "device", None)
        if device is not None and device.compiles and hasattr(source, "rows"):
            X, y, w = source.rows(batch)
            compiled = compiled_objective(device, self.network, self.alpha, source.n_outputs)
            return lambda params: compiled(params, X, y, w)
        n_coefs = self.network.n_coefs

        def evaluate(params):
            coefs, intercepts = params[:n_coefs], params[n_coefs:]
            loss, grads, total = source.loss_and_grads(batch, coefs, intercepts, self.network)
            loss, coef_grads = kernels.add_l2(loss, grads[:n_coefs], coefs, self.alpha, total,
                                              source.n_outputs, self.network.loss)
            return loss, coef_grads + grads[n_coefs:]

        return evaluate

    def epoch(self, source, batches):
        """One pass over ``batches`` of ``source``; the epoch's mean loss as a 0-d array.

        A source that holds rows (:meth:`ArraySource.epoch_rows`) feeds each
        batch to one pure step, compiled where the device compiles (JAX); a
        solver that reads the host, and a source that computes gradients
        itself (Dask), go through :meth:`objective` instead.
        """
        device = getattr(source, "device", None)
        if hasattr(source, "epoch_rows") and not (self.solver.host_reads and device.compiles):
            key = (device, self.network, self.solver, self.alpha, source.n_outputs)
            if device.compiles and 1 < len(batches) <= MAX_EPOCH_BATCHES \
                    and hasattr(source, "X"):
                order = batches[0][2]
                program = compiled_epoch(*key, tuple((b[0], b[1]) for b in batches),
                                         order is not None)
                self.params, self.state, loss = program(
                    self.params, self.state, source.X, source.y, source.sample_weight, order)
                self.samples_seen += source.n_samples
                return loss
            if self._step is None or any(a is not b for a, b in zip(self._step[0], key)):
                self._step = (key, compiled_step(*key))
            step = self._step[1]
            losses = []
            for X, y, w in source.epoch_rows(batches):
                self.params, self.state, loss = step(self.params, self.state, X, y, w)
                losses.append(loss)
        else:
            losses = []
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
        # What the L2 penalty's step scales with (the divergence advice: _rate_advice):
        # a batch's rows, for unweighted rows (weights normalise it by their sum).
        self._penalty_rows = (batch_size, getattr(source, "n_outputs", 1)) \
            if getattr(source, "sample_weight", None) is None else None
        first_epoch = self.call_start = len(self.loss_curve)
        self.state = self.solver.begin_fit(self.state)
        run = _Run(source, validation, rng, batch_size, shuffle, tol, n_iter_no_change,
                   stop_on_validation, verbose, check_convergence, on_epoch, first_epoch,
                   max_iter)
        # Where the last recorded epoch began: for full-batch descent, the point
        # at which the last finite loss was measured.
        self._previous = _Snapshot(list(self.params), self.state, self.samples_seen,
                                   rng.bit_generator.state)
        block, left = 1, max_iter
        # Divergence is detected from the loss and reported once, clearly;
        # NumPy's overflow warnings on the way there would only be noise.
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while left > 0:
                    started = time.perf_counter()
                    size = min(block, left)
                    done, outcome = self._block(run, size)
                    if outcome is not None:
                        self._end_fit()
                        return outcome
                    left -= done
                    block = _next_block_size(self.solver, size, done,
                                             time.perf_counter() - started)
        finally:
            self._blocks = None   # a block runner holds the data and device buffers
        self._end_fit()
        if check_convergence:
            self._warn_if_loss_rose(first_epoch, stop_on_validation)
            if self.solver.uses_stopping_rule:
                advice = "Raise max_iter or learning_rate_init."
            else:
                advice = "Raise max_iter, or scale the data."
            warnings.warn(
                f"Maximum iterations ({max_iter}) reached and the optimization hasn't "
                f"converged yet. {advice}",
                convergence_warning(),
                stacklevel=3,
            )
        return False

    def _block(self, run, size):
        """Run ``size`` epochs, read their figures once, then apply the rule to each in order.

        Every epoch's parameters, solver state, sample count and generator
        state are kept (they are immutable values, so keeping them copies
        nothing). When the rule stops, or changes the solver's state, at an
        epoch inside the block, training is put back to that epoch: the
        result is exactly what the epoch-by-epoch rule gives.

        Returns
        -------
        done : int
            Epochs recorded.
        outcome : bool or None
            ``fit``'s return value when training ended, else None.
        """
        rng = run.rng
        start = _Snapshot(list(self.params), self.state, self.samples_seen,
                          rng.bit_generator.state)
        epochs, to_read = [], []
        device = getattr(run.source, "device", None)
        all_finite = _all_finite if device is None else _compiled_all_finite(device)
        before = start
        blocks = self._block_runner(run)
        try:
            if blocks is not None:
                epochs, to_read = self._run_block(blocks, run, size, start)
            else:
                for _ in range(size):
                    batches = run.source.batches(rng, run.batch_size, run.shuffle)
                    values = [self.epoch(run.source, batches),
                              all_finite(self.params + _unseen_state(self.solver, self.state))]
                    if run.validation is not None:
                        values += list(run.validation.evaluate(self.coefs, self.intercepts,
                                                               self.network))
                    rate = self.learning_rate
                    ended = self.solver.end_epoch(self.state, self.samples_seen)
                    epoch = _Epoch(before, list(self.params), self.state, ended,
                                   self.samples_seen, rng.bit_generator.state, rate)
                    epochs.append(epoch)
                    self.state = ended
                    before = _Snapshot(epoch.params, ended, epoch.seen, epoch.rng)
                    to_read += values
            values = read_scalars(*to_read)
        except BaseException:
            # Ctrl-C, or a failure part-way through the block: keep the last
            # recorded epoch's weights.
            start.restore(self, rng)
            raise
        width = len(values) // size
        try:
            for j, epoch in enumerate(epochs):
                mine = values[j * width:(j + 1) * width]
                outcome = self._record(run, epoch, mine)
                if outcome is _REPLAY:
                    # The later epochs ran with the old state: run them again.
                    return j + 1, None
                if outcome is not _GO_ON:
                    return j + 1, outcome
            return size, None
        finally:
            # A block runner's epochs may hold their parameters lazily
            # (:class:`gpumlp.fastpath.compiled.EpochParams`, which keeps the
            # whole block's stacked output): plain lists between blocks.
            self.params = list(self.params)
            previous = getattr(self, "_previous", None)
            if previous is not None and not isinstance(previous.params, list):
                self._previous = dataclasses.replace(previous, params=list(previous.params))

    def _block_runner(self, run):
        """The backend's runner of whole blocks, or None.

        Only for plain gradient descent (an ``SGD`` solver without momentum,
        which covers ``"gd"`` with a numeric rate) on one full batch: the
        source's own runner where it has one (``block_runner``, Dask's
        :class:`gpumlp.distributed.ShardBlocks`); for a source holding rows,
        chosen once per data and settings. A device that
        compiles (JAX), with the fast paths on and a network whose block
        slots fit (:func:`gpumlp.fastpath.compiled.serves`): :func:`compiled_blocks`;
        on NumPy with the fast paths on (the C blocks), or with the CUDA
        opt-in: :func:`select_blocks`; otherwise None.
        """
        source = run.source
        if not (isinstance(self.solver, SGD) and getattr(self.state, "velocities", True) is None
                and run.batch_size >= source.n_samples):
            return None
        if hasattr(source, "block_runner"):
            # A source that runs blocks where its data is (Dask: on the worker
            # that holds every chunk), chosen anew each block.
            return source.block_runner(self.network, self.solver, self.alpha)
        if not hasattr(source, "epoch_rows"):
            return None
        device = source.device
        compiles = device.compiles and self.network.fastpath and compiled.serves(self.params)
        if not (compiles or self.network.cuda_graph
                or (device.is_numpy and self.network.fastpath and cblocks.available())):
            return None
        X, y, w = source.rows((0, source.n_samples, None))
        arrays, settings = (X, y, w), (self.network, self.solver, self.alpha,
                                       tuple(tuple(p.shape) for p in self.params))
        cached = self._blocks
        if cached is None or any(a is not b for a, b in zip(cached[0], arrays)) \
                or cached[1] != settings:
            if compiles:
                # The program takes each epoch's rate as an argument; the rate
                # and its schedule live on the host (end_epoch): one
                # compilation serves every learning_rate_init, schedule and power_t.
                program_solver = dataclasses.replace(self.solver, learning_rate=0.0,
                                                     schedule="constant", power_t=0.5)
                blocks = compiled_blocks(device, self.network, program_solver, self.alpha,
                                         source.n_outputs)
                runner = None if blocks is None else CompiledBlocks(blocks, X, y, w, device)
            else:
                runner = select_blocks(X, y, w, self.coefs, self.network, self.alpha)
            cached = self._blocks = (arrays, settings, runner)
        return cached[2]

    def _run_block(self, blocks, run, size, start):
        """``size`` full-batch epochs by ``blocks.run``: the epochs and the values to read.

        As the epoch loop of :meth:`_block` leaves them: each epoch's
        parameters, solver state before and after its end, sample count and
        generator state (a full batch draws nothing from it), and the rates
        the schedule gives (computed ahead: they depend on the sample count
        only, and a change by the stopping rule replays the later epochs).
        """
        n, n_coefs = run.source.n_samples, self.network.n_coefs
        states, rates = [], []
        state, seen = self.state, self.samples_seen
        for _ in range(size):
            seen += n
            ended = self.solver.end_epoch(state, seen)
            states.append((state, ended, seen))
            rates.append(float(state.learning_rate))
            state = ended
        epochs, to_read, before = [], [], start
        for (state, ended, seen), rate, (params, loss, finite) in zip(
                states, rates, blocks.run(list(self.params), rates)):
            to_read += [loss, finite]
            if run.validation is not None:
                to_read += list(run.validation.evaluate(params[:n_coefs], params[n_coefs:],
                                                        self.network))
            epoch = _Epoch(before, params, state, ended, seen, start.rng, rate)
            epochs.append(epoch)
            before = _Snapshot(epoch.params, ended, seen, start.rng)
        last = epochs[-1]
        self.params, self.state, self.samples_seen = list(last.params), last.ended, last.seen
        return epochs, to_read

    def _end_fit(self):
        """Where the solver ends a call that ran its course (AutoGD: its best point)."""
        self.params, self.state = self.solver.end_fit(self.params, self.state)

    def _record(self, run, epoch, values):
        """Apply one epoch's read figures: divergence, history, the rule, the callback.

        The callback comes last: it sees the trainer exactly as the next epoch
        would start (the solver's end of epoch and the rule's bookkeeping
        done), so a checkpoint taken there resumes exactly; if it raises
        (Ctrl-C), the epoch stays recorded and whole.

        Returns ``_GO_ON``, ``_REPLAY`` (the rule changed the solver's state,
        so the later epochs of the block are discarded and run again), or
        ``fit``'s return value.
        """
        loss, params_finite = values[0], values[1]
        if not math.isfinite(loss):
            zero_batch = _zero_weight_batch(run, epoch.before.rng)
            self._undo_last_epoch(run)
            if zero_batch is not None:
                raise TrainingDivergedError(
                    f"Training stopped at epoch {len(self.loss_curve) + 1}: a minibatch of "
                    f"{zero_batch} rows had sample_weight 0 on every row, so its weighted "
                    f"mean loss was 0 / 0. Drop the rows of weight 0 (they do not count in "
                    f"the fit), or pass a larger batch_size. The weights of the last epoch "
                    f"with a finite loss were kept.")
            raise self._diverged(loss)
        if not params_finite:
            # The loss was measured before the epoch's steps, at finite weights;
            # a step then made them, or the solver's state, NaN or infinite.
            params = list(epoch.params)
            overflowed = None
            if self.solver.UNSEEN_OVERFLOW and read_scalars(_all_finite(params))[0]:
                overflowed = _non_finite_state(epoch.state)
            epoch.before.restore(self, run.rng)
            if overflowed is not None:
                raise self._state_overflowed(overflowed, dtype_name(params[0]))
            raise self._diverged(loss, weights=True)
        self.params, self.state, self.samples_seen = epoch.params, epoch.ended, epoch.seen
        run.rng.bit_generator.state = epoch.rng
        self._previous = epoch.before
        self.loss_curve.append(loss)
        self.learning_rates.append(epoch.rate)
        validation_loss = score = None
        if run.validation is not None:
            validation_loss, score = values[2], values[3]
            self.validation_losses.append(validation_loss)
            self.validation_scores.append(score)
        if run.verbose:
            print(f"Iteration {len(self.loss_curve)}, loss = {loss:.8f}")
        outcome = self._apply_rule(run, epoch, score)
        if run.on_epoch is not None:
            run.on_epoch(len(self.loss_curve), loss, validation_loss)
        return outcome

    def _apply_rule(self, run, epoch, score):
        """The solver's own stop, or the stopping rule, after one recorded epoch."""
        if not self.solver.uses_stopping_rule:
            stopped = self.solver.stop_reason(self.state)
            if stopped is not None:
                why, converged = stopped
                if converged and len(self.loss_curve) - run.first_epoch >= run.max_iter:
                    # Its last allowed iteration: max_iter stops it first, as in
                    # scikit-learn's L-BFGS-B (a ConvergenceWarning).
                    why, converged = f"max_iter ({run.max_iter}) iterations reached", False
                return self._solver_stopped(why, converged, run.first_epoch, run.verbose)
            return _GO_ON
        if not self._should_stop(run.tol, run.n_iter_no_change,
                                 score if run.stop_on_validation else None):
            return _GO_ON
        self.state, stop = self.solver.on_plateau(self.state)
        what = "Validation score" if run.stop_on_validation else "Training loss"
        message = (f"{what} did not improve more than tol={run.tol:f} for "
                   f"{run.n_iter_no_change} consecutive epochs.")
        if not stop:
            self.no_improvement_count = 0
            if run.verbose:
                print(f"{message} {self.solver.plateau_action(self.state)}")
            return _REPLAY
        if run.check_convergence:
            if run.verbose:
                print(f"{message} Stopping.")
            self._warn_if_loss_rose(run.first_epoch, run.stop_on_validation)
            return True
        return _REPLAY if self.state is not epoch.ended else _GO_ON

    def _undo_last_epoch(self, run):
        """After a non-finite loss: back to the start of the last recorded epoch.

        Its weights are those at which the last finite loss was measured (for
        full-batch descent exactly); the solver state, sample count and
        generator go back with them, and that epoch leaves the history, so
        that everything again describes one epoch boundary.
        """
        self._previous.restore(self, run.rng)
        if len(self.loss_curve) > run.first_epoch:
            histories = [self.loss_curve, self.learning_rates]
            if run.validation is not None:
                histories += [self.validation_losses, self.validation_scores]
            for history in histories:
                history.pop()

    def _solver_stopped(self, why, converged, first_epoch, verbose):
        """A solver with its own criteria (L-BFGS) stopped: report, warn unless converged."""
        if verbose:
            print(f"Stopping: {why}.")
        if converged:
            return True
        self._warn_if_loss_rose(first_epoch, False)
        warnings.warn(
            f"{type(self.solver).__name__} failed to converge after "
            f"{len(self.loss_curve) - first_epoch} iteration(s): {why}. Raise max_iter "
            f"or max_fun, or scale the data.",
            convergence_warning(), stacklevel=4)
        return False

    def _diverged(self, loss, weights=False):
        """The error for a loss, or (``weights``) for weights, that stopped being finite."""
        if weights:
            # scikit-learn's words too: "Solver produced non-finite parameter weights".
            what = (f"a step made the weights NaN or infinite (the loss before it was "
                    f"{loss:.6g}): the solver produced non-finite parameter weights, and the "
                    f"input data may contain large values and need to be preprocessed. The "
                    f"weights the epoch began with were kept.")
        else:
            what = (f"the loss became {loss}. The weights of the last epoch with a finite "
                    f"loss were kept.")
        return TrainingDivergedError(
            f"Training diverged at epoch {len(self.loss_curve) + 1}: {what} "
            f"{self._rate_advice('standardise X and y')}."
        )

    def _state_overflowed(self, member, dtype):
        """The error for a solver state that crossed the training dtype's limit (weights finite)."""
        largest = float(np.finfo(dtype).max)
        if isinstance(self.solver, Adam) and member.startswith("second"):
            what = (f"Adam's second moment (the running mean of squared gradients, member "
                    f"{member!r} of its state) overflowed {dtype}: a gradient passed about "
                    f"{math.sqrt(largest):.2g}, whose square {dtype} cannot hold, and from "
                    f"there Adam's steps m / (sqrt(v) + epsilon) would be 0, so training "
                    f"would freeze without a sign")
        else:
            what = (f"the solver's state (member {member!r}) became NaN or infinite in "
                    f"{dtype} while the weights and the loss stayed finite")
        fixes = ["Standardise X and y (StandardizedRegressor, which gpumlp train uses "
                 "unless --no-standardize)", "lower learning_rate_init"]
        if dtype != "float64":
            fixes.append("pass dtype='float64' (on the command line: --dtype float64)")
        rows = getattr(self, "_penalty_rows", None)
        if rows is not None and self.alpha > 0:
            # The penalty's gradient alpha c W, at the weights the epoch began with: a
            # second moment overflows where a gradient passes sqrt(largest); alpha is
            # named where its penalty alone came within a thousandth of that (the
            # weights, and with them that gradient, move within the epoch).
            largest_weight = max(float(np.max(np.abs(to_numpy(W)), initial=0.0))
                                 for W in self.params[:self.network.n_coefs])
            penalty = self.alpha * self.network.loss.delta_scale(*rows) * largest_weight
            if penalty > 1e-3 * math.sqrt(largest):
                fixes.insert(0, f"Lower alpha (now {self.alpha:g}): its penalty's gradient "
                                f"alone reached {penalty:.2g}")
                fixes[1] = fixes[1][0].lower() + fixes[1][1:]
        return TrainingDivergedError(
            f"Training stopped at epoch {len(self.loss_curve) + 1}: {what}. The weights the "
            f"epoch began with were kept. {', '.join(fixes[:-1])} or {fixes[-1]}.")

    def _rate_advice(self, *more):
        """What to do about a step that is too large, as one sentence without its period."""
        if isinstance(self.solver, AutoGD):
            options = [f"The step size was set from the curvature (now "
                       f"{self.learning_rate:g}); pass a smaller learning_rate_init"]
        else:
            options = [f"Lower learning_rate_init (now {self.learning_rate:g})"]
            if isinstance(self.solver, GradientDescent):
                options.append('pass learning_rate_init="auto" to set it from the '
                               "loss's curvature")
        # The penalty's own step scales the weights by 1 - rate alpha c, c the loss's
        # delta scale for a batch's rows: past 2 it alone overshoots (a step that
        # normalises the gradient, Adam's, is bounded by the rate and never does).
        rows = getattr(self, "_penalty_rows", None)
        scale = 0.0 if rows is None else self.network.loss.delta_scale(*rows)
        if not isinstance(self.solver, Adam) and self.alpha * self.learning_rate * scale > 2:
            options[0] = options[0][0].lower() + options[0][1:]
            options.insert(0, f"Lower alpha (now {self.alpha:g}): with this rate its "
                              f"penalty alone can make a step overshoot")
        options += more
        if len(options) == 1:
            return options[0]
        return ", ".join(options[:-1]) + " or " + options[-1]

    def _warn_if_loss_rose(self, first_epoch, stop_on_validation):
        """Warn when this call's last loss is clearly above its first (by over 1%).

        A healthy fit, even a noisy minibatch one, does not end above where it
        began; a step that is too large does, without ever overflowing.
        """
        curve = self.loss_curve[first_epoch if self.run_start is None else self.run_start:]
        if stop_on_validation or len(curve) < 2 or not curve[-1] > 1.01 * curve[0]:
            return
        if isinstance(self.solver, AutoGD):
            # Its test bounds each loss by the highest of the last few accepted
            # (gpumlp.step_size.MEMORY), which a call that continues the search
            # (--resume) may have begun below: a rise by design, not a large step.
            return
        warnings.warn(
            f"The training loss rose from {curve[0]:.6g} to {curve[-1]:.6g} over "
            f"{len(curve)} epochs: the step is too large for this problem. "
            f"{self._rate_advice()}.",
            LossIncreasedWarning, stacklevel=4)

    def _should_stop(self, tol, n_iter_no_change, score):
        if score is not None:
            improved = score >= self.best_validation_score + tol
            if score > self.best_validation_score:
                self.best_validation_score = score
                self.best_params = list(self.params)
        else:
            loss = self.loss_curve[-1]
            progress = self.solver.progress(self.state, loss, self.best_loss)
            improved = loss <= self.best_loss - tol if progress is None else progress > tol
            self.best_loss = min(self.best_loss, loss)
        self.no_improvement_count = 0 if improved else self.no_improvement_count + 1
        # scikit-learn acts after *more than* n_iter_no_change epochs (issue 12).
        return self.no_improvement_count > n_iter_no_change

