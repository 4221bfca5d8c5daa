"""Every backend and dtype against the NumPy float64 oracle.

Tolerances live in ``gpumlp.agreement.TOLERANCES``, with their reasons.
"""

import contextlib
import json
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, agreement, kernels, training
from gpumlp.agreement import TOLERANCES, TRAINING_CONFIGS, compare
from gpumlp.devices import Device, device_of, to_numpy


@pytest.fixture(scope="module")
def problem():
    return agreement.make_problem()


@pytest.fixture(scope="module")
def oracles(problem):
    return agreement.oracle(problem, list(TRAINING_CONFIGS))


@pytest.fixture(scope="module")
def oracle_kernels(oracles):
    return oracles[0]


@pytest.fixture(scope="module")
def oracle_training(oracles):
    return oracles[1]


def _assert_agrees(got, oracle, name, dtype, group):
    tol = TOLERANCES[(group.split(":")[0], dtype)]
    failures = []
    for key, value in got.items():
        # A fast path's results are held to the generic path's oracle.
        r = compare(value, oracle[key.removeprefix("fast/")], backend=name, dtype=dtype,
                    group=group, name=key, tol=tol)
        if not r.passed:
            failures.append(f"{key}: rel {r.rel:.3e} > {tol:.0e}")
    assert not failures, failures


def test_kernels_agree(backend, dtype, problem, oracle_kernels):
    name, device = backend
    got = agreement.kernel_outputs(device, dtype, problem)
    _assert_agrees(got, oracle_kernels, name, dtype, "kernel")
    xp = device.xp
    for key, value in got.items():
        assert value.dtype == getattr(xp, dtype), key
        assert device_of(value) == device or device_of(value).native == device.native, key


@pytest.mark.parametrize("config", list(TRAINING_CONFIGS))
def test_training_agrees(backend, dtype, config, problem, oracle_training):
    name, device = backend
    if dtype != "float64" and config in agreement.FLOAT64_ONLY:
        pytest.skip(f"{config} is compared in float64 only (see agreement.FLOAT64_ONLY)")
    got = agreement.training_outputs(device, dtype, config, problem)
    _assert_agrees(got, oracle_training[config], name, dtype, f"training:{config}")
    for key, value in got.items():
        if key not in ("loss_curve", "learning_rates"):
            assert value.dtype == getattr(device.xp, dtype), key
            assert device_of(value).kind == device.kind, key
            if device.kind == "array":
                assert value.device == device.native, key


@pytest.mark.parametrize("config", ["sgd", "adam"])
def test_same_seed_twice_is_bitwise_equal(backend, config, problem):
    _, device = backend
    first = agreement.training_outputs(device, "float32", config, problem, checkpoints=(5,))
    second = agreement.training_outputs(device, "float32", config, problem, checkpoints=(5,))
    for key in first:
        np.testing.assert_array_equal(to_numpy(first[key]), to_numpy(second[key]), err_msg=key)


@contextlib.contextmanager
def _no_host_reads(device, monkeypatch):
    """Fail on any device-to-host read inside an epoch of training.

    On CuPy, ``cupyx.allow_synchronize(False)`` raises on any synchronising
    call; on PyTorch's CUDA, its synchronisation debug mode "error"; on a JAX
    accelerator, JAX's device-to-host transfer guard. On array-api-strict,
    the conversions to Python scalars and the DLPack/NumPy exports are made to
    raise. NumPy, and PyTorch and JAX on the CPU, have no device to read from.
    """
    if device.kind == "cuda":
        import cupyx

        guard = lambda: cupyx.allow_synchronize(False)  # noqa: E731
    elif device.kind == "torch" and device.native.startswith("cuda"):
        import torch

        @contextlib.contextmanager
        def guard():
            torch.cuda.set_sync_debug_mode("error")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode("default")
    elif device.kind == "jax" and device.native != "cpu":
        import jax

        guard = lambda: jax.transfer_guard_device_to_host("disallow")  # noqa: E731
    elif device.kind == "array":
        array_type = type(device.xp.asarray(0.0))
        state = {"on": False}

        def forbid(method, original):
            def guarded(self, *args, **kwargs):
                if state["on"]:
                    raise AssertionError(f"host read {method} inside an epoch")
                return original(self, *args, **kwargs)
            return guarded

        for method in ("__float__", "__bool__", "__int__", "__dlpack__", "__array__"):
            monkeypatch.setattr(array_type, method, forbid(method, getattr(array_type, method)))

        @contextlib.contextmanager
        def guard():
            state["on"] = True
            try:
                yield
            finally:
                state["on"] = False
    else:
        guard = contextlib.nullcontext
    epoch = training.Trainer.epoch

    def guarded_epoch(self, *args, **kwargs):
        with guard():
            return epoch(self, *args, **kwargs)

    monkeypatch.setattr(training.Trainer, "epoch", guarded_epoch)
    yield


def test_no_host_transfer_inside_an_epoch(backend, problem, monkeypatch):
    name, device = backend
    X, y, _, _ = problem
    with device.context():
        Xd, yd = device.asarray(X), device.asarray(y)
    with _no_host_reads(device, monkeypatch), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPRegressor((8,), solver="adam", batch_size=32, max_iter=3, tol=0,
                             random_state=0, device=device).fit(Xd, yd)
    assert model.n_iter_ == 3


def test_the_guard_catches_a_host_read(problem, monkeypatch):
    # The guard above must be able to fail: a float() inside an epoch trips it.
    xp = pytest.importorskip("array_api_strict")
    device = Device("array", None, xp, xp.Device("CPU_DEVICE"))
    X, y, _, _ = problem
    real_forward = kernels.forward
    monkeypatch.setattr(kernels, "forward",
                        lambda *a, **k: float(a[0][0, 0]) and real_forward(*a, **k))
    with _no_host_reads(device, monkeypatch), pytest.raises(AssertionError, match="host read"):
        MLPRegressor((4,), max_iter=1, device=device).fit(device.asarray(X), device.asarray(y))


def _perturb_gradients_on(namespace_name, monkeypatch, factor=1e-4):
    """Plant a discrepancy: one backend's dW1 is off by one part in 1e4."""
    real_backward = kernels.backward

    def perturbed(y, activations, coefs, *args, **kwargs):
        coef_grads, intercept_grads = real_backward(y, activations, coefs, *args, **kwargs)
        if type(y).__module__.startswith(namespace_name):
            coef_grads[0] = coef_grads[0] * (1.0 + factor)
        return coef_grads, intercept_grads

    monkeypatch.setattr(kernels, "backward", perturbed)


def test_validate_catches_a_planted_discrepancy(monkeypatch, problem):
    pytest.importorskip("array_api_strict")
    _perturb_gradients_on("array_api_strict", monkeypatch)
    results = agreement.validate(["numpy", "array_api_strict"], dtypes=["float64"],
                                 configs=["gd"], problem=problem)
    failed = {(r.backend, r.name) for r in results if not r.passed}
    assert ("array_api_strict", "dW1") in failed
    assert all(backend == "array_api_strict" for backend, _ in failed)
    assert ("array_api_strict", "step10/W1") in failed
    assert "FAIL" in agreement.format_table(results)


def test_validate_command_reports_and_exits_nonzero_on_fail(monkeypatch, tmp_path, capsys):
    pytest.importorskip("array_api_strict")
    from gpumlp.cli import main

    report = tmp_path / "report.json"
    args = ["validate", "--backends", "numpy,array_api_strict", "--dtypes", "float64",
            "--configs", "gd", "--json", str(report)]
    assert main(args) == 0
    rows = json.loads(report.read_text())
    assert rows and all(row["passed"] for row in rows)
    assert "0 failed" in capsys.readouterr().out

    _perturb_gradients_on("array_api_strict", monkeypatch)
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert any(not row["passed"] for row in json.loads(report.read_text()))


def test_validate_command_refuses_an_unavailable_backend(capsys):
    from gpumlp.cli import main

    assert main(["validate", "--backends", "nosuch"]) == 2
    assert "Unknown backend 'nosuch'" in capsys.readouterr().err


def test_requiring_an_unavailable_backend_is_an_error(tmp_path):
    import subprocess
    import sys

    from gpumlp.agreement import available_backends

    missing = [n for n in agreement.BACKENDS if n not in available_backends()[0]]
    if not missing:
        pytest.skip("every backend is available here")
    (tmp_path / "test_nothing.py").write_text("def test_nothing(backend):\n    pass\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", "/dev/null", "--confcutdir", str(tmp_path), "-p", "tests.conftest",
         "--backends", missing[0], str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    assert f"backend {missing[0]!r} was required but is not available" in result.stderr


def test_auto_rate_sequence_is_identical_in_float64(backend, problem, oracle_training):
    """Every decision of the adaptive rate is the same on every backend (issue 14)."""
    _, device = backend
    got = agreement.training_outputs(device, "float64", "gd-auto", problem)
    want = oracle_training["gd-auto"]["learning_rates"]
    assert len(want) == 100 and len(set(want)) > 2  # it moved, both ways or one
    np.testing.assert_array_equal(to_numpy(got["learning_rates"]), want)
