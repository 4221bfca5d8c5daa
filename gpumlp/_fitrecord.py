"""What a fit must remember so that it can be certified: the fit record.

A fit on data held in memory (a fresh ``fit``, a warm start, ``partial_fit``)
keeps, besides its result, what :mod:`gpumlp.certificate` needs to replay it
segment by segment, the way proof-of-learning verifies training (Jia et al.,
IEEE S&P 2021):

* **where it started** (``start``): for a fresh fit, the seed the initial
  weights were drawn from (an int ``random_state``; for ``random_state=None``
  the entropy NumPy drew, recorded; for a ``Generator``, its state before the
  draw), so that a verifier can redraw them; for a continued fit (warm start,
  ``partial_fit``), the digest of the parent model (:func:`model_digest`), so
  that a chain certifies link by link;
* **checkpoints**: the whole training state (weights, the solver's state, the
  batch-order generator, the stopping rule's bookkeeping and early stopping's
  best weights) at epoch 0, every ``k`` epochs (``k`` a power of two, doubled
  whenever they would be more than :data:`MAX_CHECKPOINTS`) and at the last
  epoch;
* **each epoch's decisions**: the rate (``learning_rates_``), the ``"auto"``
  step's accept or refuse and whether its point became the best (and, for a
  call that starts from a kept search, whether it went on with it:
  ``continued``), L-BFGS's step length, whether its search was retried,
  whether it kept its curvature pair (``kept``) and how many loss
  evaluations the iteration took (``evaluations``); the loss and validation
  scores of every epoch are the model's own ``loss_curve_`` and
  ``validation_scores_``;
* **what the numbers were computed with** (:func:`computation`, NumPy fits
  only): gpumlp's, NumPy's and the BLAS's versions, the CPU and the C blocks'
  instruction set, so that a replay on the same can be held to the fit's
  numbers bit for bit;
* **a fingerprint of the data** (:func:`fingerprint`): ``X``, ``y``,
  ``sample_weight`` and ``eval_set``, hashed from their own bytes (BLAKE3
  where the ``blake3`` package is installed, else SHA-256; the digest says
  which).

The record is a dict of plain values and NumPy arrays (:mod:`gpumlp.io`
stores it, and checks it on loading)::

    {"version": 2, "start": {...}, "device": "numpy", "fastpath": True,
     "eval_set": False, "incremental": False, "n_samples": 200, "n_iter": 30,
     "data_sha256": "blake3:..." or "..." or None, "computation": {...} or None,
     "accepted": [...] or None,
     "improved": [...] or None,
     "steps": [...] or None, "retried": [...] or None, "kept": [...] or None,
     "evaluations": [...] or None, "continued": bool or None,
     "checkpoints": [{"epoch": 0, "coefs": [...],
     "intercepts": [...], "state": {...}, "state_arrays": {...}, "rng": {...},
     "history": {...}, "best": [...] or None}, ...]}

Its size: ``len(checkpoints)`` (at most ``MAX_CHECKPOINTS + 2``) times the
weights and the solver's state (none for gd at a fixed rate, the velocities
for sgd, two copies of the weights for Adam, about four for ``"auto"``, up to
21 for L-BFGS), plus a few numbers per epoch.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import os
import platform

import numpy as np

__all__ = ["MAX_CHECKPOINTS", "RECORD_VERSION", "PendingFingerprint", "Recorder",
           "digest_algorithm", "fingerprint", "generator_from_seed", "generator_from_state",
           "model_digest", "seeded_generator"]

RECORD_VERSION = 2

#: A call keeps at most this many checkpoints besides epoch 0 and its last, evenly
#: spaced (a power of two apart): see :class:`Recorder`.
MAX_CHECKPOINTS = 32

#: Rows hashed at a time from an array that is not C-contiguous (bounded memory).
_ROWS_PER_BLOCK = 65536


def _hash_array(digest, name: str, a) -> None:
    """Feed ``a``'s name, dtype, 2-D shape and bytes to ``digest``, without a copy when
    ``a`` is C-contiguous.

    The dtype is normalised to little-endian and a 1-D array is taken as one
    column, so equal data (``y`` of shape ``(n,)`` or ``(n, 1)``, any byte
    order or memory layout) gives the same digest.
    """
    if a is None:
        digest.update(f"{name}:none;".encode())
        return
    a = np.asarray(a)
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    dtype = a.dtype.newbyteorder("<")
    digest.update(f"{name}:{dtype.str}:{tuple(a.shape)};".encode())
    if a.dtype != dtype:
        a = a.astype(dtype)
    if a.flags.c_contiguous:
        digest.update(memoryview(a).cast("B"))
        return
    for start in range(0, a.shape[0], _ROWS_PER_BLOCK):
        digest.update(memoryview(np.ascontiguousarray(a[start:start + _ROWS_PER_BLOCK]))
                      .cast("B"))


#: The data digest's two definitions, by algorithm: the prefix its text starts
#: with and the version string hashed first. SHA-256 was the only one until
#: issue 23 (its digests are bare hex, as files hold them); BLAKE3 does the same
#: job at 2.6x less CPU here (and more on CPUs without SHA instructions), and
#: hashes on every core (``scripts/PERF_NOTES.md``).
_DIGESTS = {"blake3": ("blake3:", b"gpumlp-data-3;"), "sha256": ("", b"gpumlp-data-2;")}


def _blake3():
    """The ``blake3`` module, or None where it is not installed (imported at first use)."""
    try:
        import blake3
    except ImportError:
        return None
    return blake3


def digest_algorithm(digest: str) -> str:
    """The algorithm of a data digest :func:`fingerprint` gave: ``"blake3"`` or ``"sha256"``."""
    return "blake3" if digest.startswith(_DIGESTS["blake3"][0]) else "sha256"


def fingerprint(X, y, sample_weight=None, eval_set=None, *, like: str | None = None,
                y_1d: bool | None = None) -> str | None:
    """A cryptographic digest of the data a fit was given, from its own bytes; None for
    non-NumPy data.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_features)
    y : ndarray, shape (n_samples,) or (n_samples, n_outputs)
    sample_weight : ndarray, shape (n_samples,), optional
    eval_set : tuple (X_val, y_val) of ndarrays, optional
    like : str, optional
        A digest this function gave (a fit record's ``data_sha256``): the
        data is hashed by the same algorithm, so that the two compare. By
        default BLAKE3 where the ``blake3`` package is installed, else SHA-256.
    y_1d : bool, optional
        Whether the fit was given ``y`` as ``(n,)``: hashed after the arrays,
        which count ``(n,)`` and ``(n, 1)`` as the same data, because it sets
        the shape ``predict`` answers in (a fit record binds it so). None
        hashes nothing for it, as fingerprints made before it was bound did.

    Returns
    -------
    str or None
        ``"blake3:"`` and the hex digest of BLAKE3 (on every core), or the
        bare hex digest of SHA-256. Each array enters with its name, dtype
        and shape (``y`` as 2-D), then its bytes: a C-contiguous array is
        hashed where it lies, with no copy. Only host (NumPy) data is
        fingerprinted: hashing device data would copy it to the host, which
        a fit never does.

    Raises
    ------
    ValueError
        ``like`` is a BLAKE3 digest and the ``blake3`` package is not installed.
    """
    return _fingerprint(X, y, sample_weight, eval_set, like, every_core=True, y_1d=y_1d)


def _fingerprint(X, y, sample_weight, eval_set, like, every_core, y_1d=None):
    """:func:`fingerprint`; BLAKE3 on one thread unless ``every_core``."""
    parts = [("X", X), ("y", y), ("sample_weight", sample_weight)]
    if eval_set is not None:
        parts += [("X_val", eval_set[0]), ("y_val", eval_set[1])]
    if not all(a is None or isinstance(a, np.ndarray) for _, a in parts):
        return None
    blake3 = _blake3()
    algorithm = digest_algorithm(like) if like is not None else \
        "blake3" if blake3 is not None else "sha256"
    prefix, version = _DIGESTS[algorithm]
    if algorithm == "sha256":
        digest = hashlib.sha256(version)
    elif blake3 is None:
        raise ValueError("The data's fingerprint was made with BLAKE3 (gpumlp-data-3), and "
                         "the blake3 package is not installed here, so it cannot be checked: "
                         "pip install blake3 (a dependency of gpumlp).")
    else:
        digest = blake3.blake3(version,
                               max_threads=blake3.blake3.AUTO if every_core else 1)
    for name, a in parts:
        _hash_array(digest, name, a)
    if y_1d is not None:
        digest.update(f"y_1d:{int(bool(y_1d))};".encode())
    return prefix + digest.hexdigest()


#: Data smaller than this (bytes) is fingerprinted at once; larger data in a thread.
_THREAD_BYTES = 1 << 22


class PendingFingerprint:
    """:func:`fingerprint` computed in a background thread while the fit goes on.

    The estimator starts it before its own checks of the data (its ranges,
    its scale), which are single-threaded passes over the data: on a machine
    with a core to spare, the digest (BLAKE3 on one thread: about 28 ms of
    CPU for 132 MB here, 2.6x less than SHA-256) is ready before the first
    epoch (``scripts/PERF_NOTES.md``). Both ``blake3`` and ``hashlib``
    release the GIL while they hash a large buffer. :meth:`result` waits
    for it (the fit record asks at the end of the fit); small data is
    hashed at once.
    """

    def __init__(self, X, y, sample_weight=None, eval_set=None, y_1d=None):
        import threading

        arrays = [X, y, sample_weight, *(eval_set or ())]
        size = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
        self._digest, self._thread = None, None
        if size < _THREAD_BYTES:
            self._digest = fingerprint(X, y, sample_weight, eval_set, y_1d=y_1d)
            return

        def run():
            self._digest = _fingerprint(X, y, sample_weight, eval_set, None, every_core=False,
                                        y_1d=y_1d)

        self._thread = threading.Thread(target=run, name="gpumlp-fingerprint", daemon=True)
        self._thread.start()

    def result(self) -> str | None:
        """The digest, once computed (None for non-NumPy data)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self._digest


def model_digest(coefs, intercepts) -> str:
    """SHA-256 of a model's weights (dtype, shapes and bytes): what a child fit names.

    Parameters
    ----------
    coefs, intercepts : lists of arrays (any backend; read to the host)
    """
    from .devices import to_numpy

    digest = hashlib.sha256(b"gpumlp-weights-1;")
    for i, a in enumerate([*coefs, *intercepts]):
        _hash_array(digest, str(i), np.ascontiguousarray(to_numpy(a)))
    return digest.hexdigest()


def seeded_generator(random_state):
    """The generator a fresh fit draws from, and how to draw it again.

    Returns
    -------
    rng : numpy.random.Generator
    seed : dict
        ``{"kind": "int", "value": n}`` for an int (or a ``RandomState``, which
        gives one), ``{"kind": "entropy", "value": "..."}`` for ``None`` (the
        entropy NumPy drew, as a decimal string), ``{"kind": "generator",
        "state": {...}}`` for a ``Generator`` (its state before the draw).
    """
    import numbers

    if random_state is None:
        entropy = np.random.SeedSequence().entropy
        return np.random.default_rng(entropy), {"kind": "entropy", "value": str(entropy)}
    if isinstance(random_state, np.random.RandomState):
        random_state = int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng(int(random_state)), {"kind": "int",
                                                          "value": int(random_state)}
    if isinstance(random_state, np.random.Generator):
        return random_state, {"kind": "generator",
                              "state": copy.deepcopy(random_state.bit_generator.state)}
    raise TypeError(
        f"random_state must be None, an int or a numpy Generator, got {random_state!r}.")


def generator_from_seed(seed: dict) -> np.random.Generator:
    """The generator :func:`seeded_generator` described by ``seed``, before any draw."""
    if seed["kind"] == "int":
        return np.random.default_rng(int(seed["value"]))
    if seed["kind"] == "entropy":
        return np.random.default_rng(int(seed["value"]))
    return generator_from_state(seed["state"])


def generator_from_state(state: dict) -> np.random.Generator:
    """A Generator whose bit generator has ``state`` (as ``bit_generator.state`` gives it).

    Raises
    ------
    ValueError
        For an unknown bit generator or a malformed state.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"):
        raise ValueError(f"unknown bit generator {name!r:.40}")
    bit_generator = getattr(np.random, name)()
    try:
        bit_generator.state = copy.deepcopy(state)
    except (TypeError, KeyError, OverflowError) as exc:
        raise ValueError(f"not a {name} state ({exc})") from None
    return np.random.Generator(bit_generator)


@functools.cache
def _machine() -> tuple:
    """This process's CPU, cores and BLAS (fixed once NumPy has loaded its BLAS), and the
    BLAS libraries' controllers (their thread counts are read at each fit)."""
    from threadpoolctl import ThreadpoolController

    from .fastpath import calibration

    libs = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    # NumPy's own BLAS (a wheel's, in numpy.libs), where it can be told from the
    # others a process may load (SciPy's, say, once imported: not NumPy's numbers)
    own = [lib for lib in libs
           if os.path.basename(os.path.dirname(lib.filepath or "")).startswith("numpy")]
    libs = own or libs
    blas = [f"{lib.internal_api} {lib.version} {getattr(lib, 'architecture', None) or ''}"
            .strip() for lib in libs]
    return {"cpu": calibration._cpu_model(), "machine": platform.machine(),
            "cores": os.cpu_count() or 1, "blas": blas, "numpy_simd": _numpy_simd()}, libs


def _numpy_simd() -> list | None:
    """The instruction sets NumPy's own loops dispatch to here (its ``exp``, ``tanh``,
    ``log1p`` differ in their last bits between them; ``NPY_DISABLE_CPU_FEATURES``
    changes them, and two CPUs of one model name may offer different ones)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:                          # (NumPy 1)
        try:
            from numpy.core import _multiarray_umath as umath
        except ImportError:
            return None
    features = getattr(umath, "__cpu_features__", None)
    targets = getattr(umath, "__cpu_dispatch__", None)
    if not isinstance(features, dict) or targets is None:
        return None
    return [str(t) for t in targets if features.get(t)]


def computation(device_name: str, use_fastpath: bool) -> dict | None:
    """What a NumPy fit's numbers depend on besides its data, parameters and start.

    Two runs on NumPy with the same key compute alike, bit for bit: the same
    gpumlp, NumPy and BLAS (its version and the core type it chose), on the
    same CPU and cores (how many threads the fast path takes), with NumPy's
    loops dispatched to the same instruction sets, with the same
    C blocks (the instruction set and the work line that chooses them); and
    the BLAS's threads as the fit found them (``blas_threads``: a product's
    bits depend on how many threads split it), which the certificate's replay
    takes on. The replay that computes as the fit did is then compared bit
    for bit. None for other backends (their thread pools and kernels are not
    pinned here).

    Parameters
    ----------
    device_name : str
        The fit's backend (``Device.name``).
    use_fastpath : bool
        Whether the fit's fast paths were on.

    Returns
    -------
    dict or None
    """
    if device_name != "numpy":
        return None
    from ._version import __version__

    isa = max_work = None
    if use_fastpath:
        from .fastpath import calibration, cblocks

        try:
            isa = cblocks.chosen_isa()
            max_work = None if isa is None else calibration.max_work(isa)
        except ValueError:          # (a bad GPUMLP_SIMD: the fit raised it already)
            isa = "invalid"
    machine, libs = _machine()
    return {"gpumlp": __version__, "numpy": np.__version__, **machine, "isa": isa,
            "max_work": max_work, "blas_threads": [int(lib.num_threads) for lib in libs]}


class Recorder:
    """Keeps a call's record as it runs: the fit callback's companion.

    Built when the call starts (checkpoint 0: the state the first epoch
    starts from); :meth:`on_epoch` is called once each epoch is wholly done
    (the trainer's callback); :meth:`finish` gives the record. Between
    checkpoints it keeps references only (the trainer's values are
    immutable), so nothing is read from the device but at checkpoints.
    """

    def __init__(self, trainer, rng, *, start: dict, device, data_sha256, n_samples: int,
                 eval_set: bool, incremental: bool, y_1d: bool | None = None):
        self.trainer, self.rng = trainer, rng
        # Every epoch at first; each time the checkpoints outnumber MAX_CHECKPOINTS,
        # every other one goes and the spacing doubles: segments stay about
        # n_iter / MAX_CHECKPOINTS long, however long the fit turns out.
        self.every = 1
        self.header = {"version": RECORD_VERSION, "start": start, "device": device.name,
                       "fastpath": bool(trainer.network.fastpath), "eval_set": bool(eval_set),
                       "incremental": bool(incremental), "n_samples": int(n_samples),
                       "data_sha256": data_sha256,
                       "computation": computation(device.name, bool(trainer.network.fastpath))}
        if y_1d is not None:   # how predict shapes its answer: y was (n,), or (n, k)
            self.header["y_1d"] = bool(y_1d)
        self.checkpoints = [self._keep(0, self._snapshot())]
        self.pending = None
        self.accepted, self.improved, self.monotone, self.steps = [], [], [], []
        self.retried, self.kept, self.evaluations = [], [], []
        state = trainer.state
        # L-BFGS: loss evaluations so far, to count each iteration's.
        self.n_fun = int(getattr(state, "n_fun", 0))
        # "auto": a call that starts from a kept search (a finite loss) chooses to go
        # on with it or to start afresh (AutoGD.goes_on); a fresh state has no choice.
        loss = getattr(state, "loss", None)
        self.choice = hasattr(state, "continued") and isinstance(loss, float) and \
            math.isfinite(loss)
        self.continued = None

    def _snapshot(self):
        t = self.trainer
        history = {"best_loss": t.best_loss, "best_validation_score": t.best_validation_score,
                   "no_improvement_count": t.no_improvement_count,
                   "samples_seen": t.samples_seen}
        best = None if t.best_params is None else list(t.best_params)
        # bit_generator.state builds a new dict at each read: no copy needed.
        return (list(t.params), t.state, self.rng.bit_generator.state, history, best)

    def _keep(self, epoch, snapshot):
        """A checkpoint: ``(epoch, snapshot)`` while the weights are host NumPy arrays
        (immutable references, materialised by :meth:`finish` only if the
        checkpoint survives the thinning), else materialised on the host now,
        so that no device memory is held for it."""
        if all(isinstance(p, np.ndarray) for p in snapshot[0]):
            return (epoch, snapshot)
        return self._materialise(epoch, snapshot)

    def _materialised(self, checkpoint) -> dict:
        return checkpoint if isinstance(checkpoint, dict) else self._materialise(*checkpoint)

    @staticmethod
    def _epoch(checkpoint) -> int:
        return checkpoint["epoch"] if isinstance(checkpoint, dict) else checkpoint[0]

    def _materialise(self, epoch, snapshot) -> dict:
        from .devices import to_numpy
        from .solvers import plain_numbers, state_to_arrays

        params, state, rng, history, best = snapshot
        n = self.trainer.network.n_coefs
        host = [np.array(to_numpy(p)) for p in params]
        template = self.trainer.solver.init_state(params)
        arrays, description = state_to_arrays(plain_numbers(state, template))
        return {"epoch": int(epoch), "coefs": host[:n], "intercepts": host[n:],
                "state": description,
                "state_arrays": {k: np.array(to_numpy(a)) for k, a in arrays.items()},
                "rng": {"numpy_generator": rng},
                "history": {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                            for k, v in history.items()},
                "best": None if best is None else [np.array(to_numpy(p)) for p in best]}

    def on_epoch(self) -> None:
        """Record the epoch just done (call it from the fit callback)."""
        t = self.trainer
        epoch = len(t.loss_curve) - t.call_start
        state = t.state
        if hasattr(state, "accepted") and hasattr(state, "next_rate"):
            self.accepted.append(bool(state.accepted))
            self.improved.append(bool(state.improved))
            self.monotone.append(bool(state.monotone))
            if self.choice and self.continued is None:
                self.continued = bool(state.continued)
        if hasattr(state, "step") and hasattr(state, "changes"):
            self.steps.append(float(state.step))
            self.retried.append(bool(state.retried))
            self.kept.append(bool(state.kept))
            self.evaluations.append(int(state.n_fun) - self.n_fun)
            self.n_fun = int(state.n_fun)
        snapshot = self._snapshot()
        if epoch % self.every == 0:
            kept = self._keep(epoch, snapshot)
            self.checkpoints.append(kept)
            self.pending = None
            if len(self.checkpoints) - 1 > MAX_CHECKPOINTS:
                self.every *= 2
                self.checkpoints = [c for c in self.checkpoints
                                    if self._epoch(c) % self.every == 0]
                if epoch % self.every:
                    # Thinned out, this epoch may still be the last: finish keeps
                    # it then (a fit of 33 or 66 epochs lost it, and its file
                    # would not load back, so save refused it).
                    self.pending = kept
        else:
            self.pending = (epoch, snapshot)

    def finish(self, n_iter: int) -> dict:
        """The record, once the call has run ``n_iter`` epochs and ended normally."""
        if self.pending is not None:
            self.checkpoints.append(self.pending)
            self.pending = None
        self.checkpoints = [self._materialised(c) for c in self.checkpoints]
        header = dict(self.header)
        if isinstance(header["data_sha256"], PendingFingerprint):
            header["data_sha256"] = header["data_sha256"].result()
        return dict(header, n_iter=int(n_iter),
                    accepted=self.accepted if self.accepted else None,
                    improved=self.improved if self.improved else None,
                    monotone=self.monotone if self.monotone else None,
                    steps=self.steps if self.steps else None,
                    retried=self.retried if self.retried else None,
                    kept=self.kept if self.kept else None,
                    evaluations=self.evaluations if self.evaluations else None,
                    continued=self.continued,
                    checkpoints=self.checkpoints)
