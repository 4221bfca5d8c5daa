"""ReLU's kinks: a replay that rounds otherwise may take a unit's other side.

An L-BFGS fit of a ReLU network converges to points where some rows'
pre-activations sit at 0 (the loss has its minimum on the kink), so a replay
on another backend, whose sums round otherwise, finds such a unit on the
other side, its derivative 1 instead of 0, and the rest of the segment moves
by a finite amount. The certificate finds the first point of each segment
where a unit is within rounding of its kink (on its float64 oracle run) and
compares such a replay only up to there; the fit's own computation judges
the whole segment. Also here: the reordered sources behind the extra
rounding samples a certificate takes when another backend replays.
"""

import warnings

import numpy as np
import pytest
from _faults import plant_gradient_fault

from gpumlp import MLPRegressor, save
from gpumlp.certificate import certify, format_certificate

#: The data and seed of the fit below: NumPy float32, 138 L-BFGS iterations.
SEED = 0


def _data():
    rng = np.random.RandomState(SEED)
    X = rng.randn(40, 3)
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 - X[:, 2] + 0.1 * rng.randn(40)
    return X, y


@pytest.fixture(scope="module")
def relu_fit(tmp_path_factory):
    X, y = _data()
    model = MLPRegressor((6,), activation="relu", solver="lbfgs", max_iter=400,
                         random_state=SEED, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    path = tmp_path_factory.mktemp("kinks") / "m.npz"
    save(model, path)
    return path, X, y


def _other_backends():
    names = []
    for name in ("torch", "jax"):
        try:
            __import__(name)
            names.append(name)
        except ImportError:
            pass
    if not names:
        pytest.skip("needs torch or jax: the crossing is another backend's")
    return names


def test_an_honest_relu_lbfgs_fit_that_crosses_a_kink_passes_on_every_backend(relu_fit):
    """Seed 0 (138 iterations): before the kinks were allowed for, torch's and JAX's
    float32 replays FAILed its last segment (epochs 137-138: the gradient in the
    L-BFGS memory off by 0.018 against a tolerance of 8e-6, "the step length 1 is
    not the line search's (None) nor a strong-Wolfe step"), and torch's epochs
    121-136 too (here, 2026-12-06, torch 2.x and JAX on the 2-core x86 VM)."""
    path, X, y = relu_fit
    others = _other_backends()
    cert = certify(path, X, y, backends=["numpy", *others], dtypes=("float32",))
    assert cert.outcome == "PASS", format_certificate(cert)
    for replay in cert.replays:
        if replay.backend == "numpy":
            assert replay.partial == []      # the fit's own computation: judged whole
        else:
            assert replay.partial, replay    # this fit's minimum sits on kinks
            assert any(f"{replay.backend} float32:" in n and "within rounding of its kink"
                       in n for n in cert.notes), cert.notes
    assert "compared up to a ReLU kink" in format_certificate(cert)


def test_a_fault_before_the_kink_still_fails_the_other_backend(relu_fit, monkeypatch):
    """A 1e-3 fault in torch's float32 gradient from its first evaluation: the
    segments compare up to their first near-kink point, and the first ones
    have none."""
    pytest.importorskip("torch")
    path, X, y = relu_fit
    plant_gradient_fault(monkeypatch, "torch", 1e-3)
    cert = certify(path, X, y, backends=["numpy", "torch"], dtypes=("float32",))
    assert cert.outcome == "FAIL", format_certificate(cert)
    assert [(r.backend, r.passed) for r in cert.replays] == [("numpy", True),
                                                            ("torch", False)]
    assert cert.replays[1].failures[0].startswith("epochs 1-8:"), cert.replays[1].failures


def test_without_the_fits_own_computation_the_kinks_cannot_be_certified(relu_fit):
    """With the fast paths off here (the fit ran with them on), no replay computes as
    the fit did: the segments' tails past a kink are judged by none, so the outcome
    is "cannot certify", never PASS."""
    from gpumlp import fastpath

    path, X, y = relu_fit
    others = _other_backends()
    with fastpath.disabled():
        cert = certify(path, X, y, backends=["numpy", *others], dtypes=("float32",))
    assert cert.outcome == "CANNOT", format_certificate(cert)
    assert any("the fit's own computation" in m for m in cert.missing), cert.missing


@pytest.mark.parametrize("how", ["reversed", "rolled", "permuted"])
@pytest.mark.parametrize("batch_size", [7, 40])
def test_a_reordered_source_sums_the_same_batches_in_another_order(how, batch_size):
    """The extra rounding samples (certificate._reordered): every batch holds the fit's
    rows, in another order, and the generator draws what the fit's drew."""
    from gpumlp.certificate import _reordered
    from gpumlp.devices import Device
    from gpumlp.sources import ArraySource

    X, y = _data()
    source = ArraySource.from_arrays(X, y, Device("cpu"), "float64")
    other = _reordered(source, how)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    plain, reordered = source.batches(rng_a, batch_size, True), other.batches(rng_b, batch_size,
                                                                               True)
    assert rng_a.bit_generator.state == rng_b.bit_generator.state
    assert [b[:2] for b in plain] == [b[:2] for b in reordered]
    for a, b in zip(plain, reordered):
        rows_a, rows_b = source.rows(a)[0], other.rows(b)[0]
        assert sorted(map(tuple, rows_a)) == sorted(map(tuple, rows_b))
        if len(rows_a) > 1:
            assert not np.array_equal(rows_a, rows_b)


def test_one_certificate_after_another_probes_its_own_rows(tmp_path):
    """A compiled step is cached by the solver's value, as a closure over the solver it
    was made with: the next certificate's oracle replay called the previous one's kink
    probe, on the previous fit's rows (a matmul shape error, found by the laws' long
    run), and logged into its decisions. Full-batch Adam, whose step is cached."""
    for features in (2, 1, 3):
        rng = np.random.default_rng(features)
        X = rng.standard_normal((30, features))
        y = X[:, 0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MLPRegressor((3,), activation="relu", solver="adam", batch_size=1000,
                                 max_iter=3, random_state=0).fit(X, y)
        path = tmp_path / f"m{features}.npz"
        save(model, path)
        cert = certify(path, X, y, backends=["numpy"], dtypes=("float64",))
        assert cert.outcome == "PASS", format_certificate(cert)
