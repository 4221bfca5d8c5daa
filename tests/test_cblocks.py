"""The C blocks of full-batch descent on NumPy (issue 23), against the generic kernels.

Each instruction set the extension was compiled for is tested where this CPU
runs it, and skipped with the reason where it does not, or where the
extension was not built (a machine without a compiler). With
``GPUMLP_REQUIRE_CBLOCKS=1`` in the environment (``.ci/run`` sets it) a
missing extension is an error, not a skip, so CI cannot pass without
testing it.
"""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, TrainingDivergedError, fastpath, kernels
from gpumlp.activations import get_activation
from gpumlp.agreement import TOLERANCES
from gpumlp.fastpath import calibration, cblocks
from gpumlp.initialization import glorot_uniform

BUILT = cblocks._module() is not None
RUNS = cblocks._module().isas() if BUILT else ()

if os.environ.get("GPUMLP_REQUIRE_CBLOCKS") == "1" and not BUILT:
    raise RuntimeError("GPUMLP_REQUIRE_CBLOCKS=1, but gpumlp.fastpath._cblocks is not built "
                       "(pip install -e . with a C compiler)")


@pytest.fixture(autouse=True)
def no_calibration(tmp_path, monkeypatch):
    """The measured default line, whatever this machine's calibration file or override."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(calibration.ENVIRONMENT, raising=False)
    monkeypatch.setattr(calibration, "_CHOSEN", {})


@pytest.fixture(params=cblocks.ISAS)
def isa(request):
    if not BUILT:
        pytest.skip("the C extension gpumlp.fastpath._cblocks is not built here")
    if request.param not in RUNS:
        pytest.skip(f"this CPU does not run {request.param} (it runs {', '.join(RUNS)})")
    return request.param


@pytest.fixture
def runs(monkeypatch):
    """The block lengths that :class:`CBlocks` ran, in order."""
    seen, real = [], cblocks.CBlocks.run

    def run(self, params, rates):
        seen.append((self.isa, len(rates)))
        return real(self, params, rates)

    monkeypatch.setattr(cblocks.CBlocks, "run", run)
    return seen


def _problem(n, f, h, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    y = rng.standard_normal((n, k))
    coefs, intercepts = glorot_uniform([f, h, k], rng)
    return X, y, coefs + intercepts


def _generic_epochs(X, y, params, activation, alpha, rates):
    """Each epoch's (loss at the old parameters, new parameters), by the generic kernels."""
    out = []
    n, k = y.shape
    for rate in rates:
        loss, coef_grads, intercept_grads = kernels.loss_and_grads(X, y, params[:2], params[2:],
                                                                   activation)
        loss, coef_grads = kernels.add_l2(loss, coef_grads, params[:2], alpha, n, k)
        params = [p - rate * g for p, g in zip(params, coef_grads + intercept_grads)]
        out.append((float(loss), params))
    return out


# Hidden widths around the padding (16 float32, 8 float64 per 64-byte line),
# rows around the 64-row blocks and the four-row tiles, features around the
# four-column tiles; 4099 rows: two parts, one per thread.
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
@pytest.mark.parametrize("n, f, h, k", [(301, 6, 9, 1), (64, 4, 16, 3), (130, 1, 33, 2),
                                        (3, 5, 1, 1), (4099, 5, 40, 2)])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_each_epoch_agrees_with_the_generic_step(isa, dtype, activation, n, f, h, k, alpha):
    X, y, params = _problem(n, f, h, k)
    rates = [0.5, 0.25, 1.0]
    want = _generic_epochs(X, y, params, activation, alpha, rates)
    blocks = cblocks.CBlocks(X.astype(dtype), y.astype(dtype), h, get_activation(activation),
                             alpha, isa)
    got = blocks.run([p.astype(dtype) for p in params], rates)
    # Normwise relative, as the agreement suite compares a step's loss and
    # gradients (TOLERANCES: a few units of the dtype's eps times the sums'
    # lengths). Each epoch's step p_new - p_old is rate * gradient, compared
    # within that tolerance, plus the rounding of p_old and of the
    # subtraction: 2 eps |p_old| (it starts from the dtype's rounding of the
    # float64 start, which the reference does not see: that is in there too).
    tol = TOLERANCES[("kernel", dtype)]
    eps = float(np.finfo(dtype).eps)
    before_got, before_want = [p.astype(dtype) for p in params], params
    for (new, loss, finite), (want_loss, want_new) in zip(got, want):
        assert new[0].dtype == np.dtype(dtype) and loss.dtype == np.dtype(dtype)
        assert finite == 1
        assert abs(float(loss) - want_loss) <= tol * abs(want_loss)
        for p, q, p0, q0 in zip(new, want_new, before_got, before_want):
            assert p.shape == q.shape
            step = p.astype(np.float64) - p0.astype(np.float64)
            want_step = q - q0
            bound = tol * np.linalg.norm(want_step) + 2 * eps * np.linalg.norm(q0) + 1e-300
            assert np.linalg.norm(step - want_step) <= bound
        before_got, before_want = new, want_new


def test_two_threads_give_the_same_numbers_every_time(isa):
    """The rows' two parts are added in a fixed order: no race, no run-to-run change."""
    X, y, params = _problem(9000, 6, 24, 1)
    blocks = cblocks.CBlocks(X.astype(np.float32), y.astype(np.float32), 24,
                             get_activation("sigmoid"), 0.1, isa)
    start = [p.astype(np.float32) for p in params]
    first = blocks.run(start, [0.3] * 8)
    for _ in range(3):
        again = blocks.run(start, [0.3] * 8)
        for (p, loss, _), (q, loss_again, _) in zip(first, again):
            assert loss == loss_again
            for u, v in zip(p, q):
                np.testing.assert_array_equal(u, v)


def test_instruction_sets_agree_with_each_other():
    """Every variant this CPU runs computes the same fit up to rounding (not bit for bit:
    the vector widths sum in different orders)."""
    if len(RUNS) < 2:
        pytest.skip(f"this CPU runs {len(RUNS)} of the compiled instruction sets")
    X, y, params = _problem(500, 7, 20, 2)
    results = []
    for isa in RUNS:
        blocks = cblocks.CBlocks(X, y, 20, get_activation("sigmoid"), 0.1, isa)
        results.append(blocks.run(params, [0.3] * 10)[-1][0])
    for other in results[1:]:
        for p, q in zip(results[0], other):
            np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_nan_and_overflow_propagate(isa):
    """A NaN parameter gives a NaN loss and a 0 flag; z so large that exp would
    overflow gives the activation's limits, not NaN."""
    X, y, params = _problem(50, 3, 5, 1)
    blocks = cblocks.CBlocks(X, y, 5, get_activation("sigmoid"), 0.0, isa)
    bad = [p.copy() for p in params]
    bad[0][1, 2] = np.nan
    (_, loss, finite), = blocks.run(bad, [0.1])
    assert np.isnan(loss) and finite == 0
    for name in ("sigmoid", "tanh"):
        huge = [p * 1e6 for p in params]
        blocks = cblocks.CBlocks(X, y, 5, get_activation(name), 0.0, isa)
        (_, loss, finite), = blocks.run(huge, [0.0])
        acts = kernels.forward(X, huge[:2], huge[2:], name)
        want = float(kernels.squared_error(y, acts[-1]))
        assert np.isfinite(loss) and abs(loss - want) <= 1e-12 * want


def fit(X, y, *, simd=None, dtype="float64", **params):
    """A fit of plain full-batch descent; ``simd`` a value of GPUMLP_SIMD for it."""
    params = {"hidden_layer_sizes": (8,), "solver": "gd", "learning_rate_init": 0.1,
              "device": "cpu", "random_state": 0, "max_iter": 3000, "tol": 1e-3,
              "n_iter_no_change": 5, "dtype": dtype, **params}
    with warnings.catch_warnings(), cblocks.simd(simd or cblocks._SIMD):
        warnings.simplefilter("ignore")
        return MLPRegressor(**params).fit(X, y)


@pytest.mark.parametrize("params", [
    dict(),
    dict(alpha=0.3, activation="tanh"),
    dict(solver="sgd", momentum=0.0, batch_size=10**4, learning_rate="invscaling",
         power_t=0.2, learning_rate_init=0.3, tol=1e-4),
    dict(solver="sgd", momentum=0.0, batch_size=10**4, learning_rate="adaptive",
         early_stopping=True, learning_rate_init=0.3, tol=1e-4),
], ids=["gd", "penalty-tanh", "invscaling", "adaptive-early-stopping"])
def test_a_fit_on_the_c_blocks_agrees_with_the_numpy_path(sine_rows, long_blocks, runs, isa,
                                                         dtype, params):
    """The stopping rule stays exact: the same epoch, within the training tolerance."""
    X, y = sine_rows
    c = fit(X, y, simd=isa, dtype=dtype, **params)
    assert runs and {r[0] for r in runs} == {isa}
    if "early_stopping" not in params:
        assert 64 in {r[1] for r in runs}            # whole 64-epoch blocks ran
    del runs[:]
    ref = fit(X, y, simd="none", dtype=dtype, **params)
    assert not runs
    tol = TOLERANCES[("training", dtype)]
    # float32 may stop a few epochs apart: the rule compares losses that
    # differ by rounding. float64 must stop at the same epoch.
    if dtype == "float64":
        assert c.n_iter_ == ref.n_iter_
        np.testing.assert_allclose(c.loss_curve_, ref.loss_curve_, rtol=tol)
        for p, q in zip(c.coefs_ + c.intercepts_, ref.coefs_ + ref.intercepts_):
            assert np.linalg.norm(p - q) <= tol * np.linalg.norm(q)
    else:
        assert abs(c.n_iter_ - ref.n_iter_) <= 0.05 * ref.n_iter_
        m = min(c.n_iter_, ref.n_iter_)
        np.testing.assert_allclose(c.loss_curve_[:m], ref.loss_curve_[:m], rtol=tol)
    assert 10 < c.n_iter_ < 3000


def test_a_fit_that_diverges_raises_as_on_the_numpy_path(sine_rows, long_blocks, runs, isa):
    X, y = sine_rows
    # A rate so large that the weights blow up within a hundred epochs, the
    # same epoch on either path (near 0.7 the loss oscillates for hundreds of
    # epochs first, and rounding decides when it ends).
    params = dict(learning_rate_init=5.0, activation="tanh", tol=0.0, n_iter_no_change=10**6,
                  max_iter=500, dtype="float64")
    kept = []
    for simd in (isa, "none"):
        model = MLPRegressor((8,), solver="gd", device="cpu", random_state=0, **params)
        with warnings.catch_warnings(), pytest.raises(TrainingDivergedError), \
                cblocks.simd(simd):
            warnings.simplefilter("ignore")
            model.fit(X, y * 100)
        kept.append(model)
    assert runs
    n = kept[0].n_iter_
    assert n == kept[1].n_iter_ and n > 10 and n + 1 not in (64, 128, 192, 256)
    # The weights kept are finite on both. Once the tanh saturates (from
    # about epoch 8 here) 1 - t^2 is ill-conditioned, and any two tanh
    # implementations part; the curves are compared before that.
    for model in kept:
        assert all(np.all(np.isfinite(p)) for p in model.coefs_ + model.intercepts_)
    np.testing.assert_allclose(kept[0].loss_curve_[:6], kept[1].loss_curve_[:6],
                               rtol=TOLERANCES[("training", "float64")])


@pytest.mark.parametrize("params", [
    dict(learning_rate_init="auto"),                         # reads the host each step
    dict(solver="sgd", momentum=0.9, batch_size=10**4),      # momentum
    dict(solver="sgd", momentum=0.0, batch_size=50),         # minibatches
    dict(solver="adam"),
    dict(hidden_layer_sizes=(8, 4)),                         # two hidden layers
    dict(loss="poisson"),
], ids=["auto-rate", "momentum", "minibatch", "adam", "two-layers", "poisson"])
def test_only_what_the_kernel_computes_takes_the_c_blocks(sine_rows, runs, params):
    X, y = sine_rows
    if params.get("loss") == "poisson":
        y = np.exp(y)
    fit(X, y, **{"max_iter": 5, "tol": 0.0, **params})
    assert not runs


def test_weights_and_the_switch_keep_the_numpy_path(sine_rows, runs):
    X, y = sine_rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPRegressor((8,), solver="gd", learning_rate_init=0.1, max_iter=5).fit(
            X, y, sample_weight=np.ones(len(X)))
        with fastpath.disabled():
            MLPRegressor((8,), solver="gd", learning_rate_init=0.1, max_iter=5).fit(X, y)
    assert not runs


def test_epochs_above_the_measured_threshold_keep_the_numpy_path(sine_rows, runs, monkeypatch):
    X, y = sine_rows
    if not BUILT:
        pytest.skip("the C extension gpumlp.fastpath._cblocks is not built here")
    monkeypatch.setattr(cblocks, "MAX_WORK", 300 * 8 * (4 + 1))
    fit(X, y, max_iter=3, tol=0.0)                   # exactly at the threshold: C
    assert runs
    del runs[:]
    fit(X, y, max_iter=3, tol=0.0, hidden_layer_sizes=(9,))
    assert not runs


def test_this_cpus_calibration_and_the_override_move_the_line(sine_rows, runs, monkeypatch):
    X, y = sine_rows
    if not BUILT:
        pytest.skip("the C extension gpumlp.fastpath._cblocks is not built here")
    work = 300 * 8 * (4 + 1)
    key = calibration.cpu_key(cblocks.chosen_isa())
    for line, taken in ((work - 1, False), (work, True)):
        calibration.store({"key": key, "max_work": line})
        del runs[:]
        fit(X, y, max_iter=3, tol=0.0)
        assert bool(runs) == taken
    monkeypatch.setattr(calibration, "_CHOSEN", {})
    monkeypatch.setenv(calibration.ENVIRONMENT, "0")        # over the file: never C
    del runs[:]
    fit(X, y, max_iter=3, tol=0.0)
    assert not runs


def test_uncalibrated_on_more_cores_the_numpy_path_takes_what_it_splits_wider(
        runs, monkeypatch):
    """MAX_WORK was measured on two cores: on more, uncalibrated, the C blocks keep
    the rows that the NumPy path would split over two threads at most."""
    from gpumlp.fastpath import numpy as numpy_path

    if not BUILT:
        pytest.skip("the C extension gpumlp.fastpath._cblocks is not built here")
    monkeypatch.setattr(numpy_path, "_CORES", 16)
    rng = np.random.default_rng(0)
    for n, taken in ((3 * numpy_path.MIN_ROWS_PER_THREAD - 1, True),
                     (3 * numpy_path.MIN_ROWS_PER_THREAD, False)):
        X = rng.standard_normal((n, 3))
        del runs[:]
        fit(X, X[:, 0], max_iter=2, tol=0.0, hidden_layer_sizes=(4,))
        assert bool(runs) == taken, n
    calibration.store({"key": calibration.cpu_key(cblocks.chosen_isa()), "max_work": 10**9})
    del runs[:]
    fit(X, X[:, 0], max_iter=2, tol=0.0, hidden_layer_sizes=(4,))
    assert runs                                      # a calibration decides alone


def test_without_the_extension_the_numpy_path_runs(sine_rows, runs, monkeypatch):
    """A machine without a compiler: the extension is absent, fits still run."""
    X, y = sine_rows
    monkeypatch.setattr(cblocks, "_MODULE", [None])
    with cblocks.simd("auto"):                       # (whatever GPUMLP_SIMD says here)
        assert not cblocks.available()
    model = fit(X, y, simd="auto", max_iter=20, tol=0.0)
    assert not runs and model.n_iter_ == 20
    with pytest.raises(ValueError, match="not built here"):
        fit(X, y, simd="avx2", max_iter=2)


def test_a_bad_gpumlp_simd_is_a_clear_error(sine_rows):
    X, y = sine_rows
    with pytest.raises(ValueError, match="GPUMLP_SIMD='sse9' is not understood"):
        fit(X, y, simd="sse9", max_iter=2)
    if BUILT and "avx512" not in RUNS:
        with pytest.raises(ValueError, match="this CPU runs only"):
            fit(X, y, simd="avx512", max_iter=2)


def test_gpumlp_simd_none_in_the_environment_hides_the_extension():
    code = ("import sys, warnings, numpy as np\n"
            "from gpumlp import MLPRegressor\n"
            "from gpumlp.fastpath import cblocks\n"
            "assert 'gpumlp.fastpath._cblocks' not in sys.modules\n"
            "X = np.random.default_rng(0).standard_normal((50, 3))\n"
            "with warnings.catch_warnings():\n"
            "    warnings.simplefilter('ignore')\n"
            "    MLPRegressor((4,), solver='gd', learning_rate_init=0.1, max_iter=3)"
            ".fit(X, X[:, 0])\n"
            "print(cblocks.chosen_isa(), 'gpumlp.fastpath._cblocks' in sys.modules)\n")
    env = {**os.environ, "GPUMLP_SIMD": "none"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["None", "False"]


def test_import_gpumlp_does_not_load_the_extension():
    code = "import sys, gpumlp; print('gpumlp.fastpath._cblocks' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_the_buffers_are_checked_before_the_loop_runs(isa):
    module = cblocks._module()
    X = np.zeros((10, 3))
    y = np.zeros((10, 1))
    start = np.zeros(3 * 4 + 4 + 4 + 1)
    slots, scalars, rates = np.zeros((2, start.size)), np.zeros((2, 2)), np.ones(2)
    args = [isa, X, y, start, slots, scalars, rates, 10, 3, 4, 1, 2, 0, 0.0, 0.0, 0.1, 10.0]
    module.run_block(*args)                          # as the Python side calls it
    for at, bad in [(1, X.astype(np.float32)), (2, np.zeros((9, 1))), (4, slots[:1]),
                    (5, scalars.T.copy()[:, :1]), (3, start[::2])]:
        wrong = list(args)
        wrong[at] = bad
        with pytest.raises((ValueError, BufferError)):
            module.run_block(*wrong)
    read_only = slots.copy()
    read_only.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):
        module.run_block(*args[:4], read_only, *args[5:])


def test_a_fit_on_the_c_blocks_certifies(tmp_path, sine_rows, runs, isa, dtype):
    """The certificate replays the fit on the NumPy path; the C blocks' fit passes it."""
    from gpumlp import save
    from gpumlp.certificate import certify, format_certificate

    X, y = sine_rows
    model = fit(X, y, simd=isa, dtype=dtype, max_iter=40, tol=0.0)
    assert runs
    path = tmp_path / "model.npz"
    save(model, path)
    cert = certify(path, X, y, backends=["numpy"])
    assert cert.outcome == "PASS", format_certificate(cert)
