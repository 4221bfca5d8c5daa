"""Where computation runs: device specifiers parsed once into values.

A :class:`Device` is a small, picklable value. It knows its array namespace
(array-api-compat's wrapper of NumPy or CuPy, or any namespace that
array-api-compat understands) and the device object to pass as ``device=``
when creating arrays there. Everything below the estimator takes a ``Device``
or an ``xp``; nothing below this module looks at strings or environment
variables.

CuPy is imported only when a CUDA device is asked for (``"cuda"``,
``"cuda:N"``, or ``"auto"``), so ``import gpumlp`` stays fast and works on
machines without CUDA. When CUDA cannot be had, one error,
:class:`CUDAUnavailableError`, says why and how to fix it.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from contextlib import nullcontext
from typing import Any

import numpy as np

__all__ = [
    "CUDAUnavailableError",
    "ArrayDevice",
    "CPUDevice",
    "CUDADevice",
    "Device",
    "default_device_spec",
    "device_of",
    "dtype_name",
    "get_device",
    "move",
    "to_numpy",
]

logger = logging.getLogger("gpumlp")

ENV_VAR = "GPUMLP_DEVICE"

_INSTALL_HINT = (
    "Install CuPy for your CUDA version with `pip install 'gpumlp[cuda12]'` "
    "or `pip install 'gpumlp[cuda13]'`, or pass device='cpu'."
)


class CUDAUnavailableError(RuntimeError):
    """A CUDA device was asked for, but CuPy or a GPU is missing."""


class Device:
    """Where arrays live and which array namespace computes on them.

    A device is a small value, one subclass per backend: :class:`CPUDevice`
    (NumPy), :class:`CUDADevice` (CuPy) and :class:`ArrayDevice` (any other
    namespace array-api-compat understands, taken from an input array).
    Adding a backend is adding one subclass (and, if it pays, one fast-path
    module, named by :attr:`fastpath`). Build one with :func:`get_device`
    (from a specifier such as ``"cuda:1"``) or :func:`device_of` (from an
    array); ``Device("cpu")``, ``Device("cuda", 1)`` and
    ``Device("array", None, namespace, native)`` build the subclass by kind.

    Attributes
    ----------
    kind : str
        ``"cpu"``, ``"cuda"`` or ``"array"``.
    index : int or None
        The CUDA device ordinal.
    namespace : module or None
        For ``"array"``: the array-API namespace of the input.
    native : object or None
        For ``"array"``: the input array's ``.device``.
    fastpath : str or None
        The module of :mod:`gpumlp.fastpath` with this backend's fast steps.
    """

    kind: str = ""
    fastpath: str | None = None
    _kinds: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Device._kinds[cls.kind] = cls

    def __new__(cls, kind: str | None = None, *args, **kwargs):
        if cls is Device:
            try:
                cls = Device._kinds[kind]
            except KeyError:
                raise ValueError(f"Unknown device kind {kind!r}.") from None
        return object.__new__(cls)

    def __init__(self, kind: str | None = None, index: int | None = None,
                 namespace: Any = None, native: Any = None):
        self.index = index
        self.namespace = namespace
        self.native = native

    def _key(self):
        return (self.kind, self.index)

    def __eq__(self, other):
        return isinstance(other, Device) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"Device({str(self)!r})"

    def __reduce__(self):
        return (Device, (self.kind, self.index))

    @property
    def xp(self):
        """The array-API namespace that computes on this device."""
        raise NotImplementedError

    @property
    def array_device(self):
        """The object to pass as ``device=`` to ``xp.asarray``."""
        raise NotImplementedError

    @property
    def is_numpy(self) -> bool:
        """True for NumPy on the host."""
        return False

    @classmethod
    def of(cls, x) -> Device | None:
        """The device of this backend that holds array ``x``, or ``None`` if not ours."""
        return None

    def holds(self, x) -> bool:
        """True when the array ``x`` already lives here, in this namespace."""
        return device_of(x) == self

    def context(self):
        """A context manager that makes this device current (a no-op but on CUDA)."""
        return nullcontext()

    def asarray(self, x, dtype=None):
        """Move ``x`` (NumPy or any array of this namespace) onto this device."""
        return self.xp.asarray(x, dtype=dtype, device=self.array_device)

    def synchronize(self) -> None:
        """Wait for queued work on this device (a no-op off accelerators)."""


class CPUDevice(Device):
    """NumPy, on the host."""

    kind = "cpu"
    fastpath = "numpy"

    @classmethod
    def of(cls, x):
        import array_api_compat as aac

        return cls("cpu") if aac.is_numpy_array(x) else None

    def __str__(self) -> str:
        return "cpu"

    @property
    def xp(self):
        import array_api_compat.numpy as xp

        return xp

    @property
    def array_device(self):
        return "cpu"

    @property
    def is_numpy(self) -> bool:
        return True


class CUDADevice(Device):
    """CuPy, on one CUDA GPU; CuPy is imported when first needed."""

    kind = "cuda"
    fastpath = "cupy"

    @classmethod
    def of(cls, x):
        import array_api_compat as aac

        return cls("cuda", int(x.device.id)) if aac.is_cupy_array(x) else None

    def __str__(self) -> str:
        return f"cuda:{self.index}"

    @property
    def xp(self):
        _cupy()
        import array_api_compat.cupy as xp

        return xp

    @property
    def array_device(self):
        return _cupy().cuda.Device(self.index)

    def context(self):
        return _cupy().cuda.Device(self.index)

    def asarray(self, x, dtype=None):
        with self.context():
            return self.xp.asarray(x, dtype=dtype)

    def synchronize(self) -> None:
        _cupy().cuda.Device(self.index).synchronize()


class ArrayDevice(Device):
    """A device of another array-API library, taken from an input array."""

    kind = "array"

    def _key(self):
        return (self.kind, id(self.namespace), self.native)

    def __str__(self) -> str:
        return f"{self.namespace.__name__}:{self.native}"

    def __reduce__(self):
        # Foreign namespaces and their device objects need not pickle; a
        # pickled estimator keeps only CPU or CUDA, which it can rebuild.
        return (Device, ("cpu",))

    @property
    def xp(self):
        return self.namespace

    @property
    def array_device(self):
        return self.native


def move(x, device: Device, dtype: str | None = None):
    """``x`` on ``device`` (in ``dtype`` if given), copying only when needed.

    This, :func:`to_numpy` and :meth:`Device.asarray` are the only ways data
    crosses between devices.
    """
    xp = device.xp
    if device.holds(x):
        if dtype is not None and x.dtype != getattr(xp, dtype):
            return xp.astype(x, getattr(xp, dtype))
        return x
    return device.asarray(to_numpy(x), dtype=None if dtype is None else getattr(xp, dtype))


def dtype_name(x) -> str:
    """``"float32"`` or ``"float64"`` (the dtype's name) for an array of any namespace."""
    return str(x.dtype).rsplit(".", 1)[-1]


_SPEC = re.compile(r"^(?P<kind>cpu|cuda|gpu|auto)(?::(?P<index>\d+))?$")


def default_device_spec() -> str:
    """The specifier used when none is given: ``$GPUMLP_DEVICE`` or ``"auto"``."""
    return os.environ.get(ENV_VAR, "").strip() or "auto"


def get_device(spec: str | Device | None = None) -> Device:
    """Parse a device specifier into a :class:`Device`.

    Parameters
    ----------
    spec : str, Device or None
        ``"cpu"``; ``"cuda"`` (device 0) or ``"cuda:N"``; ``"auto"`` (the first
        CUDA device if CuPy imports and sees a GPU, else the CPU); a
        :class:`Device`, returned as is; or ``None``, meaning the environment
        variable ``GPUMLP_DEVICE`` if set, else ``"auto"``.

    Returns
    -------
    Device

    Raises
    ------
    ValueError
        If the specifier is not one of the forms above; when it came from
        ``GPUMLP_DEVICE``, the message names the variable.
    CUDAUnavailableError
        If a CUDA device was asked for explicitly and CuPy or that GPU is
        missing.
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        spec = default_device_spec()
        try:
            return _parse(spec)
        except ValueError as exc:  # only a spec from the environment can be wrong here
            raise ValueError(f"The environment variable {ENV_VAR}={spec!r} is not a "
                             f"device: {exc} Set it to one of those, or unset it.") from None
    return _parse(spec)


def _parse(spec):
    """The :class:`Device` a specifier names (see :func:`get_device`)."""
    if not isinstance(spec, str):
        raise TypeError(
            f"device must be a string such as 'cpu', 'cuda:0' or 'auto', "
            f"got {type(spec).__name__}."
        )
    match = _SPEC.match(spec.strip().lower())
    if match is None:
        raise ValueError(
            f"Unknown device {spec!r}. Use 'auto', 'cpu', 'cuda' or 'cuda:N' "
            f"(N a GPU index)."
        )
    kind, index = match["kind"], match["index"]
    if kind == "gpu":
        kind = "cuda"
    if kind == "cpu":
        if index not in (None, "0"):
            raise ValueError(f"Unknown device {spec!r}: there is one CPU device, 'cpu'.")
        return Device("cpu")
    if kind == "auto":
        if index is not None:
            raise ValueError(f"Unknown device {spec!r}: 'auto' takes no index.")
        return _auto_device()
    index = int(index or 0)
    count = _cuda_device_count()  # raises CUDAUnavailableError
    if index >= count:
        raise CUDAUnavailableError(
            f"CUDA device {index} was asked for, but only {count} GPU(s) are "
            f"visible (indices 0 to {count - 1}). Check CUDA_VISIBLE_DEVICES."
        )
    return Device("cuda", index)


@functools.cache
def _auto_device() -> Device:
    # Cached so that the choice is made, and said, once per process.
    try:
        _cuda_device_count()  # raises when CUDA cannot be had
    except CUDAUnavailableError as exc:
        logger.info("gpumlp: device 'auto' chose the CPU (%s)", str(exc).split(".")[0])
        return Device("cpu")
    logger.info("gpumlp: device 'auto' chose cuda:0")
    return Device("cuda", 0)


def _cupy():
    """Import CuPy, or raise the one clear error."""
    try:
        import cupy
    except ImportError as exc:
        raise CUDAUnavailableError(
            f"CUDA was asked for, but CuPy is not installed ({exc}). {_INSTALL_HINT}"
        ) from None
    return cupy


def _cuda_device_count() -> int:
    cupy = _cupy()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError when no driver or no GPU
        raise CUDAUnavailableError(
            f"CUDA was asked for, but CuPy sees no usable GPU ({exc}). "
            f"Check the NVIDIA driver with `nvidia-smi`, or pass device='cpu'."
        ) from None
    if count == 0:
        raise CUDAUnavailableError(
            "CUDA was asked for, but CuPy sees no GPU. Check the NVIDIA driver "
            "with `nvidia-smi` and CUDA_VISIBLE_DEVICES, or pass device='cpu'."
        )
    return count


def device_of(x) -> Device:
    """The :class:`Device` an array lives on (NumPy, CuPy or any array-API array).

    Each backend's subclass says which arrays it owns (:meth:`Device.of`);
    any other array-API array gets an :class:`ArrayDevice`.
    """
    for cls in Device._kinds.values():
        device = cls.of(x)
        if device is not None:
            return device
    import array_api_compat as aac

    return ArrayDevice("array", None, aac.array_namespace(x), aac.device(x))


def to_numpy(x) -> np.ndarray:
    """Copy an array of any supported namespace to a NumPy array on the host."""
    import array_api_compat as aac

    if isinstance(x, np.ndarray):
        return x
    if aac.is_cupy_array(x):
        return x.get()
    if aac.is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError, AttributeError, ValueError):
        return np.asarray(x)
