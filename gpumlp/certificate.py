"""A per-fit certificate: replay a saved fit segment by segment, and bind what the file claims.

The design is proof-of-learning's (Jia et al., "Proof-of-Learning: Definitions
and Practice", IEEE S&P 2021). A fit keeps checkpoints of its whole training
state and each epoch's decisions (:mod:`gpumlp._fitrecord`); :func:`certify`

1. **checks the provenance** of the start: a fresh fit's initial weights must
   be exactly the Glorot draw of its recorded seed (for ``random_state=None``
   the entropy NumPy drew, recorded), its generator the state that draw left,
   its solver state fresh; a continued fit (warm start, ``partial_fit``)
   names the digest of its parent model, which is certified in turn when it is
   given (``parents``): a chain certifies link by link, and a start that
   cannot be verified is reported as such, never as PASS (so is a parent
   fit on other data than its child's, which the data given cannot bind);
2. **binds the data**: the scalers of a ``StandardizedRegressor`` are
   recomputed from ``X`` and ``y`` and compared with the file's; the scaled
   data, the sample weights and the ``eval_set`` must have the recorded
   fingerprint, as given or as the same numbers in another dtype (an exact
   cast); feature and target names are checked against the data's
   header when there is one;
3. **replays every segment** between two checkpoints on every available
   backend and dtype, from the segment's stored start, with the recorded
   decisions imposed (each epoch's rate, the ``"auto"`` step's accept or
   refuse, a continued ``"auto"`` call's go-on or restart, L-BFGS's step
   length and its keep or skip of each curvature pair, the stopping rule's
   plateau actions), and
   compares the replay's end with the next checkpoint (weights, the solver
   state, early stopping's best weights) and every epoch's loss and
   validation loss with the file's;
4. **verifies each decision** separately: the rule, applied to the numbers
   the replay computes, must take the recorded decision, or the replay's
   numbers must lie within their tolerance of the threshold where the rule
   changes its mind (so rounding near a threshold is no failure, and a
   decision no rounding explains is one); the stopping rule is re-run over
   the recorded losses and must give the recorded plateaus and end; where
   the rule reads numbers the record does not keep (L-BFGS's ``gtol``,
   ``ftol`` and ``max_fun`` tests, the ``"auto"`` step's progress measure),
   each replay re-runs it over the numbers it computes;
   an L-BFGS replay evaluates the loss at the recorded step only, and where
   that is not an exact Wolfe step at its numbers searches again within the
   fit's own evaluations of that iteration (recorded), so a replay never
   costs much more than the fit; where the fit's search found no step (it
   forgot its memory and searched again, or stopped), the replay does as the
   fit did and runs the rule's own search there, within the search's own
   limit of evaluations: a step it finds that meets the Wolfe conditions
   beyond rounding, where NumPy's float64 and float32 runs found one too,
   refutes the record;
5. **binds the file's claims**: ``loss_curve_``, ``loss_``, ``best_loss_``,
   ``n_iter_``, ``learning_rates_`` and validation scores are the ones the
   replays check, the stored weights are exactly those the last checkpoint
   gives (early stopping's best, the ``"auto"`` search's best point), the
   device and dtype agree with the record, and ``hidden_layer_sizes`` with
   the weights (checked on loading); the training state a continuation goes
   on from (solver state, generators, history) is, to the bit, the fit's
   last checkpoint; ``gpumlp train``'s data digest is the data's.

Tolerances
----------
Because a segment is short and starts from stored values, rounding has little
room to grow in it: there is no cut-off, and the verdict covers every epoch.
What a segment does with rounding is measured, on that segment: NumPy runs
it in float64 and in float32 (with its fast path when that is on: BLAS sums,
with larger errors than the generic pairwise sums), and, when another backend
replays, NumPy's generic kernels run it in float32 twice more (the formulas
those backends run: ``a (1 - a)`` where the fast path has ``1 - t**2``), each
batch's rows summed in another order (:func:`_reordered`) and the activation's
``tanh`` moved within an eps, as another backend's own ``tanh`` is
(:func:`_perturbed`), and each layer's products within their rounding, as
another backend's matrix kernels sum them (:func:`_perturbed_affine`); a
segment a replay leaves by more than their spread is judged again over
:data:`EXTRA_SAMPLES` more before it fails (a float64 replay of a float64
fit, over as many more in float64 too). For each quantity
``q`` compared at the segment's end (each weight array, each array and number
of the solver state, early stopping's best weights) and each epoch's loss
and validation loss, ``noise_q`` is the largest distance of a float32 run
from the float64 one, or of two float32 runs from each other: how far
float32 rounding, magnified or damped by this segment, moves ``q``. Three
samples, because where a segment magnifies one direction most, a replay's
distance over one sample's is a ratio of two random projections on it, with
Cauchy tails (past :data:`MARGIN` about 6% of the time; for the largest of
three, some 0.1%; and a chaotic segment's honest distances spread over two
decades, which the extra samples cover). A replay in ``dtype`` of a fit trained in
``trained_dtype`` may differ from the record by::

    MARGIN * (noise_q * eps / eps32 + (k + 1) * eps * |q|)

with ``eps`` the unit roundoff of the looser of the two dtypes (rounding
noise scales with it), ``k`` the steps (minibatch updates) of the segment
before ``q`` and :data:`MARGIN` = 10, the margin the agreement table keeps;
the second term is one rounding of ``q`` per step, a floor for a quantity
whose measured noise happened to cancel. A number a decision reads is known
to within the same, relative to it (at most 0.99: a number known to no
better than that is undetermined at this precision). With decisions imposed
a segment is a smooth function of its start, so an honest file stays within
this (issue 19's property test draws fits from the whole parameter space,
natively and under ``OPENBLAS_CORETYPE=Haswell``); a fault (a gradient off by
one part in a million in float64, a thousand in float32) moves the end of its
segment by that fraction of the step, far beyond float32's noise scaled to
float64, and beyond float32's own where the segment's steps are not
themselves at the rounding level.

ReLU's kinks break the smoothness: where a unit's pre-activation is within
rounding of 0, a replay that rounds otherwise may take the kink's other
side, and the rest of its segment moves by a finite amount. NumPy's float64
run logs each evaluation point's margin to the kinks (:func:`_kink_margin`);
a replay other than the fit's own computation compares a segment only up to
the epoch before the first point within rounding (:func:`_kink_crossing`),
and the fit's own computation, bit for bit, judges the whole segment.

Bit for bit
-----------
The record keeps what a NumPy fit's numbers depend on besides its data
(:func:`gpumlp._fitrecord.computation`: gpumlp's, NumPy's and the BLAS's
versions and core type, the CPU, its cores, the instruction sets NumPy's
loops dispatch to, the C blocks' instruction set and work line, and the
BLAS's threads, which the replays take on). Where this process has the
same, NumPy's replay in the fit's dtype, with the fast path the record
claims, computes as the fit did, and is held to the record exactly
(:func:`_bit_exact_failures`): every quantity, the generator at each
checkpoint, and every decision the rule takes at its numbers. Where NumPy
cannot compute as a NumPy fit did (its fast path off here), its replays are
judged over rounding samples as another backend's are. Elsewhere, every
replay is judged within rounding only, and a note says so: a change below a
segment's measured rounding, or an L-BFGS step that is another strong-Wolfe
one, is then not seen.

Outcomes
--------
``PASS`` (exit 0): every check ran and held. ``FAIL`` (exit 1): something the
file claims is false. ``CANNOT`` (exit 2): nothing was found false, but
something needed is missing (the file's record, a backend it was trained on,
the data, the parent model); :attr:`Certificate.missing` says what.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import agreement, fastpath
from ._checks import check_X, check_y
from ._fitrecord import (
    computation,
    fingerprint,
    generator_from_seed,
    generator_from_state,
    model_digest,
)
from .devices import BackendUnavailableError, Device, to_numpy

__all__ = ["EXIT_CODES", "MARGIN", "Certificate", "NotReplayableError", "Replay", "certify",
           "format_certificate"]

#: A replay may differ from the record by this many times the rounding noise
#: measured for the segment (the margin the agreement table keeps over its bounds).
MARGIN = 10.0

#: Rounding samples taken for a segment that a replay leaves by more than the
#: first three's spread, before the replay is called a failure (:func:`_replay_all`).
EXTRA_SAMPLES = 8
#: The command line's exit status for each outcome.
EXIT_CODES = {"PASS": 0, "FAIL": 1, "CANNOT": 2}


class NotReplayableError(ValueError):
    """The model file holds no fit record that can be certified (an older file, Dask data)."""


@dataclass
class Check:
    """One thing the certificate checked, outside the replays."""

    what: str
    ok: bool
    detail: str = ""


@dataclass
class Replay:
    """One backend and dtype, every segment replayed.

    Attributes
    ----------
    backend, dtype : str
    segments : list of dict
        Per segment: ``start``, ``end`` (epochs), ``worst`` (the largest
        ratio of a difference to its tolerance) and ``what`` (where it is).
    failures : list of str
        What did not hold (a quantity past its tolerance, a decision the
        rule would not take), with the epoch.
    partial : list of tuple
        ``(first, last, compared_to)``: the segments (epochs, 1-based) this
        replay compared only up to epoch ``compared_to``, where a ReLU unit
        came within rounding of its kink (the fit's own replay judges them whole).
    exact : bool
        Whether this replay computes as the fit did (the same backend, dtype,
        fast path and computation key) and was held to the record bit for bit.
    error : str or None
        Why the replay could not run.
    """

    backend: str
    dtype: str
    segments: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    error: str | None = None
    partial: list = field(default_factory=list)
    exact: bool = False

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures


@dataclass
class Certificate:
    """The result of :func:`certify`.

    Attributes
    ----------
    model : str
    trained_on : str
        The record's device and the weights' dtype.
    epochs : int
        Epochs of the call the record covers.
    checks : list of Check
        Provenance, data, the file's claims, the decisions rules.
    replays : list of Replay
    missing : list of str
        What could not be checked for want of something (outcome CANNOT).
    notes : list of str
    covered : list of str
        What the certificate covered, in words.
    parents : list of Certificate
        The certificates of the parent models, for a chain.
    """

    model: str
    trained_on: str
    epochs: int
    checks: list = field(default_factory=list)
    replays: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    covered: list = field(default_factory=list)
    parents: list = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``"PASS"``, ``"FAIL"`` or ``"CANNOT"`` (see the module docs)."""
        own = [c.ok for c in self.checks] + [r.passed for r in self.replays if r.error is None]
        parents = [p.outcome for p in self.parents]
        if not all(own) or "FAIL" in parents:
            return "FAIL"
        if self.missing or "CANNOT" in parents or not any(
                r.error is None for r in self.replays):
            return "CANNOT"
        return "PASS"

    @property
    def passed(self) -> bool:
        return self.outcome == "PASS"

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.outcome]

    def to_json(self) -> str:
        """The certificate as JSON, every segment included."""
        def plain(cert):
            return {"model": cert.model, "trained_on": cert.trained_on, "epochs": cert.epochs,
                    "outcome": cert.outcome, "checks": [asdict(c) for c in cert.checks],
                    "missing": cert.missing, "notes": cert.notes, "covered": cert.covered,
                    "replays": [dict(asdict(r), passed=r.passed) for r in cert.replays],
                    "parents": [plain(p) for p in cert.parents]}

        return json.dumps(plain(self), indent=1, allow_nan=True)


# ------------------------------------------------------------------ replaying
def _norm(a) -> float:
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64).ravel()))


class _Decisions:
    """The recorded decisions a replay imposes, and what the rule itself decided there."""

    def __init__(self, context, first_epoch: int, samples_start: int, n_train: int):
        self.context = context
        self.first_epoch = first_epoch          # the call's epoch the segment starts after
        self.samples_start = samples_start      # samples seen when the call started
        self.n_train = n_train
        self.epoch = first_epoch                # epochs done so far (0-based index of the next)
        self.log = []                           # per epoch: what the rule decided, and from what
        self.retrying = False                   # L-BFGS: the first search given up, as recorded
        self.progress = []                      # "auto": each epoch's progress measure
        self.start = None                       # "auto": a continued call's go-on or restart
        self.failed_searches = []               # L-BFGS: what the rule's search finds where
        #                                         the fit's found no step
        self.epochs_ended = 0                   # epochs of the segment done so far
        self.kinks = []                         # ReLU: (epoch in the segment, relative margin)
        #                                         of each evaluation point (_kink_margin)
        self.searched = 0                       # L-BFGS: the last own search's evaluations
        self.fresh_start = False                # L-BFGS: the iteration began without a gradient

    def epoch_after(self, samples_seen: int) -> int:
        """The call's epoch (1-based) that ends with ``samples_seen`` rows seen."""
        return (samples_seen - self.samples_start) // self.n_train


#: One subclass per solver class (see :func:`_imposing`).
_IMPOSED: dict = {}


def _perturbed_dot(rng):
    """:func:`gpumlp.kernels.dot` as another summation order might round it: moved by
    a random fraction of ``sqrt(n) eps`` times the sum of its terms' magnitudes
    (the size of a sum's rounding, ``n`` terms in random order; its worst case
    is ``n eps`` times that)."""
    from . import kernels

    def dot(a, b, xp=None):
        exact = kernels.dot(a, b, xp)
        size = kernels.dot([abs(u) for u in a], [abs(v) for v in b], xp)
        n = sum(int(np.size(u)) for u in a)
        eps = float(np.finfo(np.asarray(exact).dtype).eps)
        return exact + size * (math.sqrt(n) * eps * rng.uniform(-1.0, 1.0))

    return dot


def _imposed_class(base):
    """``base`` with recorded decisions imposed (from the instance's ``_decisions``)."""
    from . import solvers
    from .devices import read_floats

    class Imposed(base):
        def begin_fit(self, state):
            return super().begin_fit(state) if self._first_segment else state

        def end_fit(self, params, state):
            return params, state

        def stop_reason(self, state):
            return None       # the recorded end is checked from the record, not here

        def update(self, params, state, objective):
            # An L-BFGS call that starts without a gradient evaluates once first.
            # (a compiled program's copy of the solver has no decisions: it reads no host)
            if getattr(self, "_decisions", None) is not None:
                self._decisions.fresh_start = getattr(state, "grads", False) is None
            # (a copy made by dataclasses.replace, such as a compiled block's
            # program solver, has no probe: it runs no oracle)
            probe = getattr(self, "_kink_probe", None)
            if probe is not None:
                # Where each evaluation point stands to the kinks (the oracle's run).
                decisions, evaluate = self._decisions, objective

                def objective(point):
                    decisions.kinks.append((decisions.epochs_ended, probe(point)))
                    return evaluate(point)
            params, state, loss = super().update(params, state, objective)
            if getattr(state, "stop", ""):
                # The solver's own stop (L-BFGS's tests): the replay goes on, as the fit did.
                state = dataclasses.replace(state, stop="", converged=False)
            return params, state, loss

        def end_epoch(self, state, samples_seen):
            decisions = self._decisions
            context = decisions.context
            decisions.epochs_ended += 1
            ended = super().end_epoch(state, samples_seen)
            epoch = decisions.epoch_after(samples_seen)
            if epoch in context.plateaus and isinstance(ended, solvers.AutoGDState):
                ended = dataclasses.replace(ended, monotone=True, recent_losses=())
            if hasattr(ended, "learning_rate") and not isinstance(ended, solvers.AutoGDState) \
                    and epoch < context.n_iter:
                ended = dataclasses.replace(ended, learning_rate=context.rates[epoch])
            return ended

        def decide(self, learning_rate, previous_loss, previous_grad_sq, loss, ss, sy, eps,
                   reference_loss):
            decisions = self._decisions
            context = decisions.context
            own = super().decide(learning_rate, previous_loss, previous_grad_sq, loss, ss, sy,
                                 eps, reference_loss)
            e = decisions.epoch
            decisions.epoch += 1
            accepted = context.accepted[e]
            next_rate = context.rates[e + 1] if e + 1 < context.n_iter else own[1]
            decisions.log.append({"epoch": e + 1, "own": own, "imposed": (accepted, next_rate),
                                  "inputs": [previous_loss, previous_grad_sq, loss, ss, sy,
                                             reference_loss], "eps": eps,
                                  "rate": learning_rate})
            return accepted, next_rate

        def progress(self, state, loss, best_loss):
            # The measure the stopping rule reads ("auto"), logged for the rule's
            # re-run (_auto_stop_failures); the replay itself never stops on it.
            own = super().progress(state, loss, best_loss)
            if own is not None:
                self._decisions.progress.append(float(own))
            return own

        def goes_on(self, loss, kept_loss):
            decisions = self._decisions
            own = super().goes_on(loss, kept_loss)
            imposed = decisions.context.record.get("continued")
            imposed = own if imposed is None else imposed
            decisions.start = {"own": own, "imposed": imposed, "loss": float(loss),
                               "kept_loss": float(kept_loss)}
            return imposed

        def keeps_pair(self, sy, yy):
            decisions = self._decisions
            own = super().keeps_pair(sy, yy)
            kept = decisions.context.record.get("kept")
            e = decisions.epoch - 1
            imposed = own if kept is None or not 0 <= e < len(kept) else kept[e]
            if decisions.log and "keep" not in decisions.log[-1]:
                decisions.log[-1].update(keep=(own, imposed), sy=float(sy), yy=float(yy))
            return imposed

        def improves(self, loss, best_loss):
            decisions = self._decisions
            own = super().improves(loss, best_loss)
            imposed = decisions.context.improved[decisions.epoch - 1]
            decisions.log[-1].update(improves=(own, imposed), best_loss=best_loss)
            return imposed

        def _direction(self, grads, state):
            rng = getattr(self, "_perturb", None)
            if rng is None or not state.steps:
                return super()._direction(grads, state)
            # A rounding sample (_replay_all): the two-loop recursion's dot
            # products summed as another backend sums them (_perturbed_dot).
            dot = _perturbed_dot(rng)
            ops = {**solvers._LBFGS_OPS, **{name: functools.partial(
                solvers._LBFGS_OPS[name], dot=dot) for name in
                ("newer_pair", "initial_scaling", "older_pair")}}
            return solvers._two_loop(grads, state.steps, state.changes, ops)

        def _own_search(self, e, objective, params, direction, f0, slope, step, state, eps,
                        failed=False):
            """The rule's own search at iteration ``e``, within the loss evaluations
            the fit's took (recorded), so a replay never costs more than the fit; or,
            where the fit's search ``failed``, within the search's own limit (what
            the recorded count cannot be trusted to bound: a forger's failed search
            need spend none), None where the fit ran out of ``max_fun`` there."""
            context = self._decisions.context
            evaluations = context.record.get("evaluations")
            budget = self.max_line_search * 2 if evaluations is None else evaluations[e]
            if failed:
                if context.n_fun is not None and e < len(context.n_fun) \
                        and context.n_fun[e] >= self.max_fun:
                    return None
                budget = self.max_line_search * 2
            trial = dataclasses.replace(state, n_fun=max(0, self.max_fun - budget))
            found, after = super()._line_search(objective, params, direction, f0, slope, step,
                                                trial, eps)
            self._decisions.searched = after.n_fun - trial.n_fun
            return found

        def _line_search(self, objective, params, direction, f0, slope, step, state, eps):
            decisions = self._decisions
            e = decisions.epoch
            imposed = decisions.context.steps[e]
            retried = decisions.context.record.get("retried") or ()
            first_failed = e < len(retried) and retried[e] and not decisions.retrying
            if math.isnan(imposed) or first_failed:
                # The fit's search found no step here: so does the replay (the
                # iteration then stops, or, for a first search, forgets its memory
                # and takes the recorded step on the second, as the fit did). What
                # the rule's own search finds from the replay's numbers is logged,
                # and checked (_failed_search_failures).
                found = self._own_search(e, objective, params, direction, f0, slope, step,
                                         state, eps, failed=True)
                entry = {"epoch": e + 1, "attempt": sum(
                    1 for x in decisions.failed_searches if x["epoch"] == e + 1),
                    "f0": f0, "slope": slope, "own": None, "band": self.noise * eps * abs(f0)}
                if found is not None:
                    entry.update(own=found[0], f=found[3], d=read_floats(
                        solvers._lbfgs_ops(direction)["dot"](found[2], direction))[0])
                decisions.failed_searches.append(entry)
                decisions.retrying = first_failed
                return None, state
            decisions.retrying = False
            decisions.epoch += 1
            ops = solvers._lbfgs_ops(params)
            loss, grads, (f, largest, d), after = self._evaluate(
                objective, ops["axpy"](imposed, direction, params), state, direction)
            own, evaluations = imposed, None
            # The search's own acceptance: strong Wolfe, or within the loss's
            # rounding band the approximate conditions (solvers.LBFGS).
            band = self.noise * eps * abs(f0)
            curvature = abs(d) <= -self.c2 * slope
            if not ((f <= f0 + self.c1 * imposed * slope or f <= f0 + band) and curvature):
                # Not such a step here, exactly: what would the search choose?
                found = self._own_search(e, objective, params, direction, f0, slope, step,
                                         state, eps)
                own = None if found is None else found[0]
                evaluations = decisions.searched if own == imposed else None
            elif imposed == step and self.accepts_first(imposed, f, d, f0, slope, band):
                evaluations = 1     # the search's first trial, accepted at once
            elif getattr(self, "_count_searches", False):
                # A step the search reached past its first trial: how many loss
                # evaluations it took there, found by running it as the fit did.
                found = self._own_search(e, objective, params, direction, f0, slope, step,
                                         state, eps)
                own = None if found is None else found[0]
                evaluations = decisions.searched if own == imposed else None
            if evaluations is not None and e < len(retried) and retried[e]:
                evaluations = None  # (a retried search's first attempt counts too: unjudged)
            if evaluations is not None and decisions.fresh_start:
                evaluations += 1    # the fit's evaluation at its start, before the search
            decisions.fresh_start = False
            decisions.log.append({"epoch": e + 1, "own": own, "imposed": imposed, "f0": f0,
                                  "evaluations": evaluations,
                                  "slope": slope, "f": f, "d": d, "band": band,
                                  "largest": largest,
                                  "s_norm": abs(imposed) * math.sqrt(read_floats(
                                      ops["dot"](direction, direction))[0])})
            return (imposed, loss, grads, f, largest, 0.0), after

    Imposed.__name__ = Imposed.__qualname__ = f"Imposed{base.__name__}"
    return Imposed


def _imposing(solver, decisions: _Decisions, first_segment: bool, kink_probe=None,
              count_searches=False, perturb=None):
    """``solver`` with the recorded decisions imposed, and the rule's own logged.

    A solver that does not read the host is compiled (its pure ``update``,
    cached by its value): one class for all its replays, so a segment reuses
    the last one's compiled program; the decisions it imposes live on the
    host (``end_epoch``). One that reads the host decides inside ``update``,
    so each replay gets a class of its own (never a cached step of another's),
    and so does one that probes the kinks: a cached step is a closure over the
    solver it was made with, and would call that one's probe (on another fit's
    rows: the laws' long run met it) and log into that one's decisions.
    """
    base = type(solver)
    if base not in _IMPOSED:
        _IMPOSED[base] = _imposed_class(base)
    cls = _IMPOSED[base]
    if solver.host_reads or kink_probe is not None or perturb is not None:
        cls = type(cls.__name__, (cls,), {})
    fields = {f.name: getattr(solver, f.name) for f in dataclasses.fields(solver)}
    imposed = cls(**fields)
    object.__setattr__(imposed, "_decisions", decisions)
    object.__setattr__(imposed, "_first_segment", first_segment)
    object.__setattr__(imposed, "_kink_probe", kink_probe)
    object.__setattr__(imposed, "_count_searches", count_searches)
    object.__setattr__(imposed, "_perturb", None if perturb is None else
                       np.random.default_rng(perturb))
    return imposed


def _kink_margin(X, n_coefs: int):
    """``point -> margin``: how near a ReLU network at ``point`` has a unit to its kink.

    The margin is the smallest ``|z| / (|a| @ |W| + |b|)`` over the rows of ``X``
    and the hidden units, with ``z = a @ W + b`` a unit's pre-activation and
    ``a`` its layer's input: ``z`` relative to the sum of the magnitudes it is
    made of, which is what bounds its rounding (a dot product of ``n`` terms in
    a dtype of unit roundoff ``u`` is off by at most about ``n u`` times that
    sum). A unit whose margin is within its rounding may sit on either side
    of the kink in another computation of the same numbers.
    """
    X = np.asarray(X, dtype=np.float64)

    def margin(point) -> float:
        a, smallest = X, math.inf
        for W, b in zip(point[:n_coefs - 1], point[n_coefs:-1]):
            W, b = np.asarray(W, dtype=np.float64), np.asarray(b, dtype=np.float64)
            z = a @ W + b
            size = np.abs(a) @ np.abs(W) + np.abs(b)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(size > 0, np.abs(z) / size, math.inf)
            smallest = min(smallest, float(np.min(ratio, initial=math.inf)))
            a = np.maximum(z, 0.0)
        return smallest

    return margin


@dataclass
class _Context:
    """What every replay of a file shares: the network, the data, the record's decisions."""

    net: Any
    record: dict
    X: Any
    y: Any
    sample_weight: Any
    eval_set: Any
    rates: list
    accepted: list | None
    improved: list | None
    steps: list | None
    plateaus: set
    n_iter: int
    losses: list
    validation_losses: list | None
    validation_scores: list | None
    sources: dict = field(default_factory=dict)
    shared_runs: dict = field(default_factory=dict)
    auto: bool = False
    split_state: dict | None = None     # early stopping's split generator, as the file keeps it
    solver: Any = None                  # the fit's solver, as the file's parameters make it
    max_iter: int = 0                   # the call's max_iter
    trained_eps: float = 0.0            # the unit roundoff of the dtype the fit ran in
    n_fun: list | None = None           # L-BFGS: loss evaluations after each iteration
    blas_threads: int | None = None     # a NumPy fit's BLAS threads (its computation key)


def _sources(ctx, device, dtype):
    """The training and validation sources, and the generator after any split (cached)."""
    from .sources import ArraySource

    key = (device, dtype)
    if key not in ctx.sources:
        source = ArraySource.from_arrays(ctx.X, ctx.y, device, dtype, ctx.sample_weight)
        first = ctx.record["checkpoints"][0]
        rng = generator_from_state(first["rng"]["numpy_generator"])
        validation = None
        net = ctx.net
        if ctx.eval_set is not None:
            validation = ArraySource.from_arrays(ctx.eval_set[0], ctx.eval_set[1], device,
                                                 dtype)
        elif net.early_stopping and not ctx.record["incremental"]:
            # The split is drawn from the generator of checkpoint 0, as the fit drew it;
            # a resumed run draws its parent's split again, from the generator state
            # the file keeps (checked against the parent's), leaving the batch order's.
            split = ctx.split_state
            if split is not None and \
                    _plain_state(split) != _plain_state(first["rng"]["numpy_generator"]):
                source, validation = source.split(net.validation_fraction,
                                                  generator_from_state(split))
            else:
                source, validation = source.split(net.validation_fraction, rng)
        ctx.sources[key] = (source, validation, rng.bit_generator.state)
    source, validation, state = ctx.sources[key]
    return source, validation, generator_from_state(state)


@contextlib.contextmanager
def _replay_threads(device, n_rows: int, use_fastpath: bool, blas_threads=None):
    """Hold a replay to the threads NumPy's fit gives ``n_rows`` rows, and restore them.

    The NumPy fast path works ``n_rows`` rows on one thread per 4096 rows per
    core, each with a one-thread BLAS (:mod:`gpumlp.fastpath.numpy`); the fit
    a replay is measured against ran so. PyTorch's intra-op pool, as it
    comes, takes every core for each small product: on a loaded 2-core VM its
    threads and OpenBLAS's (NumPy's replays, run between its segments) waited
    for each other, and an Adam replay of 2000 rows took 50 to 75 times the
    fit (3 to 5 times held to one). So here PyTorch (on the CPU) and OpenBLAS
    (for NumPy's generic kernels, and whatever NumPy work another backend's
    replay does) get that many threads, and their own counts come back on
    leaving, whatever happens inside. The NumPy fast path sets its own, as
    in the fit (a replay that must give the fit's numbers bit for bit runs
    exactly as the fit ran). NumPy's replays of a NumPy fit whose record names
    its BLAS threads (``blas_threads``) take those, fast path or not: a
    product's bits depend on how many threads split it. JAX's CPU threads are
    fixed when it starts (``XLA_FLAGS``): left alone.
    """
    from .fastpath.numpy import _blas, _workers

    threads = _workers(n_rows)
    with contextlib.ExitStack() as stack:
        torch_cpu = device.backend == "torch" and device.native == "cpu"
        if torch_cpu:
            import torch

            before = torch.get_num_threads()
            if before != threads:
                torch.set_num_threads(threads)
                stack.callback(torch.set_num_threads, before)
        if device.is_numpy and blas_threads is not None:
            stack.enter_context(_blas().limit(limits=blas_threads, user_api="blas"))
        elif not (device.is_numpy and use_fastpath):
            stack.enter_context(_blas().limit(limits=threads, user_api="blas"))
        yield


def _start_arrays(checkpoint, dtype):
    """A checkpoint's weights, best weights and state arrays in ``dtype``."""
    def cast(a):
        return np.asarray(a, dtype=np.float64).astype(dtype)

    params = [cast(a) for a in [*checkpoint["coefs"], *checkpoint["intercepts"]]]
    state_arrays = {name: cast(a) for name, a in checkpoint["state_arrays"].items()}
    best = None if checkpoint["best"] is None else [np.asarray(a).astype(dtype)
                                                   for a in checkpoint["best"]]
    return params, state_arrays, best


def _reordered(source, how: str, seed: int = 0):
    """``source`` whose every batch holds the same rows in another order: ``"reversed"``,
    ``"rolled"`` by half the batch, or ``"permuted"`` at random (``seed``).

    The batches and the generator's draws are the fit's; only the order in
    which each batch's rows are summed changes, and with it every sum's
    rounding: another sample of the rounding a backend that sums otherwise
    makes (see :func:`_replay_all`).
    """
    from .sources import ArraySource

    shuffle = np.random.default_rng(seed)

    class Reordered(ArraySource):
        def batches(self, rng, batch_size, shuffle_rows):
            batches = super().batches(rng, batch_size, shuffle_rows)
            order = batches[0][2]
            old = np.arange(self.n_samples) if order is None else to_numpy(order)
            new = old.copy()
            for start, stop, _ in batches:
                block = old[start:stop]
                new[start:stop] = (block[::-1] if how == "reversed" else
                                   np.roll(block, (stop - start) // 2) if how == "rolled"
                                   else shuffle.permutation(block))
            order = self.device.asarray(new)
            return [(start, stop, order) for start, stop, _ in batches]

    return Reordered(source.X, source.y, source.device, source.sample_weight)


#: The hash that makes a perturbed activation a function of its input's bits
#: (Knuth's multiplicative constant, 2**32 over the golden ratio).
_HASH = np.uint32(2654435761)


def _fraction(x, seed: int):
    """A pseudo-random fraction in ``[-1, 1)`` for each entry of ``x``, in its dtype: a
    function of the entry's bits and ``seed`` alone (the same value anywhere in any
    array gets the same fraction), as an implementation's rounding error is."""
    salt = np.uint32((seed * 0x9E3779B9 + 0x7F4A7C15) & 0xFFFFFFFF)
    x = np.ascontiguousarray(x)
    bits = x.view(np.uint32 if x.dtype == np.float32 else np.uint64)
    with np.errstate(over="ignore"):
        mixed = ((bits.astype(np.uint32) ^ salt) * _HASH) >> np.uint32(8)
    return mixed.astype(x.dtype) * x.dtype.type(2.0 ** -23) - x.dtype.type(1.0)


def _perturbed(activation, seed: int):
    """``activation`` computed as another backend's implementation might: the ``tanh``
    it is made of moved by a pseudo-random fraction, within one eps, of itself.

    Backends evaluate ``tanh`` with their own approximations (here: NumPy within
    1.4 ulps of the true value, PyTorch 0.5, JAX 4), so the same
    pre-activation gives outputs an ulp or so apart from one backend to the
    next; a replay's every step inherits that, and a chaotic segment
    magnifies it. Row reordering alone does not sample it: on float32 L-BFGS
    fits of tanh networks, PyTorch and JAX replays landed 2 to 3 times
    farther from the record than 30 NumPy runs with their rows reordered,
    and among runs perturbed so. The fraction is a function of ``z``'s bits
    and ``seed`` (:func:`_fraction`), as an implementation's error is a
    function of its input. An activation ``s tanh(c z) + shift`` (its
    ``tanh_form``) moves by ``(a - shift)`` times the fraction: the sigmoid's
    ``tanh(z/2)/2 + 1/2`` near 0 carries its ``tanh``'s absolute error.
    Activations every backend computes exactly (ReLU, the identity) are
    returned unchanged.
    """
    if activation.tanh_form is None:
        return activation
    forward, shift = activation.forward, activation.tanh_form[2]

    def perturbed_forward(z):
        a = forward(z)
        return a + (a - a.dtype.type(shift)) * (_fraction(z, seed) * np.finfo(a.dtype).eps)

    return dataclasses.replace(activation, forward=perturbed_forward)


def _perturbed_affine(seed: int):
    """A layer's ``a @ W + b`` as another backend's products might round it:
    ``a @ W + b`` moved by a pseudo-random fraction of ``eps (|a| @ |W| + |b|)``.

    Each backend sums a layer's fan-in in its own order, with or without fused
    multiply-adds (its own matrix kernels), so the same weights give each row's
    pre-activations that differ by a few units of the sum's rounding, ``eps``
    times the sum of the magnitudes it adds. Unlike reordered rows, which move
    only the sums over rows (the gradients), this moves every row's output, and
    so the residual, the loss and every gradient alike. Sampled here, it covers
    what the two others did not: on a float32 sigmoid L-BFGS fit (40 rows, 3
    features, width 6, seed 4), PyTorch's and JAX's replays of epochs 177-192
    landed 0.097 and 0.091 from the record, where 24 NumPy runs with their rows
    reordered and the activation perturbed landed within 0.009 (and ``z``
    moved by one eps of its own magnitude, within 0.008); with this, 8 runs
    spread from 0.0005 to 0.10 (2-core x86 VM, 2026-12-06). The fraction is a
    function of ``z``'s bits and ``seed`` (:func:`_fraction`), with a salt
    per layer (its ``W``'s shape).

    Used for smooth activations (those with a ``tanh_form``) only: on ReLU
    networks it moved units across their kinks, and 3 of 10 long float32
    L-BFGS samples restarted their memory there, which no replay did; a
    replay's kink crossings are judged apart (:func:`_kink_crossing`), and
    reordered rows alone covered PyTorch's and JAX's ReLU replays (10 of 10).
    """
    def affine(a, W, b):
        z = a @ W + b
        scale = np.abs(a) @ np.abs(W) + np.abs(b)
        salt = seed * 7919 + W.shape[0] * 31 + W.shape[1]
        return z + scale * (_fraction(z, salt) * np.finfo(z.dtype).eps)

    return affine


def _run_segment(ctx, j, device, dtype, use_fastpath, probe_kinks=False, sample=None,
                 count_searches=False):
    """Replay segment ``j`` (checkpoint ``j`` to ``j + 1``): its end and every epoch's figures.

    With ``probe_kinks`` (a ReLU network on NumPy, each step on all rows), each
    evaluation point's margin to the kinks is logged (:func:`_kink_margin`);
    a ``sample`` ``(how, seed)`` is a rounding sample (:func:`_replay_all`):
    each batch's rows summed in that order (:func:`_reordered`), the activation
    perturbed within an eps (:func:`_perturbed`) and each layer's products
    within their rounding (:func:`_perturbed_affine`). With ``count_searches``, each
    L-BFGS iteration's loss evaluations are found by running its search as the fit
    did (for the replay that computes as the fit did: :func:`_evaluation_failures`).
    """
    from ._checks import check_params
    from .losses import get_loss
    from .solvers import state_from_arrays
    from .sources import Network
    from .training import Trainer

    net, record = ctx.net, ctx.record
    c0, c1 = record["checkpoints"][j], record["checkpoints"][j + 1]
    _, activation = check_params(net)
    n_outputs = np.asarray(c0["coefs"][-1]).shape[1]
    affine = None
    if sample is not None:
        if activation.tanh_form is not None:
            affine = _perturbed_affine(sample[1])
        activation = _perturbed(activation, sample[1])
    network = Network(len(c0["coefs"]), activation, use_fastpath, get_loss(net.loss), False,
                      affine)
    with device.context(), _replay_threads(device, ctx.X.shape[0], use_fastpath,
                                           ctx.blas_threads):
        source, validation, rng = _sources(ctx, device, dtype)
        if sample is not None:
            source = _reordered(source, *sample)
        if j > 0:
            rng = generator_from_state(c0["rng"]["numpy_generator"])
        decisions = _Decisions(ctx, c0["epoch"],
                               record["checkpoints"][0]["history"]["samples_seen"],
                               source.n_samples)
        batch_size = net._batch_size(source.n_samples)
        steps_per_epoch = math.ceil(source.n_samples / batch_size)
        probe = None
        if probe_kinks and steps_per_epoch == 1 and device.is_numpy:
            probe = _kink_margin(source.X, len(c0["coefs"]))
        solver = _imposing(net._make_solver(n_outputs), decisions, j == 0, probe,
                           count_searches, None if sample is None else sample[1])
        params, state_arrays, best = _start_arrays(c0, dtype)
        params = [device.asarray(p) for p in params]
        state = state_from_arrays(c0["state"], {k: device.asarray(v)
                                                for k, v in state_arrays.items()})
        from .solvers import AutoGDState, LBFGSState

        if isinstance(state, LBFGSState) and isinstance(state.loss, float):
            # NumPy hands a 0-d result back as a scalar, which the record keeps as a number.
            state = dataclasses.replace(state, loss=device.asarray(
                state.loss, dtype=getattr(device.xp, dtype)))
        if j == 0 and isinstance(state, AutoGDState) and math.isnan(state.loss) \
                and ctx.n_iter > 0:
            # The first rate, decided by the power iteration: imposed (and checked apart).
            state = dataclasses.replace(state, next_rate=ctx.rates[0])
        trainer = Trainer(network, solver, float(net.alpha), params, state)
        history = c0["history"]
        trainer.best_loss = math.inf if history["best_loss"] is None else history["best_loss"]
        trainer.best_validation_score = (-math.inf if history["best_validation_score"] is None
                                         else history["best_validation_score"])
        trainer.no_improvement_count = history["no_improvement_count"]
        trainer.samples_seen = history["samples_seen"]
        if best is not None:
            trainer.best_params = [device.asarray(p) for p in best]
        from .solvers import plain_numbers, state_to_arrays

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(source, rng=rng, batch_size=batch_size, shuffle=net.shuffle,
                        max_iter=c1["epoch"] - c0["epoch"], tol=-math.inf,
                        n_iter_no_change=net.n_iter_no_change, validation=validation,
                        stop_on_validation=net.early_stopping and not record["incremental"],
                        check_convergence=False)
        end_params = [to_numpy(p) for p in trainer.params]
        # The fresh state is only a template of types: made of host copies, it
        # costs no device work (on JAX, a dispatch per array).
        end_state = plain_numbers(trainer.state, solver.init_state(end_params))
        arrays, description = state_to_arrays(end_state)
        return {
            "params": [p.astype(np.float64) for p in end_params],
            "state_arrays": {k: to_numpy(v).astype(np.float64) for k, v in arrays.items()},
            "state": description,
            "best": None if trainer.best_params is None else
            [to_numpy(p).astype(np.float64) for p in trainer.best_params],
            # (the no-improvement count is the stopping rule's, re-run apart: _rule_checks)
            "history": {"samples_seen": trainer.samples_seen},
            "losses": list(trainer.loss_curve),
            "validation_losses": list(trainer.validation_losses),
            "validation_scores": list(trainer.validation_scores),
            "log": decisions.log,
            "progress": decisions.progress,
            "start_choice": decisions.start,
            "failed_searches": decisions.failed_searches,
            "kinks": decisions.kinks,
            "steps_per_epoch": steps_per_epoch,
            # (the generator's end: the next segment starts from the checkpoint's)
            "rng": rng.bit_generator.state,
            "start_params": [np.asarray(a, dtype=np.float64)
                             for a in [*c0["coefs"], *c0["intercepts"]]],
        }


def _state_floats(description, prefix="state"):
    """``{path: value}`` of the floats in a state description (losses, rates, ...)."""
    out = {}

    def walk(node, path):
        kind = node.get("type")
        if kind == "float":
            out[path] = float(node["value"])
        elif kind in ("list", "tuple"):
            for i, item in enumerate(node["items"]):
                walk(item, f"{path}.{i}")
        elif kind == "dataclass":
            for name, item in node["fields"].items():
                walk(item, f"{path}.{name}")

    walk(description, prefix)
    return out


#: State floats a replay does not compare: imposed (rates), or counts of the replay's own.
_NOT_COMPARED = ("learning_rate", "next_rate", "step")


def _quantities(run, stored_end, ctx, j):
    """``{name: (replayed, stored, start or None, step index)}`` for one segment's comparison."""
    record = ctx.record
    c0 = record["checkpoints"][j]
    n_coefs = len(c0["coefs"])
    names = [f"W{i + 1}" for i in range(n_coefs)] + [f"b{i + 1}" for i in range(n_coefs)]
    stored = [*stored_end["coefs"], *stored_end["intercepts"]]
    k = (stored_end["epoch"] - c0["epoch"]) * run["steps_per_epoch"]
    out = {}
    for name, got, want, start in zip(names, run["params"], stored, run["start_params"]):
        out[name] = (got, np.asarray(want, dtype=np.float64), start, k)
    got_floats, want_floats = _state_floats(run["state"]), _state_floats(stored_end["state"])
    # A 0-d array on one backend is a number on another (NumPy's scalars): one name.
    for arrays, floats in ((run["state_arrays"], got_floats),
                           (stored_end["state_arrays"], want_floats)):
        for name, a in arrays.items():
            if np.ndim(a) == 0:
                floats[f"state.{name}"] = float(np.asarray(a))
    for name, got in run["state_arrays"].items():
        if np.ndim(got) == 0:
            continue
        want = stored_end["state_arrays"].get(name)
        if want is None or np.shape(want) != np.shape(got):
            out[f"state {name}"] = (got, None, None, k)
            continue
        start = c0["state_arrays"].get(name)
        start = None if start is None or np.shape(start) != np.shape(got) else \
            np.asarray(start, dtype=np.float64)
        out[f"state {name}"] = (got, np.asarray(want, dtype=np.float64), start, k)
    if run["best"] is not None or stored_end["best"] is not None:
        for i, (got, want) in enumerate(itertools.zip_longest(run["best"] or [],
                                                              stored_end["best"] or [])):
            out[f"best {i}"] = (got, None if want is None else np.asarray(want, np.float64),
                                None, k)
    for path, got in got_floats.items():
        if path.rsplit(".", 1)[-1] in _NOT_COMPARED:
            continue
        out[path] = (np.float64(got), None if path not in want_floats
                     else np.float64(want_floats[path]), None, k)
    # The samples seen at the segment's end (the last checkpoint's are also checked
    # bit for bit with the training state).
    for name, got in run["history"].items():
        if stored_end["history"].get(name) is not None:     # (kept by every record here)
            out[f"history {name}"] = (np.float64(got),
                                      np.float64(stored_end["history"][name]), None, k)
    first = c0["epoch"]
    for i, loss in enumerate(run["losses"]):
        e = first + i
        out[f"loss epoch {e + 1}"] = (np.float64(loss), np.float64(ctx.losses[e]), None,
                                      i * run["steps_per_epoch"])
        if ctx.validation_losses is not None:
            out[f"validation loss epoch {e + 1}"] = (
                np.float64(run["validation_losses"][i]),
                np.float64(ctx.validation_losses[e]), None, (i + 1) * run["steps_per_epoch"])
        if ctx.validation_scores is not None:
            out[f"validation score epoch {e + 1}"] = (
                np.float64(run["validation_scores"][i]),
                np.float64(ctx.validation_scores[e]), None, (i + 1) * run["steps_per_epoch"])
    return out


def _noise(exact, rounded):
    """Per quantity, how far float32 rounding moves it in this segment: ``|q32 - q64|``."""
    out = {}
    for name, (got, _, _, _) in exact.items():
        other = rounded.get(name)
        if other is None or got is None or other[0] is None or \
                np.shape(other[0]) != np.shape(got):
            out[name] = math.inf
            continue
        out[name] = _norm(np.asarray(other[0], np.float64) - np.asarray(got, np.float64))
    return out


def _scale(dtype):
    """Rounding noise in ``dtype`` over float32's (noise scales with the unit roundoff)."""
    return float(np.finfo(dtype).eps / np.finfo(np.float32).eps)


def _looser(dtype_a, dtype_b):
    return "float32" if "float32" in (dtype_a, dtype_b) else "float64"


def _state_scales(record) -> tuple[float, dict]:
    """The largest norm of any solver-state array, and of each state number, over the
    checkpoints: the scale of the terms a gradient-like quantity sums (see :func:`_compare`)."""
    arrays, floats = 0.0, {}
    for c in record["checkpoints"]:
        for a in c["state_arrays"].values():
            arrays = max(arrays, _norm(a))
        for path, value in _state_floats(c["state"]).items():
            floats[path] = max(floats.get(path, 0.0), abs(value)) if math.isfinite(value) \
                else floats.get(path, 0.0)
    return arrays, floats


def _compare(quantities, noise, dtype, scales):
    """``(worst ratio, where, failures)``: each quantity's difference over its tolerance.

    ``dtype`` is the looser of the training and replay dtypes; the tolerance
    is :data:`MARGIN` times the segment's measured float32 noise scaled to
    ``dtype``, plus one rounding per step (a floor for a quantity whose
    measured noise happened to cancel). For the solver state's gradients (and
    the numbers made from them) the rounding is that of the terms they sum,
    which do not shrink as the sum cancels near a minimum: their floor is
    one rounding of the largest such quantity the fit held (``scales``, from
    :func:`_state_scales`).
    """
    eps, scale = float(np.finfo(dtype).eps), _scale(dtype)
    array_scale, float_scales = scales
    worst, where, failures = 0.0, "", []
    for name, (got, want, _, k) in quantities.items():
        if want is None:
            failures.append(f"{name}: the replay has it, the record does not")
            continue
        if got is None:
            failures.append(f"{name}: the record has it, the replay does not")
            continue
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if got.shape != want.shape:
            failures.append(f"{name}: shape {got.shape}, the record's {want.shape}")
            continue
        # Beyond the looser dtype's range a value is that dtype's overflow: an
        # honest fit's |g|**2 may be +inf in float32, and so is its replay's.
        # Overflowed (or NaN) entries agree only where both are the same.
        limit = float(np.finfo(dtype).max)
        got, want = (np.where(np.abs(a) > limit, np.copysign(np.inf, a), a)
                     for a in (got, want))
        odd = ~(np.isfinite(got) & np.isfinite(want))
        if np.any(odd):
            same = (got[odd] == want[odd]) | (np.isnan(got[odd]) & np.isnan(want[odd]))
            if not np.all(same):
                failures.append(f"{name}: not finite in the replay" if np.all(np.isfinite(
                    want)) else f"{name}: not finite in the record, the replay differs")
                continue
            got, want = np.where(odd, 0.0, got), np.where(odd, 0.0, want)
        diff = _norm(got - want)
        size = _norm(want)
        if name.startswith("validation score"):
            size = max(size, 1.0)          # R² = 1 - SSE / SST: its rounding is SSE / SST's
        elif name.startswith("state ") or name.startswith("best "):
            size = max(size, array_scale)
        elif name.startswith("state."):
            size = max(size, float_scales.get(name, 0.0))
            if name.endswith("grad_sq"):    # |g|**2: twice |g| times g's rounding
                size = max(size, 2.0 * math.sqrt(abs(float(want))) * array_scale)
        tol = MARGIN * (scale * noise.get(name, math.inf) + (k + 1) * eps * size)
        ratio = 0.0 if diff == 0 else (diff / tol if tol > 0 else math.inf)
        if ratio > worst:
            worst, where = ratio, name
        if not ratio <= 1.0:
            failures.append(f"{name}: differs by {diff:.3g}, tolerance {tol:.3g}")
    return worst, where, failures


def _reachable(entry, taus, imposed, last):
    """None when the rule takes the imposed decision for some numbers within ``taus``
    (relative) of the replay's; else what it never does, as a format string.

    The accept test is monotone in each number it reads (the losses, ``|g|**2``,
    the reference), so the box's corners decide it. The next rate reads
    ``s.s`` and ``s.y`` when the step is taken and the losses and ``|g|**2``
    when it is refused (the shrunk rate is not monotone where its parabola has
    no minimum): a grid over those numbers' box, which stops as soon as the
    imposed rate is bracketed.
    """
    from . import step_size

    inputs, rate, eps = entry["inputs"], entry["rate"], entry["eps"]

    def box(indices, levels):
        axes = [[inputs[i] * (1.0 + s * taus[i]) for s in (levels if taus[i] else (0.0,))]
                if inputs[i] is not None else [None] for i in indices]
        return itertools.product(*axes)

    corners = (-1.0, 1.0)
    decides = {step_size.next_learning_rate(rate, p, g, f, inputs[3], inputs[4], eps, r)[0]
               for p, g, f, r in box((0, 1, 2, 5), corners)}
    if imposed[0] not in decides:
        return "the step was {taken}, where the rule {rule} it beyond rounding"
    if last:
        return None
    fine = (-1.0, -0.3, -0.1, 0.0, 0.1, 0.3, 1.0)
    low, high = math.inf, -math.inf
    if imposed[0]:
        for ss, sy in box((3, 4), fine):
            bb = ss / sy if sy > 0 else math.nan
            value = rate if not bb > 0 else step_size._four_digits(min(bb, step_size.MAX_RATE))
            low, high = min(low, value), max(high, value)
            if low <= imposed[1] <= high:
                return None
    else:
        for p, g, f in box((0, 1, 2), fine):
            value = step_size.shrunk_learning_rate(rate, p, g, f)
            low, high = min(low, value), max(high, value)
            if low <= imposed[1] <= high:
                return None
    return (f"the next rate is {{imposed:g}}, where the rule gives {{own:g}} (within "
            f"rounding: {low:g} to {high:g})")


def _decision_failures(run, exact, rounded, dtype, ctx, grads=0.0):
    """The decisions of one segment the rule would not take from the replay's numbers.

    Each number a decision reads is known to within :data:`MARGIN` times how
    far float32 rounding moved it in this segment (``exact`` and ``rounded``:
    the oracle's logs in float64 and float32), scaled to ``dtype``, plus one
    rounding per step; the recorded decision must be one the rule takes for
    some values within that.
    """

    eps, scale = float(np.finfo(dtype).eps), _scale(dtype)
    failures = []
    by_epoch = [{e["epoch"]: e for e in log["log"]} for log in (exact, *rounded)]

    def spread(n, entry, key):
        """How far the oracle's float32 runs moved the number (None: unknown)."""
        found = [by.get(entry["epoch"]) for by in by_epoch]
        if any(p is None or key not in p for p in found):
            return None
        values = [p[key] if n is None else p[key][n] for p in found]
        if any(v is None for v in values):
            return None
        # The range: two float32 runs apart count, as each one from float64.
        return max(values) - min(values)

    def uncertainty(n, entry, key, i, floor=0.0):
        """The number's absolute uncertainty (inf when the oracle has no such number)."""
        x = entry[key] if n is None else entry[key][n]
        moved = spread(n, entry, key)
        if moved is None or not math.isfinite(moved):
            return math.inf
        return MARGIN * (scale * moved + (i + 1) * eps * max(abs(x), floor))

    def tau(n, entry, key, i):
        x = entry[key] if n is None else entry[key][n]
        if x is None:
            return 0.0
        if not x or spread(n, entry, key) is None:
            return 0.99
        size = abs(x)
        if key == "inputs" and n == 4:
            # s.y = -rate g.(g_new - g) cancels where the gradient changes little;
            # g_new is rounded as the terms it sums are (their scale does not
            # shrink near a minimum: the largest gradient the fit held, ``grads``).
            size = max(size, abs(entry["rate"]) * math.sqrt(abs(entry["inputs"][1])) * grads)
        # At most 0.99: a number known to no better than that is undetermined
        # at this precision, and any decision from it is within rounding.
        return min(0.99, uncertainty(n, entry, key, i, size) / abs(x))

    for i, entry in enumerate(run["log"]):
        if "improves" in entry and entry["improves"][0] != entry["improves"][1]:
            # Whether the new point is the best: its loss against the best, within rounding.
            t = tau(2, entry, "inputs", i)
            loss, best = entry["inputs"][2], entry["best_loss"]
            if not abs(loss - best) <= t * abs(loss):
                failures.append(f"epoch {entry['epoch']}: the point "
                                f"{'became' if entry['improves'][1] else 'did not become'} "
                                f"the best, where its loss {loss:g} against the best "
                                f"{best:g} says otherwise")
        if "inputs" in entry:            # the "auto" step: accept, and the next rate
            own, imposed = entry["own"], entry["imposed"]
            last = entry["epoch"] == ctx.n_iter
            if own[0] == imposed[0] and (last or own[1] == imposed[1]):
                continue
            taus = [tau(n, entry, "inputs", i) for n in range(len(entry["inputs"]))]
            verdict = _reachable(entry, taus, imposed, last)
            if verdict is not None:
                failures.append(f"epoch {entry['epoch']}: " + verdict.format(
                    taken="accepted" if imposed[0] else "refused",
                    rule="accepts" if own[0] else "refuses", imposed=imposed[1], own=own[1]))
        else:                             # L-BFGS: the step, the curvature pair, the stop
            failures += _lbfgs_failures(entry, i, tau, uncertainty, ctx, grads)
    return failures


def _lbfgs_failures(entry, i, tau, uncertainty, ctx, grads) -> list:
    """One L-BFGS iteration's decisions against the rule, within rounding: the step
    length (the search's, or a strong-Wolfe one), the keep-or-skip of the curvature
    pair, and the stopping tests (``gtol``, ``ftol``, ``max_fun``): it must go on
    before the last recorded iteration, and stop at the last one unless that
    reached ``max_iter``."""
    failures, e = [], entry["epoch"]
    own, imposed = entry["own"], entry["imposed"]
    f0, slope, f, d = entry["f0"], entry["slope"], entry["f"], entry["d"]
    solver = ctx.solver
    t = tau(None, entry, "own", i)
    if not (own is not None and abs(own - imposed) <= t * abs(imposed)):
        # The recorded step must satisfy the strong Wolfe conditions, within
        # rounding, at the replay's numbers (the search's own step, when it is
        # not one, is compared above: a search that ran out of evaluations).
        tf, td = tau(None, entry, "f", i), tau(None, entry, "d", i)
        sufficient = f <= f0 + max(solver.c1 * imposed * slope, entry["band"]) \
            + tf * max(abs(f0), abs(f))
        curvature = abs(d) <= -solver.c2 * slope + td * abs(d) + tau(None, entry, "slope", i) \
            * abs(slope)
        if not (imposed > 0 and sufficient and curvature):
            failures.append(f"epoch {e}: the step length {imposed:g} is not the line "
                            f"search's ({own}) nor a strong-Wolfe step")
    if "keep" in entry and entry["keep"][0] != entry["keep"][1]:
        # keep while s.y > eps64 y.y: s.y sums terms of the size |s| times the
        # largest gradient the fit held (y = g_new - g cancels near a minimum).
        sy, yy, kept = entry["sy"], entry["yy"], entry["keep"][1]
        dsy = uncertainty(None, entry, "sy", i, entry["s_norm"] * grads)
        threshold = 2.220446049250313e-16 * yy
        if not (sy + dsy > threshold if kept else sy - dsy <= threshold):
            failures.append(f"epoch {e}: the curvature pair was {'kept' if kept else 'skipped'}"
                            f", where the rule {'skips' if kept else 'keeps'} it beyond rounding"
                            f" (s.y {sy:.3g}, y.y {yy:.3g})")
    # The stopping tests, at the numbers the replay computed.
    largest = entry["largest"]
    dl = uncertainty(None, entry, "largest", i)
    df0, df = uncertainty(None, entry, "f0", i), uncertainty(None, entry, "f", i)
    # The fit added its rounding band (its dtype's) to the reduction when its
    # search took the step on the slope alone: its sufficient decrease failed.
    margin = f0 + solver.c1 * imposed * slope - f
    known = df0 + df + abs(solver.c1 * imposed * slope) * tau(None, entry, "slope", i)
    bands = ([0.0] if margin + known >= 0 else []) + (
        [solver.noise * ctx.trained_eps * abs(f0)] if margin - known < 0 else [])
    scale = max(abs(f0), abs(f), 1.0)
    reduction_high = (f0 - f + df0 + df + max(bands)) / scale
    reduction_low = (f0 - f - df0 - df + min(bands)) / scale
    stops = largest - dl <= solver.gtol or reduction_low <= solver.ftol
    goes_on = largest + dl > solver.gtol and reduction_high > solver.ftol
    n_fun = ctx.n_fun[e - 1] if ctx.n_fun is not None and e - 1 < len(ctx.n_fun) else None
    if n_fun is not None and n_fun >= solver.max_fun:
        stops, goes_on = True, False
    numbers = (f"largest gradient entry {largest:.3g} against gtol {solver.gtol:.3g}, "
               f"relative reduction {(f0 - f) / scale:.3g} against ftol {solver.ftol:.3g}")
    if e < ctx.n_iter and not goes_on:
        failures.append(f"epoch {e}: L-BFGS went on where its stopping tests stop it beyond "
                        f"rounding ({numbers})")
    if e == ctx.n_iter and ctx.n_iter < ctx.max_iter and not stops:
        failures.append(f"epoch {e}: L-BFGS stopped where none of its stopping tests holds "
                        f"within rounding ({numbers})")
    return failures


def _evaluation_failures(run, ctx) -> list:
    """The L-BFGS iterations whose recorded loss evaluations are not the search's.

    For the replay that computes as the fit did (bit for bit): its search, run
    as the fit's was, took that many evaluations (its first trial accepted:
    one; the evaluation at a call's start counted too). A count the record
    inflates could fake a ``max_fun`` stop. Retried searches are not judged.
    """
    recorded = ctx.record.get("evaluations")
    if recorded is None:
        return []
    failures = []
    for entry in run["log"]:
        found, e = entry.get("evaluations"), entry["epoch"]
        if found is not None and e - 1 < len(recorded) and recorded[e - 1] != found:
            failures.append(f"epoch {e}: the line search took {found} loss evaluation(s) "
                            f"computed as the fit computed, the record says "
                            f"{recorded[e - 1]}")
    return failures


def _failed_search_failures(run, exact, rounded, dtype, ctx) -> list:
    """The L-BFGS line searches the file says found no step, against the rule's own.

    Each replay runs the search where the fit's failed (within the fit's
    evaluations of that iteration). A search that finds no step agrees. One
    that finds a step refutes the record only when every oracle run (NumPy in
    float64 and float32) found one too, and the step meets the strong Wolfe
    conditions, or the approximate ones within the loss's rounding band,
    beyond rounding: each number read (``f0``, ``f``, the slopes) moved by
    :data:`MARGIN` times what float32 rounding moved it here, plus one
    rounding per step. Where the oracle's searches disagree, or a number sits
    within rounding of its threshold, the failure is within rounding.
    """
    eps, scale = float(np.finfo(dtype).eps), _scale(dtype)
    solver, failures = ctx.solver, []
    oracle = [{(x["epoch"], x["attempt"]): x for x in r["failed_searches"]}
              for r in (exact, *rounded)]
    for entry in run["failed_searches"]:
        if entry["own"] is None:
            continue
        key = (entry["epoch"], entry["attempt"])
        known = [o.get(key) for o in oracle]
        if any(k is None or k["own"] is None for k in known):
            continue
        i = sum(1 for x in run["log"] if x["epoch"] < entry["epoch"])

        def within(name):
            x = entry[name]
            moved = max(abs(k[name] - known[0][name]) for k in known[1:]) if len(known) > 1 \
                else math.inf
            if not math.isfinite(moved) or not math.isfinite(x):
                return math.inf
            return MARGIN * (scale * moved + (i + 1) * eps * abs(x))

        a, f0, f, d, slope = (entry[k] for k in ("own", "f0", "f", "d", "slope"))
        low_f = f + within("f") + within("f0")
        steep = abs(d) + within("d") + solver.c2 * within("slope")
        curvature = steep <= -solver.c2 * slope
        strong = low_f <= f0 + solver.c1 * a * slope - solver.c1 * a * within("slope")
        approximate = (low_f <= f0 + entry["band"]
                       and d + within("d") + within("slope") <= (2.0 * solver.c1 - 1.0) * slope)
        if curvature and (strong or approximate):
            failures.append(f"epoch {entry['epoch']}: the line search found no step, where the "
                            f"rule's own finds the step {a:.6g} (loss {f:.6g} from {f0:.6g}, "
                            f"slope {d:.3g} from {slope:.3g}) beyond rounding")
    return failures


def _call_failures(runs, exact, rounded, dtype, ctx, trained_here: bool,
                   unjudged=frozenset()) -> list:
    """The decisions of a whole call a replay checks once all its segments ran: the
    ``"auto"`` stopping rule over the replay's progress measures, and a continued
    ``"auto"`` call's choice to go on with the kept search or start afresh. The
    epochs in ``unjudged`` (0-based; past a ReLU kink the replay may cross) have
    progress measures that may count either way."""
    eps, scale = float(np.finfo(dtype).eps), _scale(dtype)
    failures = []

    def uncertainty(values, oracle, i):
        if i in unjudged:
            return math.inf
        moved = [abs(o[i] - oracle[0][i]) for o in oracle[1:]
                 if len(o) > i and len(oracle[0]) > i]
        x = values[i]
        if not math.isfinite(x):
            return 0.0 if all(o[i] == x for o in oracle if len(o) > i) else math.inf
        if not moved or not all(math.isfinite(m) for m in moved):
            return math.inf
        return MARGIN * (scale * max(moved) + (i + 1) * eps * abs(x))

    if ctx.auto and ctx.record["accepted"] is not None and ctx.n_iter:
        progress = [p for run in runs for p in run["progress"]]
        oracle = [[p for run in log for p in run["progress"]] for log in (exact, *rounded)]
        if len(progress) != ctx.n_iter:
            failures.append(f"the \"auto\" stopping rule: {len(progress)} progress measures "
                            f"for {ctx.n_iter} epochs")
        else:
            failures += _auto_stop_failures(
                progress, [uncertainty(progress, oracle, i) for i in range(len(progress))],
                ctx)
    continued = ctx.record.get("continued")
    choice = runs[0]["start_choice"] if runs else None
    if continued and choice is None:
        failures.append("epoch 1: the call went on with the kept \"auto\" search, which was "
                        "not where it started")
    elif continued:
        loss, kept = choice["loss"], choice["kept_loss"]
        known = [log[0]["start_choice"] for log in (exact, *rounded)]
        moved = [abs(k["loss"] - known[0]["loss"]) for k in known[1:] if k is not None]
        tol = MARGIN * (scale * max(moved, default=math.inf) + eps * abs(kept))
        if not abs(loss - kept) <= tol:
            failures.append(f"epoch 1: the call went on with the kept \"auto\" search, where "
                            f"the loss {loss:.17g} is not the kept {kept:.17g} within rounding")
    elif continued is False and choice is not None and choice["own"] and trained_here:
        failures.append("epoch 1: the call started the \"auto\" search afresh where the loss "
                        "was the kept one bit for bit, computed as the fit computed it: the "
                        "rule goes on")
    return failures


def _auto_stop_failures(progress, uncertainties, ctx) -> list:
    """The ``"auto"`` stopping rule re-run over a replay's progress measures.

    Each epoch counts as progress when its measure is above ``tol``; where the
    measure lies within its uncertainty of ``tol`` either count is taken, so
    the rule's state is a set. The recorded switch to the monotone test must be
    where a plateau is reachable, no stop before the recorded end, and a stop
    at the recorded end unless it reached ``max_iter``.
    """
    from . import step_size

    net, record = ctx.net, ctx.record
    tol, patience = net.tol, net.n_iter_no_change
    incremental = record["incremental"]
    start_monotone = _first_state_flag(record, "monotone") or step_size.MEMORY == 0
    switched = min(ctx.plateaus) if ctx.plateaus else None
    counts = {record["checkpoints"][0]["history"]["no_improvement_count"]}
    for e in range(1, ctx.n_iter + 1):
        p, dp = progress[e - 1], uncertainties[e - 1]
        options = ({True} if p + dp > tol else set()) | ({False} if not p - dp > tol else set())
        monotone = start_monotone or (switched is not None and switched < e)
        going, stopping = set(), False
        for count in counts:
            for improved in options:
                count_now = 0 if improved else count + 1
                if count_now <= patience:
                    if switched != e:
                        going.add(count_now)
                elif not monotone:
                    if switched == e:
                        going.add(0)
                elif incremental:
                    going.add(count_now)       # partial_fit never stops
                else:
                    stopping = True
        last = e == ctx.n_iter
        if last and (going or stopping) and (stopping or ctx.n_iter >= ctx.max_iter
                                              or incremental):
            return []
        if not going:
            what = ("switched to the monotone test" if switched == e else
                    "went on" if not last else "stopped")
            return [f"epoch {e}: the \"auto\" search {what} where its stopping rule (the "
                    f"progress measure {p:.3g} against tol {tol:g}) does not, beyond rounding"]
        counts = going
    return [f"epoch {ctx.n_iter}: the \"auto\" search stopped where its stopping rule does "
            f"not stop it, beyond rounding"] if ctx.n_iter else []


# ------------------------------------------------------------ recorded rules
def _stopping_rule(ctx) -> tuple[set, int | None, list]:
    """The stopping rule re-run over the recorded losses: plateaus, the stop, each epoch's
    bookkeeping ``(best_loss, best_score, count)``."""
    net, record = ctx.net, ctx.record
    history = record["checkpoints"][0]["history"]
    best_loss = math.inf if history["best_loss"] is None else history["best_loss"]
    best_score = -math.inf if history["best_validation_score"] is None \
        else history["best_validation_score"]
    count = history["no_improvement_count"]
    early = net.early_stopping and not record["incremental"]
    n_outputs = np.asarray(record["checkpoints"][0]["coefs"][-1]).shape[1]
    from .losses import get_loss

    solver = net._make_solver(n_outputs)
    # As the estimator sets it: for gd a fraction of the loss, else scikit-learn's units.
    relative = solver.progress(None, math.nan, math.inf) is not None
    tol = net.tol if early or relative else \
        net.tol * get_loss(net.loss).sklearn_ratio(n_outputs)
    from .solvers import AutoGDState, SGDState

    state = AutoGDState(math.nan, [], [], math.nan,
                        monotone=_first_state_flag(record, "monotone")) \
        if type(solver).__name__ == "AutoGD" else SGDState(ctx.rates[0] if ctx.rates else 0.0)
    plateaus, stop, books = set(), None, []
    for e in range(ctx.n_iter):
        if not solver.uses_stopping_rule:     # L-BFGS keeps no such bookkeeping
            books.append((best_loss, best_score, count))
            continue
        if early:
            score = ctx.validation_scores[e]
            improved = score >= best_score + tol
            best_score = max(best_score, score)
        else:
            loss = ctx.losses[e]
            if ctx.auto:
                # "auto"'s progress reads the search's state (its next rate and
                # |g|**2), which the record keeps at checkpoints only: not re-run.
                return None, None, None
            progress = solver.progress(None, loss, best_loss)
            improved = loss <= best_loss - tol if progress is None else progress > tol
            best_loss = min(best_loss, loss)
        count = 0 if improved else count + 1
        if solver.uses_stopping_rule and count > net.n_iter_no_change:
            if isinstance(state, SGDState):
                state = SGDState(ctx.rates[e])
            state, stopped = solver.on_plateau(state)
            if stopped:
                if not record["incremental"]:
                    stop = e + 1
            else:
                count = 0
                plateaus.add(e + 1)
        books.append((best_loss, best_score, count))
        if stop is not None:
            break
    return plateaus, stop, books


def _first_state_flag(record, name):
    fields = record["checkpoints"][0]["state"].get("fields", {})
    node = fields.get(name)
    return bool(node["value"]) if node and node.get("type") == "bool" else False


def _rule_checks(ctx) -> list:
    """The stopping rule and the schedule, re-run over the recorded numbers."""
    net, record = ctx.net, ctx.record
    checks = []
    plateaus, stop, books = _stopping_rule(ctx)
    n_iter, max_iter = ctx.n_iter, 1 if record["incremental"] else net._max_iter()
    solver_stops = not net._make_solver(
        np.asarray(record["checkpoints"][0]["coefs"][-1]).shape[1]).uses_stopping_rule
    if books is None:
        # "auto" without early stopping: the plateau the search switched at is the
        # recorded one (imposed); the end is checked against max_iter only.
        monotone = record["monotone"] or []
        first = _first_state_flag(record, "monotone")
        switched = next((e + 1 for e, m in enumerate(monotone) if m and not first), None)
        plateaus = set() if switched is None else {switched}
        ctx.plateaus = plateaus
        checks.append(Check("the number of epochs", n_iter <= max_iter,
                            f"{n_iter} of at most max_iter {max_iter} (the auto rule's "
                            f"stop is re-run by each replay, over its progress measures)"))
        return checks + _schedule_checks(ctx)
    expected_end = 1 if record["incremental"] else (stop or max_iter)
    if solver_stops:
        ok = n_iter <= max_iter
        checks.append(Check("the number of epochs", ok,
                            f"{n_iter} of at most max_iter {max_iter} (L-BFGS's own "
                            f"stopping tests are re-run by each replay)"))
    else:
        ok = n_iter == min(expected_end, max_iter)
        checks.append(Check("the stopping rule, over the recorded losses", ok,
                            f"ends at epoch {n_iter}; the rule ends it at "
                            f"{min(expected_end, max_iter)}"))
    for c in record["checkpoints"][1:]:
        e = c["epoch"]
        if e - 1 >= len(books):
            continue
        best_loss, best_score, count = books[e - 1]
        h = c["history"]
        stored = (math.inf if h["best_loss"] is None else h["best_loss"],
                  -math.inf if h["best_validation_score"] is None else h["best_validation_score"],
                  h["no_improvement_count"])
        if stored != (best_loss, best_score, count):
            checks.append(Check(f"the stopping rule's bookkeeping at epoch {e}", False,
                                f"stored {stored}, the rule gives "
                                f"{(best_loss, best_score, count)}"))
            break
    ctx.plateaus = plateaus
    return checks + _schedule_checks(ctx)


def _schedule_checks(ctx) -> list:
    """Each epoch's rate from the last, by the solver's own ``end_epoch`` and plateaus."""
    net, record, plateaus, checks = ctx.net, ctx.record, ctx.plateaus, []
    solver = net._make_solver(np.asarray(record["checkpoints"][0]["coefs"][-1]).shape[1])
    from .solvers import SGDState

    if isinstance(solver.init_state([np.zeros(1)]), SGDState) and ctx.rates:
        first_rate = _first_state_float(record, "learning_rate")
        state = SGDState(first_rate)
        seen = record["checkpoints"][0]["history"]["samples_seen"]
        n_train = _train_rows(ctx)
        bad = None
        for e, rate in enumerate(ctx.rates):
            if rate != state.learning_rate:
                bad = e + 1
                break
            seen += n_train
            state = solver.end_epoch(state, seen)
            if e + 1 in plateaus:
                state, _ = solver.on_plateau(state)
        checks.append(Check("each epoch's learning rate, by the schedule", bad is None,
                            "" if bad is None else f"epoch {bad}'s rate {ctx.rates[bad - 1]:g}"
                            f" is not the schedule's {state.learning_rate:g}"))
    elif type(solver).__name__ in ("Adam", "LBFGS"):
        ok = all(rate == solver.learning_rate for rate in ctx.rates)
        checks.append(Check("each epoch's learning rate", ok,
                            "" if ok else "a rate differs from learning_rate_init"))
    return checks


def _first_state_number(record, name):
    node = record["checkpoints"][0]["state"].get("fields", {}).get(name)
    return node["value"] if node and node.get("type") in ("int", "float") else None


def _first_state_float(record, name):
    node = record["checkpoints"][0]["state"].get("fields", {}).get(name)
    return float(node["value"]) if node and node.get("type") == "float" else math.nan


def _train_rows(ctx):
    n = ctx.X.shape[0]
    if ctx.eval_set is None and ctx.net.early_stopping and not ctx.record["incremental"]:
        n_val = int(math.ceil(ctx.net.validation_fraction * n))
        return n - n_val
    return n


# ------------------------------------------------------------------ binding
def _scalers(model, X, y):
    """The scalers ``StandardizedRegressor.fit`` computes from ``X``, ``y``."""
    from .scaling import mean_scale

    X = X if np.issubdtype(X.dtype, np.floating) else X.astype(np.float64)
    y = y if np.issubdtype(y.dtype, np.floating) else y.astype(np.float64)
    x_mean, x_scale = mean_scale(X)
    y_mean, y_scale = mean_scale(y.reshape(y.shape[0], -1))
    if getattr(model.regressor_, "loss", "squared_error") == "poisson":
        y_mean = y_mean * 0.0
    return {"x_mean": x_mean, "x_scale": x_scale, "y_mean": y_mean, "y_scale": y_scale}


#: The dtypes a fit may have been given the same numbers in: data whose
#: fingerprint differs is tried in each, where the cast is exact.
_SAME_NUMBER_DTYPES = ("float64", "float32", "int64")


def _fitted_data(model, X, y, eval_set):
    """What the network was given: the data, scaled by scalers recomputed from it
    (a ``StandardizedRegressor``), and which recomputed scaler equals the file's."""
    if not hasattr(model, "regressor_"):
        return X, y, eval_set, {}
    fresh = _scalers(model, X, y)
    stored = {k: to_numpy(getattr(model, k + "_")) for k in fresh}
    same = {k: np.array_equal(np.asarray(fresh[k], np.float64),
                              np.asarray(stored[k], np.float64)) for k in fresh}
    saved = {k: getattr(model, k + "_") for k in fresh}
    for k, v in fresh.items():
        setattr(model, k + "_", np.asarray(v).astype(np.asarray(stored[k]).dtype))
    try:
        X_fit, y_fit = to_numpy(model._scale_X(X)), to_numpy(model._scale_y(y))
        if eval_set is not None:
            eval_set = (to_numpy(model._scale_X(eval_set[0])),
                        to_numpy(model._scale_y(eval_set[1])))
    finally:
        for k, v in saved.items():
            setattr(model, k + "_", v)
    return X_fit, y_fit, eval_set, same


def _exact_casts(a):
    """``a`` as given, then in each of :data:`_SAME_NUMBER_DTYPES` that holds its every
    value exactly (a round trip gives ``a`` back)."""
    casts = [a]
    for name in _SAME_NUMBER_DTYPES:
        if a.dtype == name:
            continue
        with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # a float out of int64's range: not exact
            b = a.astype(name)
            exact = np.array_equal(b.astype(a.dtype), a)
        if exact:
            casts.append(b)
    return casts


def _same_numbers(model, record, arrays, sample_weight):
    """The data in other dtypes, holding the same numbers, that has the recorded fingerprint.

    The fingerprint hashes the arrays' own bytes with their dtype, so the
    numbers a fit was given as float32 (an int64 ``y``, ...) have another
    fingerprint as float64. Each array is tried in each dtype that holds its
    values exactly (only after a mismatch: a float64 array of other values
    has no exact cast but its own, so other data costs nothing more; numbers
    exact in all three dtypes cost at most ``3 ** n_arrays`` fingerprints).
    ``sample_weight`` is always float64, as the fit checks it.

    Parameters
    ----------
    arrays : list of ndarray
        ``X``, ``y`` and, where the fit had one, the ``eval_set``'s two arrays.

    Returns
    -------
    (X_fit, y_fit, eval_fit, same, dtypes) or None
        What :func:`_fitted_data` gives for the matching cast, and the dtype
        of each of ``arrays`` that matched; None when none does.
    """
    for choice in itertools.islice(itertools.product(*map(_exact_casts, arrays)), 1, None):
        ev = tuple(choice[2:]) or None
        X_fit, y_fit, ev_fit, same = _fitted_data(model, choice[0], choice[1], ev)
        shape = _fingerprinted_shape(record, X_fit, y_fit, sample_weight, ev_fit)
        if shape is not _OTHER_DATA:
            return X_fit, y_fit, ev_fit, same, [a.dtype.name for a in choice], shape
    return None


#: :func:`_fingerprinted_shape`'s answer for data whose fingerprint is not the record's.
_OTHER_DATA = object()


def _fingerprinted_shape(record, X_fit, y_fit, sample_weight, eval_fit):
    """Whether the fit was given ``y`` as ``(n,)``, as the record's fingerprint binds it.

    The fingerprint counts ``y`` of shape ``(n,)`` and ``(n, 1)`` as the same
    data, and hashes after it whether the fit had a 1-D ``y`` (which sets the
    shape ``predict`` answers in). Returns True or False (the data is the
    fit's, and that is how its ``y`` was shaped), None (the data is the fit's,
    and the fingerprint, made before it bound the shape, says nothing of it),
    or :data:`_OTHER_DATA`.
    """
    claimed = record.get("y_1d")
    tries = ([bool(claimed), not claimed] if claimed is not None else []) + [None]
    for y_1d in tries:
        if fingerprint(X_fit, y_fit, sample_weight, eval_fit, like=record["data_sha256"],
                       y_1d=y_1d) == record["data_sha256"]:
            return y_1d
    return _OTHER_DATA


def _bind_data(cert, model, record, X, y, sample_weight, eval_set, parent=False):
    """The data the network was fit on, checked against the record; None when it is not.

    For a ``parent`` model (certified with its child's data), data other than its
    own is no evidence against it: it cannot be certified with that data (CANNOT).
    """
    from ._checks import check_sample_weight

    name = type(model).__name__
    X = check_X(X, name)
    y = check_y(y, X.shape[0], name)
    X, y = to_numpy(X), to_numpy(y)
    if sample_weight is not None:
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
    if eval_set is not None:
        X_val = to_numpy(check_X(eval_set[0], name))
        eval_set = (X_val, to_numpy(check_y(eval_set[1], X_val.shape[0], name)))
    other_data = (f"the parent {cert.model} was fit on other data than the data given (its "
                  f"child's), which is no evidence against it: certify it separately, with "
                  f"its own data (certify({cert.model!r}, X, y), or gpumlp validate --model "
                  f"{cert.model} --data ITS_DATA, with --parent for its own parent)")
    X_fit, y_fit, eval_fit, same = _fitted_data(model, X, y, eval_set)
    if X_fit.shape[0] != record["n_samples"]:
        if parent:
            cert.missing.append(f"{other_data}; the data given has {X_fit.shape[0]} rows, "
                                f"it was fit on {record['n_samples']}")
            return None
        cert.checks.append(Check(
            "the data given is the data the model was fit on", False,
            f"it has {X_fit.shape[0]} rows, the model was fit on {record['n_samples']} (for "
            f"gpumlp train, pass the same --data; the split is redone from the file)"))
        return None
    if record["eval_set"] and eval_set is None:
        cert.missing.append("the eval_set the fit was given: pass it (eval_set=...)")
        return None
    if record["data_sha256"] is None:
        cert.missing.append("a fingerprint of the data: it was not NumPy data when fit, so "
                            "the data given cannot be bound to the model")
        return None
    if not record["eval_set"]:
        if eval_set is not None:
            cert.notes.append("the eval_set given was not used: the fit had none (its "
                              "record says so), so it is no part of what was certified")
        eval_fit = None
    shape = _fingerprinted_shape(record, X_fit, y_fit, sample_weight, eval_fit)
    if shape is _OTHER_DATA:
        arrays = [X, y, *(eval_set if record["eval_set"] else ())]
        recast = _same_numbers(model, record, arrays, sample_weight)
        if recast is None and parent:
            cert.missing.append(other_data)
            return None
        if recast is None:
            scalers = [k for k, ok in same.items() if not ok]
            cert.checks.append(Check(
                "the data given is the data the model was fit on", False,
                "not the data the model was fit on: X, y, sample_weight and eval_set do not "
                "have the recorded fingerprint" + (f", and the scalers {', '.join(scalers)} "
                                                   f"recomputed from them differ from the "
                                                   f"file's" if scalers else "")
                + " (nor do the same numbers in float64, float32 or int64); pass the same "
                "data, in the same order"))
            return None
        X_fit, y_fit, eval_fit, same, dtypes, shape = recast
        cert.notes.append("the data given holds the numbers the model was fit on, in other "
                          "dtypes: " + ", ".join(
                              f"{n} is {a.dtype.name}, fit as {d}" for n, a, d in
                              zip(["X", "y", "X_val", "y_val"], arrays, dtypes)
                              if a.dtype.name != d) + "; certified with them cast back")
    cert.checks.append(Check("the data's fingerprint (X, y, sample_weight, eval_set)", True))
    if shape is None:
        cert.notes.append("the shape predict answers in (y_1d) is not certified: this file's "
                          "data fingerprint, made before gpumlp bound it, does not cover it")
    elif shape != record.get("y_1d"):
        cert.checks.append(Check(
            "y_1d (the shape predict answers in) is the fit's, as its data's fingerprint binds it",
            False, f"the fit was given a {'1-D' if shape else '2-D'} y (its fingerprint says so), "
            f"the record says {'1-D' if record.get('y_1d') else '2-D'}"))
    for k, ok in same.items():
        cert.checks.append(Check(f"the scaler {k}, recomputed from the data", ok,
                                 "" if ok else "the file's differs from the data's: the "
                                 "file was altered"))
    return X_fit, y_fit, sample_weight, eval_fit


def _plain_state(state):
    """A bit generator's state as plain values, arrays as lists: states compare with ``==``
    (MT19937's and Philox's hold arrays, which ``==`` compares elementwise; a saved state
    holds lists)."""
    if isinstance(state, dict):
        return {k: _plain_state(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return [_plain_state(v) for v in state]
    if isinstance(state, (np.ndarray, np.generic)):
        return _plain_state(state.tolist())
    return state


def _check_start(cert, net, record, metadata, parents, certify_parent, chain=frozenset()):
    """Provenance: the initial weights redrawn from the seed, or the parent's digest.

    ``chain``: the real paths of the model and the links it descends from,
    which are never taken as its parent. Returns the parent model's network
    when it was found among ``parents``, else None.
    """
    from .initialization import glorot_uniform

    first = record["checkpoints"][0]
    start = record["start"]
    dtype = np.asarray(first["coefs"][0]).dtype.name
    if start["kind"] == "seed":
        sizes = metadata["layer_sizes"]
        rng = generator_from_seed(start["seed"])
        coefs, intercepts = glorot_uniform(sizes, rng, dtype)
        same = all(np.array_equal(a, b) for a, b in
                   zip([*coefs, *intercepts], [*first["coefs"], *first["intercepts"]]))
        cert.checks.append(Check("the initial weights are the draw of the recorded seed", same,
                                 "" if same else "they are not: the fit did not start from "
                                 "its seed"))
        same_rng = _plain_state(rng.bit_generator.state) == \
            _plain_state(first["rng"]["numpy_generator"])
        cert.checks.append(Check("the generator is where that draw left it", same_rng))
        seed = start["seed"]
        random_state = net.random_state
        if seed["kind"] == "int" and isinstance(random_state, np.random.RandomState):
            cert.checks.append(_drawn_from(random_state, seed["value"]))
        elif seed["kind"] == "int":
            ok = isinstance(random_state, (int, np.integer)) and int(random_state) == \
                seed["value"]
            cert.checks.append(Check("the seed is the model's random_state", ok,
                                     f"random_state {random_state!r}, seed {seed['value']}"))
        elif seed["kind"] == "entropy":
            cert.checks.append(Check("random_state=None, the seed drawn by NumPy",
                                     random_state is None))
        template = net._make_solver(np.asarray(first["coefs"][-1]).shape[1]).init_state(
            [*first["coefs"], *first["intercepts"]])
        from .solvers import plain_numbers, state_to_arrays

        _, fresh = state_to_arrays(plain_numbers(template, template))
        fresh_arrays = state_to_arrays(template)[0]
        ok = json.dumps(fresh) == json.dumps(first["state"]) and all(
            np.array_equal(np.asarray(fresh_arrays[k]), first["state_arrays"].get(k))
            for k in fresh_arrays)
        h = first["history"]
        ok = ok and h["samples_seen"] == 0 and h["no_improvement_count"] == 0 \
            and h["best_loss"] is None and first["best"] is None
        cert.checks.append(Check("a fresh solver state and history at the start", ok))
        cert.covered.append("provenance: the initial weights redrawn from the recorded seed")
        return
    from .io import load

    digest = start["parent"]
    candidates = []
    for path in parents:
        if os.path.realpath(os.fspath(path)) in chain:
            continue   # the model itself, or a link it descends from: never its own parent
        parent = load(path)
        parent_net = getattr(parent, "regressor_", parent)
        if model_digest(parent_net.coefs_, parent_net.intercepts_) == digest:
            candidates.append((path, parent_net))
    starts = [*first["coefs"], *first["intercepts"]]

    def same_as(weights):
        # A continued fit casts the parent's weights to its own dtype
        # (set_params(dtype=...) between the two): compare them so cast.
        return weights is not None and all(
            np.array_equal(np.asarray(to_numpy(a)).astype(np.asarray(b).dtype), np.asarray(b))
            for a, b in zip(weights, starts))

    # An early-stopping run resumed (train --resume) goes on from its last
    # weights, kept in its training state; its file's weights are its best,
    # which the links of a chain may share: the parent is the one it started from.
    candidates.sort(key=lambda c: not (same_as([*c[1].coefs_, *c[1].intercepts_])
                                        or same_as(getattr(c[1], "_last_params", None))))
    for path, parent_net in candidates[:1]:
        last = getattr(parent_net, "_last_params", None)
        from_last = not same_as([*parent_net.coefs_, *parent_net.intercepts_]) and \
            same_as(last)
        same = from_last or same_as([*parent_net.coefs_, *parent_net.intercepts_])
        cert.checks.append(Check(
            f"the start is the parent model {os.fspath(path)}"
            + (" (its last weights: an early-stopping run resumed)" if from_last else ""),
            same))
        state = _continued_state(net, parent_net, record, first)
        if not state.ok and getattr(parent_net, "_trainer", None) is None and \
                record["incremental"]:
            # The parent file keeps no training state (training_state=False):
            # the solver state partial_fit kept in memory cannot be checked.
            cert.missing.append(
                f"the solver state this partial_fit continued: the parent file "
                f"{os.fspath(path)} keeps no training state (saved with "
                f"training_state=False), so the state kept in memory cannot be checked")
        else:
            cert.checks.append(state)
        cert.parents.append(certify_parent(path))
        cert.covered.append(f"provenance: the parent {os.fspath(path)}, certified in turn")
        return parent_net
    cert.missing.append(f"the parent model (weights digest {digest[:16]}...): this fit "
                        f"continued it (a warm start or partial_fit); pass it (--parent) so "
                        f"the chain is certified link by link")


def _check_inherited(cert, net, parent_net, record) -> None:
    """A continued fit's curves begin with its parent's epochs, where it kept them:
    those must be the parent's, whose file is certified in turn (the replay checks
    only this call's). An edited inherited loss or rate PASSed (adversarial round
    18). A call that started its curves afresh (a parent loaded without its
    training state, a warm start without the parent's eval_set) has no such head."""
    validated = bool(record["eval_set"]) or (bool(getattr(net, "early_stopping", False))
                                             and not record["incremental"])
    for name in ("loss_curve_", "learning_rates_", "validation_scores_",
                 "validation_loss_curve_"):
        theirs, ours = (getattr(m, name, None) for m in (parent_net, net))
        theirs = [] if theirs is None else [float(v) for v in theirs]
        ours = [] if ours is None else [float(v) for v in ours]
        this_call = record["n_iter"] if name in ("loss_curve_", "learning_rates_") or \
            validated else 0
        head = ours[:max(0, len(ours) - this_call)]
        if not head:
            continue
        same = len(head) == len(theirs) and all(
            a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(head, theirs))
        cert.checks.append(Check(
            f"{name}'s first {len(head)} entries, before this call's, are the parent's",
            same, "" if same else f"they are {head[:3]}..., the parent's {theirs[:3]}..."))


def _drawn_from(random_state, seed: int) -> Check:
    """The seed a fit drew from a ``RandomState`` random_state, found in its saved state.

    ``fit`` draws its seed as ``random_state.randint(2**31 - 1)`` (one 32-bit
    output of MT19937), and the file keeps the ``RandomState`` as it was when
    saved: after that draw. An output ``k`` places back in the current block
    is drawn again by setting the position back by ``k``; the seed must be
    one of them (the last, when nothing drew from it between fit and save).
    """
    state = random_state.get_state(legacy=False)
    key, pos = state["state"]["key"], int(state["state"]["pos"])
    bound = np.iinfo(np.int32).max
    rewound = np.random.RandomState(0)
    for back in range(1, pos + 1):
        rewound.set_state({"bit_generator": "MT19937", "state": {"key": key, "pos": pos - back},
                           "has_gauss": 0, "gauss": 0.0})
        if int(rewound.randint(bound)) == seed:
            return Check("the seed is the draw of the model's random_state (a RandomState)",
                         True, f"seed {seed}, drawn {back} output(s) before its saved state")
    return Check("the seed is the draw of the model's random_state (a RandomState)", False,
                 f"seed {seed} is none of the {pos} draws of the saved RandomState's current "
                 f"block: the fit did not draw it from this random_state")


def _continued_state(net, parent_net, record, first) -> Check:
    """A continued fit's solver state at its start: the parent's kept one (``partial_fit``)
    or a fresh one (a warm start), as ``fit`` makes it."""
    from .solvers import plain_numbers, state_to_arrays

    params = [*first["coefs"], *first["intercepts"]]
    template = net._make_solver(np.asarray(first["coefs"][-1]).shape[1]).init_state(params)
    trainer = getattr(parent_net, "_trainer", None)

    def starts_from(expected):
        arrays, description = state_to_arrays(expected)
        recorded = first["state_arrays"]
        # A kept state is cast to the continued fit's dtype, as its weights are.
        return json.dumps(description) == json.dumps(first["state"]) and all(
            k in recorded and np.array_equal(
                np.asarray(to_numpy(a)).astype(np.asarray(recorded[k]).dtype), recorded[k])
            for k, a in arrays.items())

    # partial_fit and `gpumlp train --resume` keep the parent's state (the
    # latter is no partial_fit: the record's `incremental` is False); a warm
    # start makes a fresh one, and so does partial_fit where the parent kept no
    # state of this solver's kind (set_params(solver=...) between the two), as
    # the estimator's _trainer_for does. Either is an honest start; nothing else is.
    kept = trainer is not None and trainer.state is not None and \
        type(trainer.solver) is type(net._make_solver(np.asarray(first["coefs"][-1]).shape[1]))
    if kept and type(trainer.state) is type(template) and \
            starts_from(plain_numbers(trainer.state, template)):
        return Check("the continued fit starts from the parent's solver state, kept", True)
    return Check("the continued fit starts from a fresh solver state, or the parent's kept one",
                 (not record["incremental"] or not kept) and starts_from(template))


def _check_claims(cert, net, metadata, record, ctx):
    """The file's own figures against the record the replays check."""
    n_iter = record["n_iter"]
    curve = list(net.loss_curve_)
    cert.checks.append(Check("n_iter_ is the record's", net.n_iter_ == n_iter and
                             len(curve) >= n_iter, f"n_iter_ {net.n_iter_}, record {n_iter}"))
    if "y_1d" in record:   # predict's answer is (n,) after a 1-D y, (n, k) otherwise
        y_1d = bool(getattr(net, "_y_was_1d", False))
        cert.checks.append(Check("y_1d (the shape predict answers in) is the record's",
                                 y_1d == record["y_1d"],
                                 f"the file says {y_1d}, its record says the fit was given a "
                                 f"{'1-D' if record['y_1d'] else '2-D'} y"))
    rates = list(net.learning_rates_)
    cert.checks.append(Check("learning_rates_ hold a rate per epoch", len(rates) >= n_iter))
    # learning_rate_ is the rate in force at the end, as fit sets it (_set_fitted).
    init = net.learning_rate_init
    rate = float(rates[-1]) if rates else (None if init == "auto" else float(init))
    cert.checks.append(Check("learning_rate_ is the last epoch's rate", net.learning_rate_ == rate,
                             f"learning_rate_ {net.learning_rate_!r}, the record gives {rate!r}"))
    last = record["checkpoints"][-1]
    dtype = np.asarray(last["coefs"][0]).dtype
    # The weights the call returned, from its last checkpoint.
    final = [*last["coefs"], *last["intercepts"]]
    from .solvers import state_from_arrays

    state = state_from_arrays(last["state"], last["state_arrays"])
    final_loss = None
    kind = type(state).__name__
    # As the trainer ends a call (the solver's end_fit) and the estimator keeps it.
    if kind == "AutoGDState" and state.best_loss < state.loss:
        final = list(state.best_params)
    if net.early_stopping and not record["incremental"] and last["best"] is not None:
        final = last["best"]
    if kind == "LBFGSState" and state.loss is not None:
        final_loss = float(np.asarray(state.loss))
    elif kind == "AutoGDState" and not state.stale:
        # loss_ is the loss at the weights returned when they are a point the
        # search measured (its best, or where it stands), as fit sets it.
        for point, loss in ((state.best_params, state.best_loss), (state.params, state.loss)):
            if point is not None and len(point) == len(final) and all(
                    np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(point, final)):
                final_loss = loss if math.isfinite(loss) else None
                break
    stored = [*net.coefs_, *net.intercepts_]
    same = len(stored) == len(final) and all(
        np.asarray(a).dtype == dtype and np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(stored, final))
    cert.checks.append(Check("the stored weights are the last checkpoint's result", same,
                             "" if same else "the file weights differ"))
    expected_loss = final_loss if final_loss is not None else (curve[-1] if curve else None)
    if expected_loss is not None and not math.isfinite(expected_loss):
        expected_loss = None
    cert.checks.append(Check("loss_", net.loss_ == expected_loss,
                             f"loss_ {net.loss_!r}, the record gives {expected_loss!r}"))
    training = metadata.get("training")
    if training is not None:
        # best_loss_ and the best validation score, as the file keeps them for a resume.
        h, book = training["history"], last["history"]
        ok = h["best_loss"] == book["best_loss"] and \
            h["best_validation_score"] == book["best_validation_score"]
        cert.checks.append(Check("best_loss_ and best_validation_score_", ok,
                                 f"the file's {h['best_loss']}, {h['best_validation_score']}; "
                                 f"the record's {book['best_loss']}, "
                                 f"{book['best_validation_score']}"))
    trained = metadata.get("trained_on", "")
    try:
        device = agreement.backend_device(record["device"])
        ok = str(device) == trained
        cert.checks.append(Check("trained_on is the record's device", ok,
                                 f"trained_on {trained!r}, record {record['device']!r}"))
    except (BackendUnavailableError, ValueError):
        pass
    cert.checks.append(Check("the dtype is the record's", metadata["dtype"] == dtype.name))
    ctx.losses = curve[len(curve) - n_iter:]
    ctx.rates = rates[len(rates) - n_iter:]
    vcurve = metadata.get("validation_loss_curve")
    ctx.validation_losses = None if vcurve is None else vcurve[len(vcurve) - n_iter:]


def _state_leaves(description, arrays, prefix="state"):
    """``{path: value}`` of every leaf of a state description, its arrays included."""
    out = {}

    def walk(node, path):
        kind = node.get("type")
        if kind in ("list", "tuple"):
            for i, item in enumerate(node["items"]):
                walk(item, f"{path}.{i}")
        elif kind == "dataclass":
            out[f"{path}.class"] = node.get("class")
            for name, item in node["fields"].items():
                walk(item, f"{path}.{name}")
        elif kind == "array":
            out[path] = np.asarray(arrays.get(node["name"]))
        else:
            out[path] = (kind, node.get("value"))

    walk(description, prefix)
    return out


def _check_training_state(cert, net, record, parent_net):
    """The training state the file keeps, against the fit's final state.

    What ``partial_fit`` after loading and ``gpumlp train --resume`` go on
    from (the solver state, the batch-order generator, the stopping rule's
    bookkeeping, early stopping's last weights and split generator) is the
    state the fit ended in: its last checkpoint, which every replay of the
    last segment is compared with. Written by the same fit from the same
    values, the two are equal to the bit; a field that differs is named.
    """
    from .solvers import plain_numbers, state_to_arrays

    training = net._training_state()
    if training is None:
        cert.notes.append("the file keeps no training state (saved with training_state=False"
                          "): a partial_fit or resume of it starts afresh; nothing to bind")
        return
    last, first = record["checkpoints"][-1], record["checkpoints"][0]
    wrong = []
    if training["state"] is not None:
        trainer = net._trainer
        template = trainer.solver.init_state(list(trainer.params))
        arrays, description = state_to_arrays(plain_numbers(training["state"], template))
        got = _state_leaves(description, {k: to_numpy(a) for k, a in arrays.items()})
        want = _state_leaves(last["state"], last["state_arrays"])
        for path in sorted(set(got) | set(want)):
            a, b = got.get(path), want.get(path)
            same = (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                    and a.dtype == b.dtype and np.array_equal(a, b)) \
                if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a == b
            if not same:
                wrong.append(f"training {path}")
    random_state = net.random_state
    if _plain_state(training["rng"]) != _plain_state(last["rng"]["numpy_generator"]):
        if isinstance(random_state, np.random.Generator) and \
                _plain_state(random_state.bit_generator.state) == _plain_state(training["rng"]):
            # The random_state Generator is the batch-order generator: drawn from
            # after the fit, it stands elsewhere, and how far cannot be traced.
            cert.missing.append("where the batch-order generator stands: it is the model's "
                                "random_state Generator, which was drawn from after the fit "
                                "(its state is not the fit's last); save right after fit")
        else:
            wrong.append("training rng (the batch-order generator)")
    history, book = training["history"], last["history"]
    for key in ("samples_seen", "no_improvement_count", "best_loss", "best_validation_score"):
        value = history[key]
        value = None if isinstance(value, float) and not math.isfinite(value) else value
        if value != book[key]:
            wrong.append(f"training history {key} {value!r} (the fit's {book[key]!r})")
    curve = net.validation_loss_curve_
    if curve is not None:
        if list(history["validation_losses"]) != list(curve):
            wrong.append("training history validation_losses (not validation_loss_curve_)")
    elif history["validation_losses"]:
        # The last call had no validation set: the history holds an earlier
        # call's losses (a warm start after a fit with eval_set), which this
        # file's own curve no longer shows.
        cert.notes.append("the training history's validation losses are those of an earlier "
                          "call, not checked here: certify the model that call saved")
    final = [*last["coefs"], *last["intercepts"]]
    state = last["state"]
    if state.get("class") == "AutoGDState":   # the search's best point, as fit ends it
        from .solvers import state_from_arrays

        auto = state_from_arrays(state, last["state_arrays"])
        if auto.best_loss < auto.loss:
            final = list(auto.best_params)
    if training["last_params"] is not None:
        if not all(np.array_equal(to_numpy(a), np.asarray(b))
                   for a, b in zip(training["last_params"], final, strict=True)):
            wrong.append("training last_params (early stopping's last weights)")
    elif net.early_stopping and not all(
            np.array_equal(to_numpy(a), np.asarray(b))
            for a, b in zip([*net.coefs_, *net.intercepts_], final, strict=True)):
        # Early stopping kept its best weights; the last ones, which a
        # continuation goes on from, must be in the file (a file without them
        # would resume from the best).
        wrong.append("training last_params (missing, though the weights are early "
                     "stopping's best, not the last epoch's)")
    if training["split"] is not None:
        # A fit draws its validation rows from the generator as the call starts;
        # a resumed run keeps its parent's split.
        splits = [_plain_state(first["rng"]["numpy_generator"]),
                  _plain_state(getattr(parent_net, "_split_state", None))]
        if _plain_state(training["split"]) not in splits:
            wrong.append("training split (the validation split's generator)")
    cert.checks.append(Check("the training state (what partial_fit and --resume continue "
                             "from) is the fit's final state", not wrong,
                             "these differ: " + "; ".join(wrong) if wrong else ""))
    cert.covered.append("the training state a continuation starts from: the solver state, "
                        "the batch-order and split generators, the history")


def _check_names(cert, metadata, X, y, feature_names, target_names):
    """The file's names against the data's header (``feature_names``, ``target_names``, or
    the columns of ``X`` and ``y`` given as dataframes) and against each other.

    ``feature_names`` (what the CLI reads a CSV's columns by) and
    ``feature_names_in`` (a dataframe's columns, which ``predict`` orders a
    frame by) must be the same names where the file has both: otherwise a CSV
    and a frame of the same data would be fed to the network in two orders.
    """
    from ._checks import feature_names as frame_names

    columns, targets = ([str(n) for n in names] if names is not None else None
                        for names in (frame_names(X), frame_names(y)))
    header = {"feature_names": feature_names if feature_names is not None else columns,
              "target_names": target_names if target_names is not None else targets}
    stored_features, stored_in = metadata.get("feature_names"), metadata.get("feature_names_in")
    if stored_features is not None and stored_in is not None:
        ok = list(stored_features) == list(stored_in)
        cert.checks.append(Check(
            "feature_names (read from a CSV) are feature_names_in (a frame's columns)", ok,
            "" if ok else f"the file says {stored_features} and {stored_in}: a CSV and a frame "
                          f"would be fed in two orders"))
    for key, stored, given in (("feature_names", stored_features, header["feature_names"]),
                               ("feature_names_in", stored_in, header["feature_names"]),
                               ("target_names", metadata.get("target_names"),
                                header["target_names"])):
        if stored is None:
            continue
        if given is None:
            cert.notes.append(f"{key} were not checked: the data given has no header (an "
                              f".npy, an .npz or an array has no names to compare)")
            continue
        ok = [str(n) for n in given] == list(stored)
        cert.checks.append(Check(f"{key} are the data's header", ok,
                                 "" if ok else f"the file says {stored}, the data {list(given)}"))
        cert.covered.append(f"{key} against the data's header")


def _check_settings(cert, model, metadata, whole_data, parent=False):
    """``gpumlp train``'s saved settings (what ``--resume`` restores and ``--json``
    reports) against the model's own parameters and its split record, and its
    data digest (what ``--resume`` checks the data against) against the data."""
    from ._settings import data_digest, settings_disagreements

    extra = metadata.get("extra") or {}
    claimed = extra.get("data_sha256")
    if claimed is not None and whole_data is None:
        cert.missing.append("the data as gpumlp train read it, before its split, to check the "
                            "file's data_sha256 (what train --resume checks the data against): "
                            "pass it (whole_data=(X, y)), or run gpumlp validate --model "
                            "--data")
    elif claimed is not None:
        X, y = whole_data
        ok = data_digest(np.asarray(X), np.asarray(y)) == claimed
        if not ok and parent:   # its child's data is no evidence against a parent
            cert.missing.append("the parent's data: its data_sha256 is not the digest of the "
                                "data given (its child's); certify it with its own data")
        else:
            cert.checks.append(Check(
                "extra.data_sha256 (what train --resume checks the data against) is the "
                "data's digest", ok, "" if ok else f"the file claims {str(claimed)[:16]}..., "
                f"the data given has {data_digest(np.asarray(X), np.asarray(y))[:16]}...: "
                f"either the data given is not the data train read (pass the same --data) "
                f"or the file's claim is false (a resume would take other data and refuse "
                f"this)"))
            cert.covered.append("extra.data_sha256, against the data as train read it")
    settings = extra.get("settings")
    if not isinstance(settings, dict):
        return
    wrong = settings_disagreements(settings, model, extra)
    cert.checks.append(Check("the saved train settings are the model's parameters and split",
                             not wrong, "; ".join(wrong)))
    cert.covered.append("the saved train settings, against the model and its split record")


# ------------------------------------------------------------------ certify
def certify(model_file: str | os.PathLike, X, y, *, sample_weight=None, eval_set=None,
            backends: list | None = None, dtypes: tuple = ("float32", "float64"),
            parents: tuple = (), feature_names=None, target_names=None,
            whole_data=None) -> Certificate:
    """Certify the fit recorded in ``model_file``: provenance, data, every segment, every claim.

    Parameters
    ----------
    model_file : str or path-like
        A model saved by :func:`gpumlp.save` (or ``gpumlp train --out``).
    X : array-like, shape (n_samples, n_features)
    y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        The data the model was fit on, before any scaling the model applies
        (for ``gpumlp train``: its training split); the same numbers in
        another dtype (float64, float32, int64, where exact) are the same data.
    sample_weight : array-like, shape (n_samples,), optional
        The fit's, if it had any.
    eval_set : tuple (X_val, y_val), optional
        The fit's, if it had one (unscaled).
    backends : list of str, optional
        Names as :func:`gpumlp.agreement.backend_device` takes them; by
        default every available one.
    dtypes : sequence of str
        Replay dtypes, at least one of ``"float32"`` and ``"float64"``.
    parents : sequence of paths
        Model files the fit may have continued (a warm start, ``partial_fit``):
        the one whose weights have the recorded digest is certified in turn,
        with ``X`` and ``y``; a parent fit on other data (a ``partial_fit``
        chain on batches) cannot be certified with them: that link is
        ``"CANNOT"``, never ``"FAIL"`` nor ``"PASS"`` (certify it on its own).
    feature_names, target_names : list of str, optional
        The data's header, checked against the names in the file.
    whole_data : tuple (X, y), optional
        For a file from ``gpumlp train --out``: the data as it read it, before
        its train/test split (``X``, ``y`` above are the training split);
        its digest must be the file's ``extra.data_sha256``, by which
        ``train --resume`` accepts data. Without it such a file is CANNOT.

    Returns
    -------
    Certificate
        ``certificate.outcome`` is ``"PASS"``, ``"FAIL"`` or ``"CANNOT"``;
        :func:`format_certificate` prints it.

    Raises
    ------
    NotReplayableError
        If the file holds no fit record with checkpoints (an older gpumlp,
        Dask data): the message says what can and cannot be said of it.
    ValueError
        For ``dtypes`` that name nothing or something else than float32/float64,
        or a model in ``parents`` that no fit of the chain continued (a claimed
        parent is never ignored in silence).
    TypeError
        For ``backends`` or ``dtypes`` given as a string, or a ``parents``
        entry that is not a path.
    """
    # The replays, as the fit, judge overflow by the values it leaves (a
    # non-finite quantity agrees only with the same one), not by NumPy's
    # warnings on the way.
    _checked_arguments(backends, dtypes)   # the caller's mistakes raise, as documented
    if isinstance(parents, (str, os.PathLike)):   # a string is a sequence of its letters
        raise TypeError(f"parents takes a list of model file paths, such as "
                        f"[{os.fspath(parents)!r}], not one path.")
    for parent in parents:
        if not isinstance(parent, (str, os.PathLike)):
            raise TypeError(f"parents takes model file paths (str or os.PathLike), got "
                            f"{type(parent).__name__} {parent!r:.80}: each parent is "
                            f"certified with this model's data.")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            cert = _certify(model_file, X, y, sample_weight=sample_weight, eval_set=eval_set,
                            backends=backends, dtypes=dtypes, parents=parents,
                            feature_names=feature_names, target_names=target_names,
                            whole_data=whole_data)
        except (TypeError, AttributeError, IndexError, KeyError) as exc:
            # A file whose parts contradict each other (a solver's name against
            # its recorded state, a history cut short) cannot be replayed as it
            # claims: what gpumlp.save writes has no such parts. A FAIL that
            # says so, not a traceback.
            cert = Certificate(os.fspath(model_file), "?", 0)
            cert.checks.append(Check(
                "the file's parts agree with each other (its parameters, fit record and "
                "training state)", False,
                f"replaying it as it claims raised {type(exc).__name__}: {exc}"))
            return cert
    used, chain, links, broken = set(), [cert], set(), []
    while chain:
        link = chain.pop()
        links.add(os.path.realpath(link.model))
        used |= {os.path.realpath(p.model) for p in link.parents}
        broken += [link.model for m in link.missing if m.startswith("the parent model")]
        chain += link.parents
    unused = [os.fspath(p) for p in parents if os.path.realpath(os.fspath(p)) not in used]
    if unused:   # a parent claimed by the caller and never checked: never a silent PASS
        itself = [p for p in unused if os.path.realpath(p) in links]
        if itself:
            raise ValueError(
                f"{', '.join(itself)} is {os.fspath(model_file)} itself or a link of its "
                f"chain: a model is never its own parent, nor that of a model it descends "
                f"from. Pass as parents only the models the fit was continued from.")
        if broken:
            raise ValueError(
                f"{', '.join(unused)} was not reached (a model further up the chain, "
                f"perhaps): the parent of {broken[0]} (a warm "
                f"start, partial_fit or --resume) is not among the parents given, so the "
                f"chain stops there. Pass every model of the chain, the parent of each "
                f"link, or leave out the models above the missing one.")
        raise ValueError(
            f"{', '.join(unused)} is no link of the chain of {os.fspath(model_file)}: "
            f"no fit in that chain continued it (a fit from its seed has no parent). "
            f"Pass as parents only the models the fit was continued from.")
    return cert


def _checked_arguments(backends, dtypes) -> tuple:
    """``dtypes`` as a tuple; a string for either, or a dtype not float32/float64, refused."""
    for name, value in (("backends", backends), ("dtypes", dtypes)):
        if isinstance(value, str):   # a string is a sequence of its letters
            raise TypeError(f"{name} takes a list of names, such as [{value!r}], not a "
                            f"string.")
    if backends is not None and not list(backends):
        raise ValueError("backends is empty: name at least one (such as ['numpy']), or "
                         "leave it out for every available one; a certificate that "
                         "replays nothing would certify nothing.")
    dtypes = tuple(dtypes)
    if not dtypes or any(d not in ("float32", "float64") for d in dtypes):
        raise ValueError(f"dtypes must name float32 and/or float64, got {dtypes!r}: a "
                         f"certificate that replays nothing would certify nothing.")
    return dtypes


def _certify(model_file: str | os.PathLike, X, y, *, sample_weight=None, eval_set=None,
            backends: list | None = None, dtypes: tuple = ("float32", "float64"),
            parents: tuple = (), feature_names=None, target_names=None,
            whole_data=None, parent: bool = False,
            descendants: frozenset = frozenset()) -> Certificate:
    """:func:`certify` without the check that every parent given was used; ``parent``
    when the model is a parent certified with its child's data; ``descendants``: the
    real paths of the links certified above it (none of them can be its parent)."""
    from .io import ModelFileError, load_with_metadata

    dtypes = _checked_arguments(backends, dtypes)
    path = os.fspath(model_file)
    try:
        # With the parameters the fit ran with, where its record keeps them
        # (the file's may be a later fit's: _check_parameters_ran).
        model, metadata = load_with_metadata(path, as_fit=True)
    except ModelFileError as exc:
        cert = Certificate(path, "?", 0)
        cert.checks.append(Check("the file loads and its schema holds", False, str(exc)))
        return cert
    net = getattr(model, "regressor_", model)
    record = getattr(net, "_fit_record", None)
    if record is None or record.get("version") != 2:
        why = ("its fit record predates checkpoints (gpumlp before issue 19)"
               if record is not None else "it holds no fit record (an older gpumlp, a fit "
               "on Dask data, or a fit that an exception or Ctrl-C ended: its epochs were "
               "kept, its record not)")
        raise NotReplayableError(
            f"{path} cannot be certified: {why}. What can be said: it loads, and its schema, "
            f"weights and scalers are valid (checked on loading). Its training cannot be "
            f"replayed; fit it again with this gpumlp and save it to certify it.")
    dtype = metadata["dtype"]
    cert = Certificate(path, f"{record['device']} {dtype}", record["n_iter"])
    _check_names(cert, metadata, X, y, feature_names, target_names)
    if whole_data is None and (metadata.get("extra") or {}).get("test_size") == 0:
        whole_data = (X, y)   # no split: the training data is all the data train read
    _check_parameters_ran(cert, metadata, record)
    _check_settings(cert, model, metadata, whole_data, parent)
    search = metadata.get("alpha_search")
    if search is not None:   # StandardizedRegressor's choice of alpha (gpumlp.selection)
        cert.notes.append(
            f"alpha {search['alpha']:g} was chosen by {search.get('n_folds')}-fold "
            f"cross-validation among {', '.join(f'{a:g}' for a in search['alphas'])} before "
            f"this fit; the certificate covers the fit at that alpha, not the choice, "
            f"nor that grid (the alphas a refit of the loaded model searches)")
    bound = _bind_data(cert, model, record, X, y, sample_weight, eval_set, parent)

    chain = descendants | {os.path.realpath(path)}

    def certify_parent(parent_path):
        # With the data's header too: a parent's names are bound as its child's are.
        return _certify(parent_path, X, y, sample_weight=sample_weight, eval_set=eval_set,
                       backends=backends, dtypes=dtypes, parents=parents,
                       feature_names=feature_names, target_names=target_names,
                       whole_data=whole_data, parent=True, descendants=chain)

    parent_net = _check_start(cert, net, record, metadata, parents, certify_parent, chain)
    if parent_net is not None:
        _check_inherited(cert, net, parent_net, record)
    if bound is None:
        return cert
    X_fit, y_fit, sw, ev = bound
    _check_training_dtype(cert, record, metadata, X_fit)
    ctx = _Context(net, record, X_fit, y_fit, sw, ev, [], record["accepted"],
                   record["improved"], record["steps"],
                   set(), record["n_iter"], [], None, None)
    _check_claims(cert, net, metadata, record, ctx)
    _check_training_state(cert, net, record, parent_net)
    training = net._training_state()
    ctx.split_state = None if training is None else training["split"]
    n_outputs = np.asarray(record["checkpoints"][0]["coefs"][-1]).shape[1]
    ctx.solver = net._make_solver(n_outputs)
    ctx.max_iter = 1 if record["incremental"] else net._max_iter()
    ctx.trained_eps = float(np.finfo(dtype).eps)
    if record.get("evaluations") is not None:
        ctx.n_fun = list(itertools.accumulate(
            record["evaluations"], initial=_first_state_number(record, "n_fun") or 0))[1:]
        # An iteration evaluates the loss at most at its call's start and in two
        # searches (one retried after forgetting the memory), each of at most
        # max_line_search trials and as many zooms: a count beyond that could fake
        # a max_fun stop where the replay cannot recount (a failed search's).
        cap = 4 * int(ctx.solver.max_line_search) + 1
        over = [(e + 1, n) for e, n in enumerate(record["evaluations"]) if not 0 <= n <= cap]
        cert.checks.append(Check(
            "each L-BFGS iteration's loss evaluations are within what its searches take",
            not over, "" if not over else f"iteration {over[0][0]} records {over[0][1]}, "
            f"where its searches take at most {cap}"))
    ctx.auto = record["accepted"] is not None and not (net.early_stopping
                                                       and not record["incremental"])
    scores = _validation_scores(net, metadata, record)
    ctx.validation_scores = scores
    if net.early_stopping and not record["incremental"] and scores is None:
        cert.missing.append("the validation scores of the fit (the file lacks its training "
                            "state)")
        return cert
    cert.checks += _rule_checks(ctx)
    cert.covered += ["the data: fingerprint of X, y, sample_weight, eval_set (the validation "
                     "split is drawn from the verified generator)",
                     "loss_curve_, learning_rates_, n_iter_, loss_, best_loss_, validation "
                     "losses, the stored weights, the device and dtype the file and its "
                     "record claim (agreeing with each other; which backend or dtype really "
                     "ran is certified only to within rounding)",
                     f"every epoch of the {record['n_iter']}, in "
                     f"{len(record['checkpoints']) - 1} segments"]
    # A parameter no number of this fit depends on leaves no trace to replay.
    cert.notes.append("not certified: warm_start and verbose, and the parameters of other "
                      "solvers and schedules than this fit's (no number of the fit depends "
                      "on them; warm_start decides whether a later fit of the loaded model "
                      "continues from its weights)")
    if "template" in metadata:
        # A StandardizedRegressor's regressor parameters, which only a later fit of
        # the loaded model reads (the fitted network's are the record's).
        cert.notes.append("not certified: the StandardizedRegressor's template (its "
                          "regressor's parameters, what a later fit of the loaded model "
                          "trains with; the fitted network's are certified)")
    _replay_all(cert, ctx, backends, dtypes, dtype)
    return cert


#: Parameters ``predict`` reads: the file's must be those the fit ran with. (Not
#: ``dtype``: predict computes in the weights' dtype, which the file records.)
_PREDICTING = ("activation", "loss", "hidden_layer_sizes")


def _meaning(name, value):
    """A parameter's value as the estimator takes it: one spelling per meaning."""
    from .activations import ALIASES

    if name == "activation":
        return ALIASES.get(value, value)
    if name == "hidden_layer_sizes":   # 4 is (4,), which the file keeps as [4]
        return [value] if isinstance(value, int) else list(value)
    return value


def _check_parameters_ran(cert, metadata, record) -> None:
    """Replay with the parameters the fit ran with, where its record keeps them.

    A ``set_params`` between the fit and ``save`` (``warm_start=True`` and a
    new ``max_iter`` for the next call, say) changes the file's parameters,
    not what the fit did: those are a later fit's settings, named in a note
    and not certified (``net`` was loaded with the fit's: ``as_fit``). The
    parameters ``predict`` reads must be the fit's. Files from before the
    record kept them are replayed with the file's.
    """
    ran = record.get("params")
    if ran is None:
        return
    kept = metadata["params"]
    differ = [name for name in ran
              if _meaning(name, kept.get(name)) != _meaning(name, ran[name])]
    predicting = [name for name in differ if name in _PREDICTING]
    cert.checks.append(Check(
        "the parameters predict uses (activation, loss, hidden_layer_sizes) are those the "
        "fit ran with", not predicting,
        "; ".join(f"{name} is {kept.get(name)!r} in the file, {ran[name]!r} in the fit"
                  for name in predicting)))
    later = [name for name in differ if name not in _PREDICTING]
    if later:
        cert.notes.append(
            "the file's parameters differ from those its fit ran with: "
            + ", ".join(f"{name} {kept.get(name)!r} (the fit's {ran[name]!r})"
                        for name in later)
            + "; they are settings for a later fit of the loaded model (set_params after "
              "this fit), not certified: the replay runs with the fit's")


def _check_training_dtype(cert, record, metadata, X_fit) -> None:
    """The dtype the record's checkpoints are in is the one the fit's ``dtype`` gives.

    A fit computes in its ``dtype`` parameter, or, for None, in its data's
    (float32 stays float32, anything else is float64; a continued fit keeps
    its parent's). A float64 fit whose arrays were all cast to float32 and
    called a float32 fit lands within float32's rounding of one, which no
    replay tolerance can refute: what can be refuted is a record of a fit
    that ran with float64 (or with float64 data) holding float32 weights.
    """
    from ._checks import resolve_dtype

    ran = record.get("params")
    if ran is None:
        return
    requested = ran.get("dtype")
    if requested is None and record["start"]["kind"] != "seed":
        return   # the parent's dtype, checked on the parent's own link
    expected = resolve_dtype(requested, np.asarray(X_fit))
    cert.checks.append(Check(
        "the dtype the fit ran in is its dtype parameter's (or its data's)",
        metadata["dtype"] == expected,
        f"the weights and checkpoints are {metadata['dtype']}; dtype={requested!r} on "
        f"this {np.asarray(X_fit).dtype.name} data computes in {expected}"))


def _validation_scores(net, metadata, record):
    training = metadata.get("training")
    n_iter = record["n_iter"]
    if not metadata.get("validation_loss_curve"):
        return None
    if training is None:
        return None
    scores = training["history"]["validation_scores"]
    return scores[len(scores) - n_iter:]


def _replay_all(cert, ctx, backends, dtypes, trained_dtype):
    """Every segment on the oracle (plain and probed), then on each backend and dtype."""
    record = ctx.record
    n_segments = len(record["checkpoints"]) - 1
    if backends is None:
        backends, unusable = agreement.available_backends()
        cert.notes += [f"backend {name} not run: {why}" for name, why in unusable.items()]
    devices = {}
    for name in backends:
        devices[name] = agreement.backend_device(name)
    if not any(d.name == record["device"] for d in devices.values()):
        try:
            devices[record["device"]] = agreement.backend_device(record["device"])
        except (BackendUnavailableError, ValueError) as exc:
            cert.missing.append(f"the backend the model was trained on, {record['device']} "
                                f"({exc}): install it to replay the fit where it ran")
    # NumPy runs every segment in float64 and in float32 (with its fast path when
    # it is on: BLAS sums, less accurate than the generic kernels' pairwise sums):
    # how far float32 rounding moves each quantity is the segment's own measured
    # sensitivity to rounding (module docs). These runs are NumPy's replays too.
    # When another backend replays, the generic kernels it runs (other formulas:
    # a(1 - a) for the fast path's 1 - t**2) run in float32 as well, twice, each
    # batch's rows summed in another order (_reordered): each quantity's noise
    # is the largest of the three. One sample of rounding is not a bound where
    # a segment magnifies one direction most (a chaotic L-BFGS segment, "auto"
    # steps): the replay's distance and the sample's are then two projections
    # of random roundings on that direction, whose ratio has Cauchy tails, and
    # exceeds MARGIN = 10 about 6% of the time; over the largest of three
    # samples, some 0.1% (module docs). With one sample, honest float32
    # L-BFGS fits of 400 iterations failed on torch or JAX in 6 of 8 seeds
    # (tanh) and 2 of 8 (ReLU, past its kinks); with the fast path's alone, an
    # honest float64 L-BFGS fit of 2000 rows failed on torch and JAX in float64.
    from .training import TrainingDivergedError

    # NumPy's runs compute as a NumPy fit did: with the fast path where it ran
    # with it (and it is on here), with the generic kernels where it did not.
    oracle = Device("cpu")
    fast = fastpath.is_enabled() and (bool(record["fastpath"]) or record["device"] != "numpy")
    own_key = computation("numpy", fast)
    theirs = record.get("computation")
    if record["device"] == "numpy" and theirs is not None:
        threads = theirs.get("blas_threads")
        if isinstance(threads, list) and len(set(threads)) == 1 and \
                isinstance(threads[0], int) and threads[0] >= 1:
            # (the replays take the fit's BLAS threads: no part of the key to match)
            ctx.blas_threads = threads[0]
            theirs = {k: v for k, v in theirs.items() if k != "blas_threads"}
            own_key = {k: v for k, v in own_key.items() if k != "blas_threads"}
    variants = [(fast, None)]
    # Another backend's replay needs samples of other roundings; so does NumPy's
    # where it cannot compute as a NumPy fit did (its fast path off here: the
    # generic kernels' sigmoid and sums differ from the fast path's, beyond
    # float32's spread of one computation; found by review).
    sampled = any(d.name != "numpy" for d in devices.values()) or (
        record["device"] == "numpy" and bool(record["fastpath"]) != fast)
    if sampled:
        variants += [(False, ("reversed", 1)), (False, ("rolled", 2))]
    try:
        # (NumPy's float64 and float32 runs with its fast path as set: one of
        # them computes as a NumPy fit did, and counts its searches' evaluations)
        exact = [_run_segment(ctx, j, oracle, "float64", fast, probe_kinks=_kinked(ctx.net),
                              count_searches=True) for j in range(n_segments)]
        rounded = [[_run_segment(ctx, j, oracle, "float32", f, sample=sample,
                                 count_searches=sample is None)
                    for j in range(n_segments)] for f, sample in variants]
    except TrainingDivergedError as exc:
        # A fit that float32 cannot hold (a Poisson exp of unscaled X, say) has
        # no measured sensitivity: neither a pass nor a failure can be judged.
        cert.missing.append(f"the segments' sensitivity to rounding, measured by replaying "
                            f"them in float64 and float32 on NumPy: a replay diverged ({exc})")
        return
    ctx.shared_runs = {("numpy", "float64"): exact, ("numpy", "float32"): rounded[0]}
    scales = _state_scales(record)

    def measured_noise(j, samples):
        stored_end = record["checkpoints"][j + 1]
        reference = _quantities(exact[j], stored_end, ctx, j)
        samples = [_quantities(run, stored_end, ctx, j) for run in samples]
        # A replay and the record are two roundings of the segment: how far two
        # of NumPy's float32 runs land apart counts, as does each one's distance
        # from float64.
        measured = [_noise(reference, q) for q in samples] + \
            [_noise(a, b) for a, b in itertools.combinations(samples, 2)]
        # (a sample whose L-BFGS memory restarted lacks some arrays: unmeasured, as
        # _noise counts a quantity a sample lacks)
        return {name: max(m.get(name, math.inf) for m in measured) for name in measured[0]}

    noise = [measured_noise(j, [runs[j] for runs in rounded]) for j in range(n_segments)]
    more = {}

    def more_samples(j):
        """Segment ``j``'s rounding samples with :data:`EXTRA_SAMPLES` more, and their noise."""
        if j not in more:
            runs = [r[j] for r in rounded] + [
                _run_segment(ctx, j, oracle, "float32", False, sample=("permuted", seed))
                for seed in range(len(variants) + 1, len(variants) + 1 + EXTRA_SAMPLES)]
            more[j] = (runs, measured_noise(j, runs))
        return more[j]

    in_float64 = {}

    def float64_noise(j):
        """Segment ``j``'s noise measured by :data:`EXTRA_SAMPLES` rounding samples run in
        float64 itself, in float32's units (over :func:`_scale`, which _compare applies).

        Three float32 samples' spread, scaled by the ratio of the two eps, is
        float64's only while the segment is close to linear in its rounding; in
        a segment chaotic enough that float32's spread has saturated (a long
        float64 L-BFGS tail), float64's grows by more than that ratio. Taken
        where a float64 replay of a float64 fit is still past the float32
        samples' spread.
        """
        if j not in in_float64:
            runs = [_run_segment(ctx, j, oracle, "float64", False, sample=("permuted", seed))
                    for seed in range(101, 101 + EXTRA_SAMPLES)]
            scale = _scale("float64")
            in_float64[j] = {k: v / scale for k, v in measured_noise(j, runs).items()}
        return in_float64[j]

    def judge(run, j, samples, noise_j, name, dtype, tol_dtype, trained_here, bit_exact):
        """One replay of segment ``j`` against the record, with these rounding samples:
        ``(worst, where, failures, notes, kink)``, ``kink`` the crossing (or None)."""
        stored_end = record["checkpoints"][j + 1]
        start, end = record["checkpoints"][j]["epoch"], stored_end["epoch"]
        quantities = _quantities(run, stored_end, ctx, j)
        crossing = None if trained_here or not _kinked(ctx.net) else \
            _kink_crossing(exact[j], noise_j, tol_dtype)
        judged, notes = run, []
        if crossing is not None:
            # ReLU's derivative jumps where a unit crosses 0. From the first
            # point where one is within rounding of its kink, this replay may
            # take the other side and leave the fit's path by more than
            # rounding: it is compared up to there, and the rest is judged by
            # the fit's own computation.
            judged, quantities = _before(run, quantities, start + crossing[0])
        worst, where, failures = _compare(quantities, noise_j, tol_dtype, scales)
        decisions = _decision_failures(judged, exact[j], samples, tol_dtype, ctx, scales[0])
        if decisions and dtype != trained_dtype and _kinked(ctx.net):
            # ReLU's derivative jumps where a unit crosses 0: the other dtype's
            # weights, a rounding apart, may sit across a kink, and a line
            # search's Wolfe test or a step's acceptance changes by a finite
            # amount there, beyond any rounding bound. The decisions are judged
            # at the fit's own dtype (its NumPy replay, below or above); the
            # trajectory here is still compared within its tolerance.
            own = ctx.shared_runs[("numpy", trained_dtype)][j]
            if not _decision_failures(own, exact[j], samples, trained_dtype, ctx, scales[0]):
                notes.append(
                    f"{name} {dtype}, epochs {start + 1}-{end}: {len(decisions)} decision(s) "
                    f"judged at {trained_dtype} only (the fit's dtype), where they hold: at "
                    f"{dtype}'s numbers a ReLU unit near its kink changes them by more than "
                    f"rounding ({decisions[0]})")
                decisions = []
        failures += decisions
        failures += _failed_search_failures(judged, exact[j], samples, tol_dtype, ctx)
        if _plain_state(run["rng"]) != _plain_state(stored_end["rng"]["numpy_generator"]):
            # Each segment starts from its checkpoint's generator: one the record
            # swapped would choose the later batches, unseen by the replays.
            failures.append(f"the batch-order generator after epoch {end} is not where the "
                            f"epochs before it leave it (the next checkpoint's was changed)")
        if trained_here:
            failures += _evaluation_failures(judged, ctx)
        if bit_exact:
            failures += _bit_exact_failures(run, quantities, ctx)
        return worst, where, failures, notes, crossing

    if ctx.accepted is not None and record["start"]["kind"] == "seed" and ctx.n_iter:
        cert.checks.append(_check_initial_rate(ctx, trained_dtype))
    judged_whole = False      # a replay computed as the fit did (every segment judged whole)
    for name, device in devices.items():
        for dtype in dtypes:
            replay = Replay(name, dtype)
            cert.replays.append(replay)
            tol_dtype = _looser(dtype, trained_dtype)
            # The replay that computes as the fit did (same backend, dtype and
            # fast path) reproduces it bit for bit: every epoch is judged there.
            replay_fast = fast if device.is_numpy else fastpath.is_enabled()
            trained_here = (device.name == record["device"] and dtype == trained_dtype
                            and record["fastpath"] == replay_fast)
            # On the machine, BLAS and versions the fit ran with (the record's
            # computation key), that replay is the fit's own arithmetic: it is
            # held to the record bit for bit, every quantity and decision.
            replay.exact = trained_here and device.name == "numpy" and \
                theirs is not None and theirs == own_key
            # Three samples of rounding are not a bound (_replay_all's comment
            # above): a segment this replay leaves by more than their spread is
            # judged again over EXTRA_SAMPLES more before it is called a failure.
            escalate = sampled and not trained_here
            try:
                device.check_dtype(dtype)
                runs, unjudged = [], set()
                for j in range(n_segments):
                    start = record["checkpoints"][j]["epoch"]
                    end = record["checkpoints"][j + 1]["epoch"]
                    shared = ctx.shared_runs.get((device.name, dtype))
                    run = shared[j] if shared else \
                        _run_segment(ctx, j, device, dtype, replay_fast,
                                     count_searches=trained_here)
                    runs.append(run)
                    args = (name, dtype, tol_dtype, trained_here, replay.exact)
                    worst, where, failures, notes, crossing = judge(
                        run, j, [r[j] for r in rounded], noise[j], *args)
                    if failures and escalate:
                        first = failures[0]
                        try:
                            widened = more_samples(j)
                        except TrainingDivergedError:
                            widened = None      # no more samples: judged over three
                    if failures and escalate and widened is not None:
                        worst, where, failures, notes, crossing = judge(run, j, *widened, *args)
                        also = ""
                        if failures and tol_dtype == "float64":
                            try:
                                own = float64_noise(j)
                            except TrainingDivergedError:
                                own = None
                            if own is not None:
                                both = {k: max(v, own.get(k, math.inf))
                                        for k, v in widened[1].items()}
                                worst, where, failures, notes, crossing = judge(
                                    run, j, widened[0], both, *args)
                                also = f" and {EXTRA_SAMPLES} more in float64"
                        notes.append(
                            f"{name} {dtype}, epochs {start + 1}-{end}: past the spread of "
                            f"{len(variants)} rounding samples ({first}); judged over "
                            f"{len(variants) + EXTRA_SAMPLES}{also}, "
                            f"{'and still past it' if failures else 'within their spread'}")
                        if failures:
                            # The replay has failed: its later segments are judged over
                            # three samples (what they list may then be rounding).
                            escalate = False
                            notes.append(f"{name} {dtype}: the segments after epoch {end} "
                                         f"judged over {len(variants)} rounding samples only")
                    cert.notes += notes
                    if crossing is not None:
                        last = start + crossing[0]
                        unjudged.update(range(last, end))
                        replay.partial.append((start + 1, end, last))
                        if len(replay.partial) == 1:
                            first_crossing = crossing
                    replay.segments.append({"start": start, "end": end, "worst": worst,
                                            "what": where})
                    replay.failures += [f"epochs {start + 1}-{end}: {f}" for f in failures]
                if replay.partial:
                    spans = ", ".join(f"{a}-{b} to {c}" for a, b, c in replay.partial)
                    cert.notes.append(
                        f"{name} {dtype}: {len(replay.partial)} segment(s) compared only up "
                        f"to the epoch before a ReLU unit came within rounding of its kink "
                        f"(epochs {spans}; the first: |z| {first_crossing[1]:.2g} of the "
                        f"magnitudes it sums, rounding {first_crossing[2]:.2g}), where a "
                        f"replay that rounds otherwise may take its other side; the rest is "
                        f"judged by the fit's own computation ({record['device']} "
                        f"{trained_dtype})")
                # The call's own decisions, over all its segments.
                failures = _call_failures(runs, exact, rounded, tol_dtype, ctx, trained_here,
                                          unjudged)
                try:
                    widened = [more_samples(j)[0] for j in range(n_segments)] \
                        if failures and escalate else None
                except TrainingDivergedError:
                    widened = None
                if widened is not None:
                    failures = _call_failures(runs, exact, [list(v) for v in zip(*widened)],
                                              tol_dtype, ctx, trained_here, unjudged)
                    cert.notes.append(
                        f"{name} {dtype}: the call's decisions judged over "
                        f"{len(variants) + EXTRA_SAMPLES} rounding samples, "
                        f"{'and still past their spread' if failures else 'within their spread'}")
                replay.failures += failures
            except (ValueError, BackendUnavailableError, MemoryError) as exc:
                replay.error = str(exc)
            if trained_here and replay.error is None:
                judged_whole = True
    exact = [r for r in cert.replays if r.exact and r.error is None]
    if exact:
        cert.covered.append(f"every epoch and decision bit for bit on {exact[0].backend} "
                            f"{exact[0].dtype}, which computes as the fit did (the same "
                            f"gpumlp, NumPy, BLAS, CPU and fast path)")
    else:
        if record["device"] != "numpy":
            why = (f"the fit ran on {record['device']}: only a NumPy fit's record names what "
                   f"it computed with")
        elif theirs is None:
            why = "its record names none of what it computed with (an older gpumlp's file)"
        elif record["fastpath"] and not fast:
            why = "the fit ran with the fast path, which is off here"
        elif theirs != own_key:
            why = f"the fit's {_key_difference(theirs, own_key)}"
        else:
            why = f"the fit's dtype, {trained_dtype}, was not among those replayed"
        cert.notes.append(
            f"no replay here computes as the fit did, bit for bit ({why}): every segment is "
            f"judged within its measured rounding, so a change smaller than that (a few "
            f"times float32's rounding of a chaotic segment) would not be seen; certify "
            f"where the fit ran, with NumPy, to hold it to its numbers exactly")
    if not any(r.error is None for r in cert.replays):
        cert.missing.append("a backend and dtype that can replay the fit")
    elif any(r.partial for r in cert.replays) and not judged_whole:
        cert.missing.append(
            f"the fit's own computation ({record['device']} {trained_dtype}, fast path "
            f"{'on' if record['fastpath'] else 'off'}), which judges the segments past a "
            f"ReLU unit within rounding of its kink: no replay here computes as the fit did")


def _key_difference(theirs: dict, ours: dict | None) -> str:
    """What differs between the fit's computation key and this process's, in words."""
    ours = ours or {}
    names = [k for k in sorted(set(theirs) | set(ours)) if theirs.get(k) != ours.get(k)]
    return "; ".join(f"{k} {theirs.get(k)!r:.60}, here {ours.get(k)!r:.60}"
                     for k in names[:3]) or "computation key"


def _bit_exact_failures(run, quantities, ctx) -> list:
    """What a replay that computes as the fit did does not reproduce bit for bit.

    Same kernels on the same machine give the same numbers (the record's
    computation key, :func:`gpumlp._fitrecord.computation`): every quantity
    must equal the record's, and every decision the one the rule takes at
    the replay's numbers (the L-BFGS step, the search run as the fit ran it;
    the "auto" step's accept and rate; the best point; the curvature pair; a
    failed search), with no allowance for rounding.
    """
    failures = []
    for name, (got, want, _, _) in quantities.items():
        if want is None:
            continue            # (a quantity the record lacks: _compare names it)
        got = np.asarray(got, dtype=np.float64)
        if got.shape != np.shape(want):
            continue            # (_compare names it)
        if not np.array_equal(got, want, equal_nan=True):
            with np.errstate(invalid="ignore"):
                gap = float(np.nanmax(np.abs(got - want))) if got.size else 0.0
            failures.append(f"{name} differs from the record by {gap:.3g}, where this replay "
                            f"computes as the fit did (bit for bit)")
    for entry in run["log"]:
        e, own, imposed = entry["epoch"], entry.get("own"), entry.get("imposed")
        if "inputs" in entry:
            last = e == ctx.n_iter
            if own[0] != imposed[0] or (not last and own[1] != imposed[1]):
                taken, rule = ("accepted" if imposed[0] else "refused",
                               "accepts" if own[0] else "refuses")
                failures.append(f"epoch {e}: the step was {taken} at rate {imposed[1]:g}, "
                                f"where the rule, computed as the fit did, {rule} and gives "
                                f"{own[1]:g}")
        elif imposed is not None and own != imposed:
            failures.append(f"epoch {e}: the step length {imposed:g} is not the line search's "
                            f"({own}), run as the fit ran it")
        if "improves" in entry and entry["improves"][0] != entry["improves"][1]:
            became = "became" if entry["improves"][1] else "did not become"
            failures.append(f"epoch {e}: the point {became} the best, where the rule, "
                            f"computed as the fit did, says otherwise")
        if "keep" in entry and entry["keep"][0] != entry["keep"][1]:
            kept, rule = ("kept" if entry["keep"][1] else "skipped",
                          "keeps" if entry["keep"][0] else "skips")
            failures.append(f"epoch {e}: the curvature pair was {kept}, where the rule, "
                            f"computed as the fit did, {rule} it")
    start = run["start_choice"]
    if start and start["own"] != start["imposed"]:
        failures.append("the call went on with its kept search where the rule, computed as "
                        "the fit did, chooses otherwise")
    for entry in run["failed_searches"]:
        if entry["own"] is not None:
            failures.append(f"epoch {entry['epoch']}: the file says the line search found no "
                            f"step; run as the fit ran it, it finds {entry['own']:g}")
    return failures


def _kinked(net) -> bool:
    """Whether the network's activation has a kink (a jump in its derivative)."""
    return getattr(net, "activation", None) == "relu"


def _kink_crossing(exact, noise, dtype) -> tuple | None:
    """``(epoch, margin, bound)``: the first epoch of a segment (0-based) at whose
    evaluation point the oracle's float64 run has a ReLU unit within rounding of
    its kink, or None.

    A unit's pre-activation ``z = a @ W + b`` in ``dtype`` is off by at most about
    ``n u`` times ``|a| @ |W| + |b|`` (``n`` the terms summed, through every
    hidden layer, ``u`` the unit roundoff), and a replay's weights, ``k`` steps
    into the segment, by its tolerance (:data:`MARGIN` times the measured noise
    plus one rounding per step). A margin (:func:`_kink_margin`) within
    :data:`MARGIN` times the sum of the two may be crossed by a replay that
    rounds otherwise: the unit takes the kink's other side, its derivative
    jumps from 0 to 1 or back, and every later quantity of the segment moves by
    a finite amount that no rounding bound covers.
    """
    if not exact["kinks"]:
        return None
    eps, scale = float(np.finfo(dtype).eps), _scale(dtype)
    start = exact["start_params"]
    n_coefs = len(start) // 2
    terms = sum(np.shape(W)[0] for W in start[:n_coefs - 1]) + 1
    drift = max((noise.get(name, math.inf) / max(_norm(p), np.finfo(np.float64).tiny)
                 for name, p in zip([f"W{i + 1}" for i in range(n_coefs)]
                                    + [f"b{i + 1}" for i in range(n_coefs)], start)
                 if _norm(p) > 0), default=0.0)
    for epoch, margin in exact["kinks"]:
        k = epoch * exact["steps_per_epoch"]
        bound = MARGIN * (scale * drift + (k + 1 + terms) * eps)
        if margin <= bound:
            return epoch, margin, bound
    return None


def _before(run, quantities, last_epoch):
    """The run's logs and ``quantities`` of the call's epochs up to ``last_epoch`` (1-based):
    what a replay that may cross a kink after it still compares."""
    def epoch_of(name):
        words = name.split()
        return int(words[-1]) if len(words) > 2 and words[-2] == "epoch" else None

    kept = {name: q for name, q in quantities.items()
            if epoch_of(name) is not None and epoch_of(name) <= last_epoch}
    run = dict(run, log=[e for e in run["log"] if e["epoch"] <= last_epoch],
               failed_searches=[e for e in run["failed_searches"]
                                if e["epoch"] <= last_epoch])
    return run, kept


def _check_initial_rate(ctx, dtype) -> Check:
    """The first "auto" rate against the power iteration, run again at the start."""
    from . import step_size
    from ._checks import check_params
    from .losses import get_loss
    from .sources import Network
    from .training import Trainer

    net, record = ctx.net, ctx.record
    first = record["checkpoints"][0]
    _, activation = check_params(net)
    device = Device("cpu")
    network = Network(len(first["coefs"]), activation, fastpath.is_enabled(), get_loss(net.loss),
                      False)
    source, _, _ = _sources(ctx, device, dtype)
    params = [np.asarray(a) for a in [*first["coefs"], *first["intercepts"]]]
    trainer = Trainer(network, net._make_solver(), float(net.alpha), params)
    objective = trainer.objective(source, (0, source.n_samples, None))
    _, grads = objective(params)
    curvature = step_size.largest_curvature(objective, params, grads)
    # Finite differences with h = eps**(1/3) leave an error of order eps**(2/3) in each
    # product; sqrt(eps) allows that with a margin of eps**(-1/6) (14 in float32).
    tau = math.sqrt(float(np.finfo(dtype).eps))
    bounds = sorted(step_size.initial_learning_rate(curvature * (1 + s * tau))
                    for s in (-1.0, 0.0, 1.0))
    ok = bounds[0] <= ctx.rates[0] <= bounds[-1]
    return Check("the first \"auto\" rate is the power iteration's", ok,
                 f"recorded {ctx.rates[0]:g}, the rule gives {bounds[1]:g}")


# ------------------------------------------------------------------ report
def format_certificate(cert: Certificate) -> str:
    """The certificate as text: what was covered, each check, each replay, the outcome."""
    lines = [f"certificate for {cert.model}: trained on {cert.trained_on}, {cert.epochs} "
             f"epochs"]
    lines += [f"note: {n}" for n in cert.notes]
    if cert.covered:
        lines.append("covered:")
        lines += [f"  - {c}" for c in cert.covered]
    if cert.checks:
        lines.append("checks:")
        for c in cert.checks:
            detail = f" ({c.detail})" if c.detail and not c.ok else ""
            lines.append(f"  {'ok  ' if c.ok else 'FAIL'} {c.what}{detail}")
    if cert.replays:
        lines.append("replays (segment by segment, decisions imposed; worst = the largest "
                     "difference over its tolerance):")
        lines.append(f"  {'backend':28s} {'dtype':8s} {'segments':>8s} {'worst':>9s}  result")
        for r in cert.replays:
            if r.error is not None:
                lines.append(f"  {r.backend:28s} {r.dtype:8s} could not run: {r.error}")
                continue
            worst = max((s["worst"] for s in r.segments), default=0.0)
            partial = (f" ({len(r.partial)} compared up to a ReLU kink, see the notes)"
                       if r.partial else "")
            exact = " (bit for bit: computes as the fit did)" if r.exact else ""
            lines.append(f"  {r.backend:28s} {r.dtype:8s} {len(r.segments):8d} {worst:9.2e}  "
                         f"{'PASS' if r.passed else 'FAIL'}{exact}{partial}")
            lines += [f"    {f}" for f in r.failures[:5]]
            if len(r.failures) > 5:
                lines.append(f"    ... and {len(r.failures) - 5} more")
    for m in cert.missing:
        lines.append(f"cannot certify: {m}")
    for p in cert.parents:
        lines += ["", "parent:"] + ["  " + line for line in format_certificate(p).splitlines()]
    outcome = cert.outcome
    words = {"PASS": "PASS (every epoch, its decisions, its start and its data)",
             "FAIL": "FAIL", "CANNOT": "CANNOT CERTIFY (see above for what is missing)"}
    lines.append(f"\n{words[outcome]}")
    return "\n".join(lines)
