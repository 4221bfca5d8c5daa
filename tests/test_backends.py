"""Named backends: PyTorch and JAX beside NumPy, chosen with ``backend=``.

The agreement of every kernel and training run with NumPy float64 is in
``tests/test_agreement.py`` (torch and jax are in its backend fixture); here
are the choices themselves, their errors, and what is particular to each
library: JAX's compiled step and its float64, MPS's missing float64.
"""

import contextlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, agreement, devices, fastpath, training
from gpumlp.agreement import compare
from gpumlp.devices import BackendUnavailableError, Device, get_device


class _Block:
    """An import hook under which ``import NAME`` fails as if not installed."""

    def __init__(self, name):
        self.name = name

    def find_spec(self, name, path=None, target=None):
        if name == self.name or name.startswith(self.name + "."):
            raise ImportError(f"No module named {name!r}")
        return None


@pytest.fixture
def block(monkeypatch):
    """``block("torch")`` makes ``import torch`` fail, as on a machine without it."""

    def hide(name):
        for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, module)
        monkeypatch.setattr(sys, "meta_path", [_Block(name), *sys.meta_path])

    return hide


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, np.sin(X[:, 0]) + 0.1 * X[:, 1]


@pytest.mark.parametrize("library, extra", [("torch", "gpumlp[torch]"), ("jax", "gpumlp[jax]")])
def test_an_explicit_backend_without_its_library_names_the_extra(block, library, extra):
    block(library)
    X, y = _data()
    with pytest.raises(BackendUnavailableError, match=extra.replace("[", r"\[")):
        MLPRegressor((4,), max_iter=1, backend=library).fit(X, y)


@pytest.mark.parametrize("library, spec", [("torch", "cuda"), ("torch", "mps"),
                                           ("jax", "gpu"), ("torch", "cuda:7")])
def test_a_missing_device_is_an_error_never_a_fallback(library, spec):
    pytest.importorskip(library)
    try:
        get_device(spec, library)
    except BackendUnavailableError as exc:
        assert spec.split(":")[0] in str(exc)
    else:
        pytest.skip(f"{library} has {spec} here")


@pytest.mark.parametrize("library, spec, message", [
    ("numpy", "cuda", "Unknown device 'cuda' for backend 'numpy'"),
    ("torch", "tpu", "Unknown device 'tpu' for backend 'torch'"),
    ("jax", "mps", "Unknown device 'mps' for backend 'jax'"),
    ("tensorflow", "cpu", "Unknown backend 'tensorflow'"),
])
def test_a_device_the_backend_does_not_drive_is_a_value_error(library, spec, message):
    with pytest.raises(ValueError, match=message):
        get_device(spec, library)


def test_auto_sends_mps_and_xpu_to_torch_and_tpu_to_jax(block):
    block("torch")
    for spec in ("mps", "xpu:0"):
        with pytest.raises(BackendUnavailableError, match="Backend 'torch'"):
            get_device(spec, "auto")
    block("jax")
    with pytest.raises(BackendUnavailableError, match="Backend 'jax'"):
        get_device("tpu", "auto")


def test_the_backend_environment_variable_sets_the_default(monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("GPUMLP_BACKEND", "torch")
    monkeypatch.setenv("GPUMLP_DEVICE", "cpu")
    assert get_device(None) == Device("torch", None, None, "cpu")
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((4,), max_iter=2).fit(X, y)
    assert model.device_.backend == "torch" and isinstance(model.coefs_[0], np.ndarray)
    monkeypatch.setenv("GPUMLP_BACKEND", "paddle")
    with pytest.raises(ValueError, match="environment variable GPUMLP_BACKEND='paddle'"):
        get_device(None)


def test_the_cli_backend_flag_wins_over_the_environment_variable(monkeypatch, capsys):
    # Before: GPUMLP_BACKEND=jax with `train --backend numpy --device cpu` failed,
    # "Device cpu is not a device of backend 'jax'" (adversarial round 5).
    pytest.importorskip("jax")
    from gpumlp.cli import main

    monkeypatch.setenv("GPUMLP_BACKEND", "jax")
    assert get_device(get_device("cpu", "numpy")).backend == "numpy"
    assert main(["train", "--samples", "60", "--epochs", "2", "--quiet", "--backend", "numpy",
                 "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("device: cpu ")
    assert main(["train", "--samples", "60", "--epochs", "2", "--quiet", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("device: jax:cpu")   # the variable still counts


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_results_come_back_in_the_inputs_kind(library):
    backend = library
    lib = pytest.importorskip(library)
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((4,), max_iter=3, backend=backend, random_state=0).fit(X, y)
    assert model.device_.backend == backend
    assert all(type(W) is np.ndarray and W.dtype == np.float64 for W in model.coefs_)
    assert type(model.predict(X)) is np.ndarray
    # Arrays of the library train where they live, with backend left as None.
    native = get_device("cpu", backend).asarray(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((4,), max_iter=3, random_state=0).fit(native, native[:, 0])
    assert model.device_.backend == backend
    assert type(model.predict(native)).__module__.split(".")[0] in (lib.__name__, "jaxlib")


def test_device_values_pickle_and_compare():
    import pickle

    for device in (Device("torch", None, None, "mps"), Device("torch", 1, None, "cuda:1"),
                   Device("jax", 0, None, "gpu")):
        assert pickle.loads(pickle.dumps(device)) == device
    assert Device("torch", None, None, "cpu") != Device("cpu")


def test_float64_on_mps_is_refused_clearly():
    mps = Device("torch", None, None, "mps")
    with pytest.raises(ValueError, match="MPS has no float64.*dtype='float32'"):
        mps.check_dtype("float64")
    mps.check_dtype("float32")


def test_import_gpumlp_imports_neither_torch_nor_jax():
    code = "import sys, gpumlp; print([m for m in ('torch', 'jax') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------- JAX
@pytest.fixture
def compiled_steps(monkeypatch):
    """Every distinct program the trainer gets from ``training.compiled_step`` (one
    step) or ``training.compiled_epoch`` (an epoch of minibatches), in order."""
    seen = []
    for name in ("compiled_step", "compiled_epoch"):
        real = getattr(training, name)
        real.cache_clear()  # traces of earlier tests' programs must not count here

        def recording(*key, real=real):
            program = real(*key)
            if not any(program is s for s in seen):
                seen.append(program)
            return program

        monkeypatch.setattr(training, name, recording)
    return seen


@pytest.mark.parametrize("solver", ["gd", "sgd", "adam"])
def test_jax_compiles_the_step_once_not_per_epoch(solver, compiled_steps):
    pytest.importorskip("jax")
    X, y = _data(n=100)
    # Full-batch "gd" runs whole blocks as one program by default
    # (tests/test_compiled_blocks.py); without the fast paths, one step per epoch.
    with warnings.catch_warnings(), \
            (fastpath.disabled() if solver == "gd" else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        model = MLPRegressor((5,), solver=solver, batch_size=32, max_iter=2, tol=0.0,
                             random_state=0, backend="jax", learning_rate_init=0.01,
                             warm_start=True).fit(X, y)
        (step,) = compiled_steps
        after_two = step.jitted._cache_size()
        for _ in range(5):
            model.partial_fit(X, y)  # a new trainer each call, the same compiled step
    # One trace: gd's step of the full batch; sgd's and Adam's epoch of batches
    # (three of 32 and the last of 4), one program with every step in it.
    assert after_two == 1
    assert len(compiled_steps) == 1
    assert step.jitted._cache_size() == after_two
    assert len(model.loss_curve_) == 7   # n_iter_ counts the last call's (issue 12)


def test_jax_float64_computes_in_float64_without_touching_the_global_setting():
    jax = pytest.importorskip("jax")
    before = jax.config.jax_enable_x64
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = MLPRegressor((6,), max_iter=20, tol=0, random_state=0, backend="jax",
                           dtype="float64").fit(X, y)
        ref = MLPRegressor((6,), max_iter=20, tol=0, random_state=0, backend="numpy",
                           dtype="float64").fit(X, y)
    assert jax.config.jax_enable_x64 == before
    assert got.coefs_[0].dtype == np.float64
    # float32 arithmetic could not come within 1e-12 of the float64 oracle.
    for W, V in zip(got.coefs_ + got.intercepts_, ref.coefs_ + ref.intercepts_):
        assert np.linalg.norm(W - V) <= 1e-12 * np.linalg.norm(V)


@pytest.mark.parametrize("name", ["torch", "jax"])
@pytest.mark.parametrize("config", ["gd", "momentum", "adam"])
def test_float64_agrees_with_numpy_to_1e12_after_30_epochs(name, config):
    """The issue's target: tighter than the 100-epoch tolerance of the table."""
    try:
        device = agreement.backend_device(name)
    except BackendUnavailableError as exc:
        pytest.skip(str(exc))
    problem = agreement.make_problem()
    got = agreement.training_outputs(device, "float64", config, problem, checkpoints=(30,))
    with fastpath.disabled():  # the oracle: NumPy's generic path, as in agreement.oracle
        ref = agreement.training_outputs(Device("cpu"), "float64", config, problem,
                                         checkpoints=(30,))
    for key in got:
        r = compare(got[key], devices.to_numpy(ref[key]), backend=name, dtype="float64",
                    group=config, name=key, tol=1e-12)
        assert r.passed, (key, r.rel)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_a_pickled_jax_model_continues_as_the_original(solver):
    """JAX unpickles a float64 array as float32 unless 64-bit types are on (gpumlp turns
    them on within each fit only): a pickled float64 JAX fit continued with partial_fit
    from float32-rounded weights and moments, 1.3e-9 from the original's (adversarial
    round 12). The trainer now pickles its JAX arrays on the host, dtypes kept."""
    pytest.importorskip("jax")
    import pickle

    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 3))
    y = np.tanh(X[:, 0]) + 0.5 * X[:, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((4,), solver=solver, max_iter=6, random_state=0, device="cpu",
                             dtype="float64", backend="jax").fit(X, y)
        copy = pickle.loads(pickle.dumps(model))
        assert copy._trainer.params[0].dtype == np.float64
        model.partial_fit(X, y)
        copy.partial_fit(X, y)
    np.testing.assert_array_equal(np.asarray(copy.predict(X)), np.asarray(model.predict(X)))
