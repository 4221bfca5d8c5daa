"""gpumlp: an exact MLP regressor with one set of array-API kernels for CPU and GPU.

``import gpumlp`` never imports CuPy, PyTorch or JAX; each is imported the
first time a device of its backend is asked for.
"""

from ._sklearn_compat import ConvergenceWarning
from ._version import __version__  # noqa: E402
from .certificate import certify
from .devices import BackendUnavailableError, CUDAUnavailableError, Device, get_device
from .estimator import MLPRegressor, UnscaledDataWarning
from .io import ModelFileError, load, save
from .scaling import StandardizedRegressor
from .training import LossIncreasedWarning, TrainingDivergedError

__all__ = [
    "BackendUnavailableError",
    "ConvergenceWarning",
    "CUDAUnavailableError",
    "Device",
    "LossIncreasedWarning",
    "MLPRegressor",
    "ModelFileError",
    "StandardizedRegressor",
    "TrainingDivergedError",
    "UnscaledDataWarning",
    "__version__",
    "certify",
    "get_device",
    "load",
    "save",
]
