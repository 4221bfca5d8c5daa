"""A per-fit certificate: replay the fit recorded in a model file on every backend.

A model file from a fresh fit carries its fit record (:mod:`gpumlp._fitrecord`):
the initial weights, the random generator's state (which draws every epoch's
batch order and the validation split), the hyper-parameters, the device and
dtype, the number of epochs and a fingerprint of the training data.
:func:`certify` replays that fit, epoch by epoch, on every available backend
and dtype (:func:`gpumlp.agreement.available_backends`) and compares each
with the oracle, NumPy's generic kernels in float64:

* per epoch, the normwise relative difference of each weight array
  (``W1``, ``b1``, ...) and of the epoch's loss;
* the first epoch and array where the tolerance of the agreement table
  (:data:`gpumlp.agreement.TOLERANCES`, ``"training"``) is crossed;
* the weights stored in the file against the replay on the device and dtype
  the model was trained on: a file whose weights were changed after training
  fails here, whatever the other replays say.

A fit whose steps amplify perturbations (the long steps of
``learning_rate_init="auto"``, which may cross a ridge) magnifies the
backends' rounding differences with them, transiently: a trajectory then
cannot agree to 1e-10 without that being the algorithm's conditioning rather
than a disagreement of the kernels. So the oracle's fit is also run from
initial weights perturbed by :data:`PROBE` (relative, a fixed sign pattern);
its distance from the oracle (normwise over all the weights, and the loss's),
divided by :data:`PROBE`, is the fit's *amplification* at each epoch, and
each array's tolerance is the dtype's times ``max(1, amplification, the
array's own)``. A fit that contracts perturbations keeps the table's
tolerance; an error that is not rounding (a gradient off by one part in a
million) is amplified with the rest and still crosses it by orders of
magnitude. Once an epoch's tolerance would exceed :data:`COMPARABLE`, the fit
is chaotic at that precision (rounding alone can move it that far), and the
replay is compared up to the epoch before.

A solver that decides from the numbers it reads (the "auto" step's tests,
L-BFGS's line search) takes its own dtype's decisions, which no float64 run
reproduces: its replays in each dtype are compared with NumPy's generic
kernels in that dtype. For "auto", whose decisions are its rates, a replay
whose rate parts from the oracle's is another trajectory from there: it is
compared up to the epoch before, *if* rounding could have moved that
decision (the replay's distance from the oracle in the epochs deciding it,
or eps times the amplification there, at least :data:`DECISION_REACH`);
otherwise the numbers behind the decision are wrong and the replay fails at
that epoch ("rate"). L-BFGS records no rate: only the amplification rule
ends its comparison. The report says how far each replay was compared; the
stored weights are checked in every case.

Every replay runs exactly the recorded number of epochs: the stopping rule
runs as in the fit, so that its plateaus change the solver's state where they
did (the ``"adaptive"`` rate, ``learning_rate_init="auto"``'s switch to the
monotone test), but never stops a replay, so that a float32 run that would
have stopped one epoch sooner is still compared epoch by epoch.

The verdict is PASS when every replay stays within its tolerance at every
epoch and the stored weights are reproduced; FAIL otherwise, also when the
stored weights could not be checked because the training device is not
available here (the report says so).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from . import agreement, fastpath
from ._checks import check_X, check_y
from ._fitrecord import fingerprint
from .devices import BackendUnavailableError, Device, dtype_name, to_numpy

__all__ = ["COMPARABLE", "DECISION_REACH", "PROBE", "Certificate", "NotReplayableError",
           "Replay", "certify", "format_certificate"]

#: The relative perturbation of the initial weights that measures a fit's
#: amplification (about 100 float64 units: above rounding, far below the
#: tolerance; scaled to the dtype's precision for a float32 oracle).
PROBE = 2.0 ** -46
#: An epoch is compared while its tolerance, ``tol * max(1, amplification)``,
#: is at most this: beyond, rounding alone may move the fit further than a
#: comparison could tell from a fault, and the rest of the fit is not compared.
COMPARABLE = 1e-2
#: A solver's decision (a rate, to four digits; a step accepted or refused) may
#: part from the oracle's by rounding only once rounding-sized differences can
#: have grown to this (relative: eps times the fit's amplification); before
#: that, a decision that parts is moved by wrong numbers, and fails.
DECISION_REACH = 1e-8


class NotReplayableError(ValueError):
    """The model file holds no fit record (an older file, or a continued fit)."""


@dataclass
class Replay:
    """One backend and dtype, replayed epoch by epoch against the oracle.

    Attributes
    ----------
    backend, dtype : str
    tol : float
        The training tolerance of ``dtype``.
    arrays : list of str
        Names of the weight arrays, ``W1, ..., b1, ...``.
    weights : list of list of float
        ``weights[e][i]``: the normwise relative difference of array ``i``
        after epoch ``e + 1``.
    loss : list of float
        The relative difference of each epoch's loss.
    first_failure : tuple (epoch, array) or None
        Where the epoch's tolerance is first crossed (``array`` is
        ``"loss"`` when only the loss crossed it).
    stored : dict or None
        For the device and dtype the model was trained on: the relative
        difference of the final weights to those stored in the file.
    error : str or None
        Why the replay could not run.
    oracle : str
        What it was compared with: NumPy's generic kernels in float64, or,
        for a solver that decides from the numbers it reads, in its dtype.
    compared : int or None
        The epochs compared, ``1 .. compared``, when fewer than all (see
        :data:`COMPARABLE`); None: every epoch.
    parted : int or None
        For a solver that decides from the numbers it reads: the first
        epoch whose rate differs from the oracle's (its trajectory is
        another from there, and is not compared); None: none differs.
    """

    backend: str
    dtype: str
    tol: float
    arrays: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    first_failure: tuple | None = None
    stored: dict | None = None
    error: str | None = None
    oracle: str = "numpy float64"
    compared: int | None = None
    parted: int | None = None

    @property
    def passed(self) -> bool:
        stored_ok = self.stored is None or all(v <= self.tol for v in self.stored.values())
        # Nothing compared (decisions parted at the first epoch) certifies nothing.
        return self.error is None and self.first_failure is None and stored_ok \
            and self.compared != 0


@dataclass
class Certificate:
    """The result of :func:`certify`.

    Attributes
    ----------
    model : str
        The model file.
    trained_on : str
        Backend (device) and dtype of the original fit.
    epochs : int
    replays : list of Replay
    stored_checked : bool
        Whether a replay on the training device and dtype checked the
        stored weights.
    notes : list of str
    amplification : dict of str to list of float
        Per oracle dtype and epoch, how much the fit magnifies a relative
        perturbation of its initial weights (see the module docs); each
        epoch's tolerance is a replay's ``tol`` times ``max(1, amplification)``.
    """

    model: str
    trained_on: str
    epochs: int
    replays: list
    stored_checked: bool
    notes: list = field(default_factory=list)
    amplification: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.stored_checked and all(r.passed for r in self.replays)

    def to_json(self) -> str:
        """The certificate as JSON, per epoch figures included."""
        rows = [dict(asdict(r), passed=r.passed) for r in self.replays]
        return json.dumps({"model": self.model, "trained_on": self.trained_on,
                           "epochs": self.epochs, "stored_checked": self.stored_checked,
                           "notes": self.notes, "passed": self.passed,
                           "amplification": self.amplification, "replays": rows},
                          indent=1, allow_nan=True)


def _rel(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not np.all(np.isfinite(got)):
        return math.inf
    norm = float(np.linalg.norm(ref))
    diff = float(np.linalg.norm(got - ref))
    return diff / norm if norm > 0 else diff


def _replay_run(net, record, X, y, device, dtype, use_fastpath, perturb=0.0):
    """Run the recorded fit on ``device`` in ``dtype``: per-epoch weights, losses, final weights.

    ``perturb``: each initial weight times ``1 +- perturb`` (a fixed sign pattern).
    """
    from .estimator import MLPRegressor
    from .io import _generator

    model = MLPRegressor(**net.get_params())
    # The stopping rule keeps its tol and n_iter_no_change: its plateaus change
    # the solver's state (the "adaptive" rate, "auto"'s switch to the monotone
    # test) at the epochs they did in the fit; it only never stops the replay.
    model.set_params(backend=None, device=device, dtype=dtype, verbose=False,
                     warm_start=False, max_iter=max(record["n_iter"], 1))
    model._never_stop = True
    rng = _generator(record["rng_state"])
    signs = np.random.default_rng(0)

    def start(a):
        a = np.asarray(a, dtype=np.float64)
        if perturb:
            a = a * (1.0 + perturb * signs.choice([-1.0, 1.0], size=a.shape))
        return a.astype(dtype)

    model._replay_start = ([start(W) for W in record["coefs"]],
                           [start(b) for b in record["intercepts"]], rng)
    epochs, losses = [], []

    def on_epoch(epoch, loss, validation_loss):
        epochs.append([to_numpy(p).astype(np.float64) for p in model._live_trainer.params])
        losses.append(loss)

    with device.context():
        Xd, yd = device.asarray(X, dtype=getattr(device.xp, dtype)), \
            device.asarray(y, dtype=getattr(device.xp, dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if use_fastpath:
            model.fit(Xd, yd, callback=on_epoch)
        else:
            with fastpath.disabled():
                model.fit(Xd, yd, callback=on_epoch)
    final = [to_numpy(a).astype(np.float64) for a in (*model.coefs_, *model.intercepts_)]
    return epochs, losses, final, list(model.learning_rates_)


def _oracle(net, record, X, y, dtype):
    """NumPy's generic kernels in ``dtype``: per-epoch weights, losses, amplification, rates.

    The amplification of epoch ``e``: the distance, relative, between this
    run and one from initial weights perturbed by :data:`PROBE` (scaled to
    the dtype's precision), divided by that perturbation.
    """
    probe = PROBE * float(np.finfo(dtype).eps / np.finfo(np.float64).eps)
    epochs, losses, _, rates = _replay_run(net, record, X, y, Device("cpu"), dtype,
                                           use_fastpath=False)
    probe_epochs, probe_losses, _, _ = _replay_run(
        net, record, X, y, Device("cpu"), dtype, use_fastpath=False, perturb=probe)
    # Normwise over all the weights at once: one array's own relative distance
    # (the output bias crossing zero, as it does on standardised targets) is no
    # measure of the fit's sensitivity, and would loosen every array's tolerance.
    amplification = [
        max(_rel(np.concatenate([a.ravel() for a in perturbed]),
                 np.concatenate([a.ravel() for a in plain])), _rel(pl, ol)) / probe
        for perturbed, plain, pl, ol in zip(probe_epochs, epochs, probe_losses, losses)]
    amplification += [math.inf] * (len(epochs) - len(amplification))
    # Each array's (and the loss's) own, for its own tolerance: its relative
    # distance in a replay is inflated by a small norm exactly as here.
    per_array = [[_rel(p, o) / probe for p, o in zip(perturbed, plain)] + [_rel(pl, ol) / probe]
                 for perturbed, plain, pl, ol in zip(probe_epochs, epochs, probe_losses, losses)]
    per_array += [[math.inf] * (len(epochs[0]) + 1)] * (len(epochs) - len(per_array))
    return epochs, losses, amplification, rates, per_array


def _training_data(model, X, y):
    """The arrays the network was fit on: ``X, y`` through the stored scalers, if any."""
    name = type(model).__name__
    X = check_X(X, name)
    y = check_y(y, X.shape[0], name)
    if hasattr(model, "regressor_"):
        return to_numpy(model._scale_X(X)), to_numpy(model._scale_y(y))
    return to_numpy(X), to_numpy(y)


def certify(model_file: str | os.PathLike, X, y, *, backends: list | None = None,
            dtypes: tuple = ("float32", "float64")) -> Certificate:
    """Replay the fit recorded in ``model_file`` on every backend and dtype.

    Parameters
    ----------
    model_file : str or path-like
        A model saved by :func:`gpumlp.save` (or ``gpumlp train --out``)
        after a fresh fit.
    X : array-like, shape (n_samples, n_features)
    y : array-like, shape (n_samples,) or (n_samples, n_outputs)
        The data the model was fit on, before any scaling the model applies
        (for ``gpumlp train``: its training split).
    backends : list of str, optional
        Names as :func:`gpumlp.agreement.backend_device` takes them; by
        default every available one.
    dtypes : sequence of str

    Returns
    -------
    Certificate
        ``certificate.passed`` is the verdict; :func:`format_certificate`
        prints it.

    Raises
    ------
    NotReplayableError
        If the file holds no fit record.
    ValueError
        If ``X, y`` are not the data the model was fit on (their fingerprint
        or row count differs from the record's).
    """
    from .io import load_with_metadata

    path = os.fspath(model_file)
    model, metadata = load_with_metadata(path)
    net = getattr(model, "regressor_", model)
    record = getattr(net, "_fit_record", None)
    if record is None:
        raise NotReplayableError(
            f"{path} holds no fit record, so its fit cannot be replayed: it was saved by "
            f"an older gpumlp, or after a warm start or partial_fit, or from Dask data. "
            f"It still loads and predicts. Fit it again with this gpumlp and save it to "
            f"certify it.")
    X_fit, y_fit = _training_data(model, X, y)
    if X_fit.shape[0] != record["n_samples"]:
        raise ValueError(f"The data has {X_fit.shape[0]} rows, but the model was fit on "
                         f"{record['n_samples']}: pass the data it was fit on (for gpumlp "
                         f"train, the same --data; the split is redone from the file).")
    digest = fingerprint(X_fit, y_fit)
    if record["data_sha256"] is not None and digest != record["data_sha256"]:
        raise ValueError("This is not the data the model was fit on: its fingerprint "
                         "(SHA-256 of the scaled X and y) differs from the one recorded in "
                         "the file. Pass the same data, in the same order.")
    if record["eval_set"] and net.early_stopping:
        raise NotReplayableError(f"{path} was fit with early stopping on an eval_set, "
                                 f"which the file does not hold; it cannot be replayed.")
    trained_dtype = dtype_name(net.coefs_[0])
    notes = []
    if record["data_sha256"] is None:
        notes.append("the fit's data was not on the host, so it was not fingerprinted: "
                     "the data given is taken on trust")
    if backends is None:
        backends, unusable = agreement.available_backends()
        notes += [f"backend {name} not run: {why}" for name, why in unusable.items()]
    devices = {}
    for name in backends:
        devices[name] = agreement.backend_device(name)  # raises for a missing one
    trained = next((n for n, d in devices.items() if d.name == record["device"]), None)
    if trained is None:
        try:  # the training device, when it is not among those asked for
            device = agreement.backend_device(record["device"])
            devices[record["device"]] = device
            trained = record["device"]
        except (BackendUnavailableError, ValueError) as exc:
            notes.append(f"the stored weights were NOT checked: the model was trained on "
                         f"{record['device']}, which is not available here ({exc})")
    n_arrays = len(record["coefs"])
    arrays = [f"W{i + 1}" for i in range(n_arrays)] + [f"b{i + 1}" for i in range(n_arrays)]
    stored = [to_numpy(a) for a in (*net.coefs_, *net.intercepts_)]
    # A solver that decides from numbers it reads (the "auto" step's tests,
    # L-BFGS's line search) takes its own dtype's decisions: its float32 run is
    # compared with the oracle's kernels in float32, never with float64 decisions.
    own_dtype_oracle = net._make_solver().host_reads
    oracles = {}
    for dtype in ["float64", *(d for d in dtypes if own_dtype_oracle and d != "float64")]:
        oracles[dtype] = _oracle(net, record, X_fit, y_fit, dtype)
    replays = []
    stored_checked = False
    for name, device in devices.items():
        for dtype in dtypes:
            tol = agreement.TOLERANCES[("training", dtype)]
            replay = Replay(name, dtype, tol, arrays)
            replays.append(replay)
            is_trained = name == trained and dtype == trained_dtype
            (oracle_epochs, oracle_losses, amplification, oracle_rates,
             per_array) = oracles.get(dtype, oracles["float64"])
            replay.oracle = f"numpy {dtype if dtype in oracles else 'float64'}"
            try:
                device.check_dtype(dtype)
                epochs, losses, final, rates = _replay_run(
                    net, record, X_fit, y_fit, device, dtype,
                    use_fastpath=record["fastpath"] if is_trained else fastpath.is_enabled())
            except (ValueError, BackendUnavailableError, MemoryError) as exc:
                replay.error = str(exc)
                continue
            # A solver's decisions (its rates) parting from the oracle's, a loss
            # within rounding of a threshold, end the comparison there.
            parted = next((e for e, (a, b) in enumerate(zip(rates, oracle_rates), start=1)
                           if a != b), None) if own_dtype_oracle else None
            unexplained = False
            if parted is not None:
                replay.parted = parted
                # Rounding can move a decision only where rounding-sized differences
                # may have grown to reach a threshold: the replay's own distance
                # from the oracle in the epochs deciding it, or eps times the fit's
                # amplification there, at least DECISION_REACH. A decision parting
                # before that is moved by wrong numbers (a gradient, a loss): a
                # failure, not the end of what can be compared.
                # The rate of epoch p was decided in epoch p - 1, from the points
                # after epochs p - 2 and p - 1 (indices p - 3, p - 2).
                deciding = range(max(0, parted - 3), min(parted - 1, len(epochs)))
                observed = [max([_rel(g, r) for g, r in zip(epochs[i], oracle_epochs[i])]
                                + [_rel(losses[i], oracle_losses[i])]) for i in deciding]
                reach = max([float(np.finfo(dtype).eps) * amplification[i] for i in deciding]
                            + observed, default=0.0)
                unexplained = not reach >= DECISION_REACH
            for e, (got, ref) in enumerate(zip(epochs, oracle_epochs), start=1):
                row = [_rel(g, r) for g, r in zip(got, ref)]
                loss = _rel(losses[e - 1], oracle_losses[e - 1])
                replay.weights.append(row)
                replay.loss.append(loss)
                epoch_tol = tol * max(1.0, amplification[e - 1])
                if replay.compared is None and (not epoch_tol <= COMPARABLE or e == parted):
                    replay.compared = e - 1
                if replay.first_failure is None and replay.compared is None:
                    tols = [tol * max(1.0, a, amplification[e - 1]) for a in per_array[e - 1]]
                    bad = [a for a, v, t in zip(arrays, row, tols) if not v <= t]
                    if bad or not loss <= tols[-1]:
                        replay.first_failure = (e, bad[0] if bad else "loss")
            if parted is not None and replay.first_failure is None and parted <= len(losses):
                # The loss where epoch p starts is at the last point compared.
                i = parted - 1
                if not _rel(losses[i], oracle_losses[i]) <= tol * max(
                        1.0, per_array[i][-1], amplification[i]):
                    replay.first_failure = (parted, "loss")
            if parted is not None and unexplained and replay.first_failure is None:
                replay.first_failure = (parted, "rate")
            if len(epochs) != len(oracle_epochs):
                replay.error = (f"ran {len(epochs)} epochs, the oracle "
                                f"{len(oracle_epochs)}")
            if is_trained:
                replay.stored = {a: _rel(s, f) for a, s, f in zip(arrays, stored, final)}
                stored_checked = True
    return Certificate(path, f"{record['device']} {trained_dtype}", record["n_iter"],
                       replays, stored_checked, notes,
                       {dtype: oracle[2] for dtype, oracle in oracles.items()})


def format_certificate(cert: Certificate, epochs_shown: int = 8) -> str:
    """The certificate as text: per replay, the largest differences and a few epochs."""
    oracles = sorted({r.oracle for r in cert.replays}) or ["numpy float64"]
    lines = [f"certificate for {cert.model}: trained on {cert.trained_on}, "
             f"{cert.epochs} epochs, replayed against {' and '.join(oracles)} "
             f"(generic kernels)"]
    lines += [f"note: {note}" for note in cert.notes]
    for dtype, amplification in sorted(cert.amplification.items()):
        if amplification and max(amplification) > 1.0:
            worst = int(np.argmax(amplification))
            lines.append(f"note: in {dtype} this fit magnifies a perturbation of its initial "
                         f"weights up to {amplification[worst]:.3g} times (epoch "
                         f"{worst + 1}): each epoch's tolerance is tol times max(1, that "
                         f"epoch's amplification)")
    for r in cert.replays:
        if r.compared is None:
            continue
        if r.compared == 0:
            lines.append(f"note: {r.backend} {r.dtype}: no epoch could be compared (its step "
                         f"decisions part from the oracle's at once, or the fit is chaotic "
                         f"from its first epoch at this precision): it certifies nothing")
            continue
        why = (f"its step decisions part from the oracle's at epoch {r.parted}, where "
               f"rounding cannot reach a threshold: not rounding"
               if r.parted == r.compared + 1 and r.first_failure == (r.parted, "rate") else
               f"its step decisions part from the oracle's at epoch {r.parted} (a loss "
               f"within rounding of a threshold)" if r.parted == r.compared + 1 else
               f"after that, rounding alone can move this fit by more than {COMPARABLE:g} "
               f"(relative), more than a comparison can tell from a fault")
        lines.append(f"note: {r.backend} {r.dtype} compared for epochs 1-{r.compared} of "
                     f"{cert.epochs}: {why}")
    if any(r.oracle != "numpy float64" for r in cert.replays):
        lines.append("note: its solver decides from the numbers it reads, so each dtype's "
                     "replays are compared with numpy's generic kernels in that dtype")
    header = (f"{'backend':28s} {'dtype':8s} {'epochs':>9s} {'max weight rel':>14s} "
              f"{'max loss rel':>12s} {'tol':>7s}  {'first crossing':18s} result")
    lines += ["", "over the epochs compared:", header]
    for r in cert.replays:
        if r.error is not None:
            lines.append(f"{r.backend:28s} {r.dtype:8s} could not run: {r.error}  FAIL")
            continue
        n = len(r.weights) if r.compared is None else r.compared
        worst = max((max(row) for row in r.weights[:n]), default=0.0)
        worst_loss = max(r.loss[:n], default=0.0)
        crossing = ("-" if r.first_failure is None
                    else f"epoch {r.first_failure[0]}, {r.first_failure[1]}")
        compared = "all" if r.compared is None else f"1-{r.compared}"
        lines.append(f"{r.backend:28s} {r.dtype:8s} {compared:>9s} {worst:14.3e} "
                     f"{worst_loss:12.3e} {r.tol:7.0e}  {crossing:18s} "
                     f"{'PASS' if r.passed else 'FAIL'}")
        if r.stored is not None:
            worst_stored = max(r.stored.values())
            which = max(r.stored, key=r.stored.get)
            ok = worst_stored <= r.tol
            lines.append(f"{'':28s} {'':8s} stored weights vs this replay: {worst_stored:.3e} "
                         f"({which}) {'PASS' if ok else 'FAIL: the file weights differ'}")
    lines += ["", "per epoch (max over arrays of the weights' relative difference):"]
    for r in cert.replays:
        if r.error is not None or not r.weights:
            continue
        n = len(r.weights)
        shown = sorted({1, 2, n, *(r.first_failure[:1] if r.first_failure else ()),
                        *np.unique(np.geomspace(1, n, epochs_shown).astype(int))})
        parts = [f"{e}: {max(r.weights[e - 1]):.2e}" for e in shown]
        lines.append(f"  {r.backend} {r.dtype}: " + ", ".join(parts))
    if not cert.stored_checked:
        lines.append("\nthe stored weights were not checked (see the note above)")
    partial = [f"{r.backend} {r.dtype} epochs 1-{r.compared}" for r in cert.replays
               if r.error is None and r.compared is not None]
    coverage = (f" (every epoch compared, except: {'; '.join(partial)}; of {cert.epochs})"
                if partial else " (every epoch compared)")
    lines.append(f"\n{'PASS' if cert.passed else 'FAIL'}{coverage}")
    return "\n".join(lines)
