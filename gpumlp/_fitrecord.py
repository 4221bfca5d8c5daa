"""What a fit must remember so that it can be replayed: the fit record.

A fresh ``fit`` (not a warm start, not ``partial_fit`` on fitted weights)
keeps, besides its result, what a replay needs (:mod:`gpumlp.certificate`):
the initial weights, the state of the random generator after they were drawn
(it then draws every epoch's batch order and the validation split), the
device (the dtype is the weights' own), whether the fast path ran, whether an ``eval_set`` was
given, the number of epochs, and a fingerprint of the training data. The
hyper-parameters are the estimator's own. :mod:`gpumlp.io` stores the record
in a model file and checks it on loading.

The record is a dict of plain values plus two lists of NumPy arrays::

    {"version": 1, "rng_state": {...}, "device": "numpy", "fastpath": True,
     "eval_set": False, "n_samples": 200, "n_iter": 30, "data_sha256": "..." or None,
     "coefs": [...], "intercepts": [...]}
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np

__all__ = ["RECORD_KEYS", "RECORD_VERSION", "fingerprint", "start_record"]

RECORD_VERSION = 1

#: The plain (JSON) keys of a record, with their types; the arrays are
#: ``coefs`` and ``intercepts``.
RECORD_KEYS = {"version": int, "rng_state": dict, "device": str, "fastpath": bool,
               "eval_set": bool, "n_samples": int, "n_iter": int,
               "data_sha256": (str, type(None))}


def fingerprint(X, y) -> str | None:
    """SHA-256 of ``X`` and ``y`` as float64 C-ordered bytes, or None for non-NumPy arrays.

    Only host (NumPy) data is fingerprinted: hashing device data would copy
    it to the host, which a fit never does.
    """
    if not (isinstance(X, np.ndarray) and isinstance(y, np.ndarray)):
        return None
    digest = hashlib.sha256()
    for a in (X, y):
        a = np.ascontiguousarray(a, dtype=np.float64)
        digest.update(repr(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def start_record(coefs, intercepts, rng, *, device, fastpath, eval_set, n_samples,
                 data_sha256) -> dict:
    """A record at the start of a fit, after the initial weights were drawn from ``rng``.

    ``n_iter`` is filled in when the fit ends.
    """
    return {"version": RECORD_VERSION,
            "rng_state": {"numpy_generator": copy.deepcopy(rng.bit_generator.state)},
            "device": device.name, "fastpath": bool(fastpath),
            "eval_set": bool(eval_set), "n_samples": int(n_samples), "n_iter": 0,
            "data_sha256": data_sha256,
            "coefs": [np.array(W, copy=True) for W in coefs],
            "intercepts": [np.array(b, copy=True) for b in intercepts]}
