"""Device specifiers, their errors, and the lazy CuPy import."""

import logging
import pickle
import subprocess
import sys

import pytest

import gpumlp
from gpumlp import devices
from gpumlp.devices import CUDAUnavailableError, Device, get_device


class _BlockCupy:
    """An import hook under which ``import cupy`` fails as if not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError(f"No module named {name!r}")
        return None


@pytest.fixture
def no_cupy(monkeypatch):
    """Make ``import cupy`` fail, as on a machine without it."""
    for name in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BlockCupy(), *sys.meta_path])
    devices._auto_device.cache_clear()
    yield
    devices._auto_device.cache_clear()


@pytest.mark.parametrize("spec", ["cpu", "CPU", " cpu ", "cpu:0"])
def test_cpu_specifiers(spec):
    device = get_device(spec)
    assert device == Device("cpu") and str(device) == "cpu" and device.is_numpy


@pytest.mark.parametrize("spec", ["npu", "cuda:x", "cuda:-1", "cpu:1", "auto:0", "", "cuda0"])
def test_unknown_specifiers_are_value_errors(spec):
    with pytest.raises(ValueError, match="Unknown device"):
        get_device(spec)


def test_non_string_specifier_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a string"):
        get_device(3)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3", "gpu"])
def test_explicit_cuda_without_cupy_says_how_to_install(no_cupy, spec):
    with pytest.raises(CUDAUnavailableError, match=r"pip install 'gpumlp\[cuda12\]'"):
        get_device(spec)


def test_auto_without_cupy_is_the_cpu_and_says_so_once(no_cupy, caplog):
    with caplog.at_level(logging.INFO, logger="gpumlp"):
        assert get_device("auto") == Device("cpu")
        assert get_device("auto") == Device("cpu")
    chosen = [r for r in caplog.records if "chose the CPU" in r.getMessage()]
    assert len(chosen) == 1


def test_environment_variable_sets_the_default(monkeypatch, no_cupy):
    monkeypatch.setenv("GPUMLP_DEVICE", "cpu")
    assert get_device(None) == Device("cpu")
    monkeypatch.setenv("GPUMLP_DEVICE", "cuda:1")
    with pytest.raises(CUDAUnavailableError):
        get_device(None)
    monkeypatch.delenv("GPUMLP_DEVICE")
    assert devices.default_device_spec() == "auto"


@pytest.mark.parametrize("value", ["garbage", "cpu:1", "auto:0"])
def test_a_bad_environment_variable_is_named_in_the_error(monkeypatch, value):
    """Issue 13, item 19: the user did not pass this device; say where it came from."""
    monkeypatch.setenv("GPUMLP_DEVICE", value)
    with pytest.raises(ValueError, match=f"environment variable GPUMLP_DEVICE='{value}' is "
                                         f"not a device: Unknown device '{value}'"):
        get_device(None)
    with pytest.raises(ValueError, match="^Unknown device 'garbage'"):
        get_device("garbage")  # given directly, it is the argument that is wrong


def test_estimator_uses_environment_default_for_numpy_input(monkeypatch, no_cupy):
    monkeypatch.setenv("GPUMLP_DEVICE", "cuda")
    with pytest.raises(CUDAUnavailableError, match="CuPy is not installed"):
        gpumlp.MLPRegressor(max_iter=1).fit([[0.0], [1.0]], [0.0, 1.0])


def test_device_values_pickle():
    for device in (Device("cpu"), Device("cuda", 2)):
        assert pickle.loads(pickle.dumps(device)) == device


def test_import_does_not_import_cupy_or_other_heavy_libraries():
    heavy = ["cupy", "sklearn", "scipy", "dask", "distributed", "matplotlib", "torch"]
    code = f"import sys, gpumlp; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_device_of_array_api_strict_array():
    xp = pytest.importorskip("array_api_strict")
    x = xp.asarray([1.0], device=xp.Device("device1"))
    device = devices.device_of(x)
    assert device.kind == "array" and device.native == xp.Device("device1")
    assert "device1" in str(device)


def test_an_unusable_device_from_the_environment_names_the_variable(monkeypatch):
    """GPUMLP_DEVICE=cuda:7 on a machine without CuPy said "pass device='cpu'" and
    not where the device came from (adversarial round 16)."""
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed here: cuda:7 may be usable or fail otherwise")
    except ImportError:
        pass
    monkeypatch.setenv("GPUMLP_DEVICE", "cuda:7")
    with pytest.raises(CUDAUnavailableError, match="GPUMLP_DEVICE='cuda:7'.*GPUMLP_DEVICE to "
                                                   "cpu"):
        get_device()
    monkeypatch.delenv("GPUMLP_DEVICE")
    monkeypatch.setenv("GPUMLP_BACKEND", "cupy")     # the advice fits the variable
    with pytest.raises(CUDAUnavailableError, match="set GPUMLP_BACKEND to numpy"):
        get_device()
    with pytest.raises(CUDAUnavailableError) as caught:
        get_device("cuda:7")           # asked for by the caller: no word of the variable
    assert "GPUMLP_DEVICE" not in str(caught.value)
