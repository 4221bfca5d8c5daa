"""The data's fingerprint in the fit record (issue 23 section 3): its two definitions.

BLAKE3 (``"blake3:"`` and the hex digest, version ``gpumlp-data-3``) where the
``blake3`` package is installed, else SHA-256 (bare hex, ``gpumlp-data-2``,
what every earlier file holds). Each definition is pinned here against the
hash library called by hand on the documented framing, and a file of either
kind certifies wherever its algorithm can be computed.
"""

from __future__ import annotations

import hashlib
import re
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, save
from gpumlp import _fitrecord as fitrecord
from gpumlp._fitrecord import PendingFingerprint, digest_algorithm, fingerprint
from gpumlp.certificate import certify, format_certificate
from gpumlp.io import ModelFileError, load, read_metadata

HAS_BLAKE3 = fitrecord._blake3() is not None


@pytest.fixture(params=["blake3", "sha256"])
def algorithm(request, monkeypatch):
    """Each definition in turn: SHA-256 as where blake3 is not installed."""
    if request.param == "blake3" and not HAS_BLAKE3:
        pytest.skip("the blake3 package is not installed here (pip install blake3)")
    if request.param == "sha256":
        monkeypatch.setattr(fitrecord, "_blake3", lambda: None)
    return request.param


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3_000, 5)).astype(np.float32)
    return X, rng.standard_normal(3_000)


def by_hand(algorithm, X, y):
    """The documented framing fed to the hash library directly: the oracle."""
    if algorithm == "blake3":
        import blake3

        digest, prefix = blake3.blake3(b"gpumlp-data-3;"), "blake3:"   # one thread
    else:
        digest, prefix = hashlib.sha256(b"gpumlp-data-2;"), ""
    for name, a in (("X", X), ("y", y.reshape(-1, 1))):
        digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        digest.update(np.ascontiguousarray(a).tobytes())
    digest.update(b"sample_weight:none;")
    return prefix + digest.hexdigest()


def test_each_definition_is_its_hash_of_the_documented_framing(rows, algorithm):
    X, y = rows
    digest = fingerprint(X, y)
    assert digest == by_hand(algorithm, X, y)
    assert re.fullmatch(("blake3:" if algorithm == "blake3" else "") + "[0-9a-f]{64}", digest)
    assert digest_algorithm(digest) == algorithm
    # Equal data in any layout or byte order: the same digest; any other bytes: another.
    assert fingerprint(np.asfortranarray(X), y[:, None]) == digest
    assert fingerprint(X.astype(">f4"), y) == digest
    assert fingerprint(X.astype(np.float64), y) != digest
    changed = X.copy()
    changed[1234, 3] = np.nextafter(changed[1234, 3], np.float32(1))
    assert fingerprint(changed, y) != digest
    assert fingerprint(X, y, eval_set=(X[:10], y[:10])) != digest


def test_a_digest_is_recomputed_by_its_own_algorithm(rows):
    """``like=``: an old SHA-256 digest stays comparable where BLAKE3 is the default."""
    X, y = rows
    old = by_hand("sha256", X, y)
    assert fingerprint(X, y, like=old) == old
    if HAS_BLAKE3:
        new = by_hand("blake3", X, y)
        assert fingerprint(X, y) == new and fingerprint(X, y, like=new) == new


def test_a_blake3_digest_without_blake3_is_a_clear_error(rows, monkeypatch):
    X, y = rows
    monkeypatch.setattr(fitrecord, "_blake3", lambda: None)
    with pytest.raises(ValueError, match="pip install blake3"):
        fingerprint(X, y, like="blake3:" + "0" * 64)


def test_large_data_is_hashed_beside_the_fit_to_the_same_digest(algorithm):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((600_000, 2))            # 9.6 MB, above the thread's 4 MB
    y = rng.standard_normal(600_000)
    pending = PendingFingerprint(X, y)
    assert pending._thread is not None
    assert pending.result() == fingerprint(X, y) == by_hand(algorithm, X, y)
    assert digest_algorithm(pending.result()) == algorithm


def _fit(X, y):
    model = MLPRegressor((5,), solver="gd", learning_rate_init=0.05, max_iter=6,
                         random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y)


@pytest.mark.parametrize("fitted_with", ["blake3", "sha256"])
def test_a_file_of_either_definition_certifies(tmp_path, rows, fitted_with, monkeypatch):
    """A file saved before BLAKE3 (SHA-256) certifies where BLAKE3 is the default, and
    the other way round; other data fails against either."""
    if not HAS_BLAKE3:
        pytest.skip("the blake3 package is not installed here (pip install blake3)")
    X, y = rows[0][:200].astype(np.float64), rows[1][:200]
    with monkeypatch.context() as patch:
        if fitted_with == "sha256":
            patch.setattr(fitrecord, "_blake3", lambda: None)
        path = tmp_path / "model.npz"
        save(_fit(X, y), path)
    digest = read_metadata(path)["fit_record"]["data_sha256"]
    assert digest_algorithm(digest) == fitted_with
    load(path)                                       # the file's check accepts it
    cert = certify(path, X, y, backends=["numpy"], dtypes=("float64",))
    assert cert.outcome == "PASS", format_certificate(cert)
    other = y.copy()
    other[5] += 1e-9
    assert certify(path, X, other, backends=["numpy"], dtypes=("float64",)).outcome == "FAIL"


def test_a_malformed_blake3_digest_is_a_damaged_file(tmp_path, rows):
    import json
    import zipfile

    X, y = rows[0][:200].astype(np.float64), rows[1][:200]
    path = tmp_path / "model.npz"
    save(_fit(X, y), path)
    metadata = read_metadata(path)
    metadata["fit_record"]["data_sha256"] = "blake3:" + "g" * 64
    forged = tmp_path / "forged.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for name in src.namelist():
            if name != "metadata.npy":
                dst.writestr(name, src.read(name))
        with dst.open("metadata.npy", "w") as handle:
            np.save(handle, np.array(json.dumps(metadata)))
    with pytest.raises(ModelFileError, match="data_sha256"):
        load(forged)
