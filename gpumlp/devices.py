"""Where computation runs: device specifiers parsed once into values.

A :class:`Device` is a small, picklable value. It knows its array namespace
(array-api-compat's wrapper of NumPy or CuPy, or any namespace that
array-api-compat understands) and the device object to pass as ``device=``
when creating arrays there. Everything below the estimator takes a ``Device``
or an ``xp``; nothing below this module looks at strings or environment
variables.

A device is chosen by a pair, a *backend* (the array library: ``"numpy"``,
``"cupy"``, ``"torch"``, ``"jax"``, or ``"auto"``) and a *device* specifier
(``"cpu"``, ``"cuda:1"``, ``"mps"``, ...); :func:`get_device` parses the pair
once into a :class:`Device`. Each backend is one subclass, registered by its
``backend`` name, that parses its own specifiers (:meth:`Device.parse`).

CuPy, PyTorch and JAX are imported only when a device of theirs is asked for
(or, for CuPy, ``"auto"``), or when an array of theirs is seen (they are then
already imported), so ``import gpumlp`` stays fast and never imports them.
When a backend cannot be had, one error, :class:`BackendUnavailableError`
(:class:`CUDAUnavailableError` for CuPy), says why and what to install.
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
    "BACKENDS",
    "read_floats",
    "BackendUnavailableError",
    "CUDAUnavailableError",
    "ArrayDevice",
    "CPUDevice",
    "CUDADevice",
    "Device",
    "JaxDevice",
    "TorchDevice",
    "default_backend_spec",
    "default_device_spec",
    "device_of",
    "dtype_name",
    "get_device",
    "inventory",
    "move",
    "to_numpy",
]

logger = logging.getLogger("gpumlp")

ENV_VAR = "GPUMLP_DEVICE"
BACKEND_ENV_VAR = "GPUMLP_BACKEND"

#: The backend names ``backend=`` takes, besides ``"auto"``.
BACKENDS = ("numpy", "cupy", "torch", "jax")

_INSTALL_HINT = (
    "Install CuPy for your CUDA version with `pip install 'gpumlp[cuda12]'` "
    "or `pip install 'gpumlp[cuda13]'`, or pass device='cpu'."
)


class BackendUnavailableError(RuntimeError):
    """A backend or device was asked for, but its library or hardware is missing."""


class CUDAUnavailableError(BackendUnavailableError):
    """A CUDA device was asked for, but CuPy or a GPU is missing."""


class Device:
    """Where arrays live and which array namespace computes on them.

    A device is a small value, one subclass per backend: :class:`CPUDevice`
    (NumPy), :class:`CUDADevice` (CuPy), :class:`TorchDevice` (PyTorch, on
    any device it drives), :class:`JaxDevice` (JAX) and :class:`ArrayDevice`
    (any other namespace array-API-compat understands, taken from an input
    array). Adding a backend is adding one subclass (and, if it pays, one
    fast-path module, named by :attr:`fastpath`). Build one with
    :func:`get_device` (from a backend and a specifier such as ``"cuda:1"``)
    or :func:`device_of` (from an array); ``Device("cpu")``,
    ``Device("cuda", 1)``, ``Device("torch", None, None, "mps")`` and
    ``Device("array", None, namespace, native)`` build the subclass by kind.

    Attributes
    ----------
    kind : str
        ``"cpu"``, ``"cuda"``, ``"torch"``, ``"jax"`` or ``"array"``.
    backend : str or None
        The name ``backend=`` takes for this subclass (``"numpy"``,
        ``"cupy"``, ``"torch"``, ``"jax"``); None for :class:`ArrayDevice`.
    index : int or None
        The device ordinal, where the backend has several.
    namespace : module or None
        For ``"array"``: the array-API namespace of the input.
    native : object or None
        For ``"array"``: the input array's ``.device``; for ``"torch"`` and
        ``"jax"``: the device's name in that library (``"cuda:0"``, ``"gpu:0"``).
    fastpath : str or None
        The module of :mod:`gpumlp.fastpath` with this backend's fast steps.
    """

    kind: str = ""
    backend: str | None = None
    fastpath: str | None = None
    #: Whether :meth:`compile` compiles (then callers batch small operations into it).
    compiles: bool = False
    _kinds: dict = {}
    _backends: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Device._kinds[cls.kind] = cls
        if cls.backend is not None:
            Device._backends[cls.backend] = cls

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

    @classmethod
    def parse(cls, spec: str) -> Device:
        """This backend's device for a specifier (``"auto"``, ``"cpu"``, ...).

        Raises
        ------
        ValueError
            For a specifier this backend does not know.
        BackendUnavailableError
            When the library or the device is missing; the message names
            the extra to install.
        """
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The backend name with its device, as ``gpumlp validate --backends`` takes it."""
        return str(self)

    @property
    def spec(self) -> str:
        """The device specifier that, with :attr:`backend`, rebuilds this device."""
        return str(self)

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
        """A context manager for computing here (CUDA: the current GPU; JAX: float64 on)."""
        return nullcontext()

    def asarray(self, x, dtype=None):
        """Move ``x`` (NumPy or any array of this namespace) onto this device."""
        return self.xp.asarray(x, dtype=dtype, device=self.array_device)

    def synchronize(self) -> None:
        """Wait for queued work on this device (a no-op off accelerators)."""

    def check_dtype(self, dtype: str) -> None:
        """Raise ``ValueError``, saying what to do, if this device cannot compute in ``dtype``."""

    def compile(self, step):
        """``step`` compiled for this device; by default ``step`` itself.

        ``step(params, state, X, y) -> (params, state, loss)`` is one pure
        training step (see :mod:`gpumlp.training`); a backend with a compiler
        (JAX) returns a compiled function with the same contract.
        """
        return step

    def compile_blocks(self, epoch, max_epochs: int):
        """Up to ``max_epochs`` calls of ``epoch`` as one compiled program, or None.

        Parameters
        ----------
        epoch : callable
            ``epoch(params, rate, X, y, w) -> (params, loss, finite)``: one
            pure full-batch epoch at the 0-d learning rate ``rate`` (see
            :func:`gpumlp.training.epoch_function`).
        max_epochs : int
            The longest block.

        Returns
        -------
        callable or None
            ``blocks(params, rates, count, X, y, w) -> (stacked, scalars)``:
            ``count`` epochs from ``params`` at ``rates[:count]`` (``rates`` of
            shape ``(max_epochs,)``); ``stacked[i][j]`` is parameter ``i``
            after epoch ``j``, ``scalars[0, j]`` epoch ``j``'s loss and
            ``scalars[1, j]`` its finiteness flag (slots from ``count`` on are
            zeros). None (the default) where the device compiles no loops: the
            trainer then runs its blocks epoch by epoch.
        """
        return None


class CPUDevice(Device):
    """NumPy, on the host."""

    kind = "cpu"
    backend = "numpy"
    fastpath = "numpy"

    @classmethod
    def parse(cls, spec):
        kind, index = _split(spec, "numpy", ("auto", "cpu"))
        if kind != "cpu" and kind != "auto" or index not in (None, 0):
            raise ValueError(f"Unknown device {spec!r} for backend 'numpy', which runs on "
                             f"the CPU only: use 'cpu' or 'auto'.")
        return cls("cpu")

    @property
    def name(self):
        return "numpy"

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
    backend = "cupy"
    fastpath = "cupy"

    @classmethod
    def parse(cls, spec):
        # For an explicit backend 'cupy', 'auto' is GPU 0 and never the CPU.
        kind, index = _split(spec, "cupy", ("auto", "cuda", "gpu"))
        return _cuda_device(spec, index or 0)

    @property
    def name(self):
        return "cupy" if self.index == 0 else f"cupy:{self.index}"

    @property
    def spec(self):
        return f"cuda:{self.index}"

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

    @property
    def name(self):
        return str(self)

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


class TorchDevice(Device):
    """PyTorch, on one of its devices: ``cpu``, ``cuda:N`` (NVIDIA or ROCm), ``mps``, ``xpu:N``.

    ``native`` is PyTorch's name of the device (``"cpu"``, ``"cuda:0"``,
    ``"mps"``, ``"xpu:0"``). PyTorch is imported only when a specifier is
    parsed or an array is looked at (and then the user has imported it).
    """

    kind = "torch"
    backend = "torch"

    def __init__(self, kind=None, index=None, namespace=None, native="cpu"):
        super().__init__(kind, index, None, str(native))

    def _key(self):
        return (self.kind, self.native)

    def __reduce__(self):
        return (Device, (self.kind, self.index, None, self.native))

    def __str__(self):
        return f"torch:{self.native}"

    @property
    def name(self):
        return "torch" if self.native == "cpu" else f"torch:{self.native}"

    @property
    def spec(self):
        return self.native

    @classmethod
    def parse(cls, spec):
        kind, index = _split(spec, "torch", ("auto", "cpu", "cuda", "gpu", "mps", "xpu"))
        torch = _torch()
        if kind == "auto":
            kind = next((k for k in ("cuda", "mps", "xpu") if _torch_count(torch, k)), "cpu")
        if kind == "gpu":
            kind = "cuda"
        if kind in ("cpu", "mps"):
            if index not in (None, 0):
                raise ValueError(f"Unknown device {spec!r} for backend 'torch': there is one "
                                 f"{kind} device, {kind!r}.")
            if kind == "mps" and not _torch_count(torch, "mps"):
                raise BackendUnavailableError(
                    f"Device 'mps' was asked for, but this PyTorch {torch.__version__} sees "
                    f"no Apple GPU (torch.backends.mps.is_available() is False); MPS needs "
                    f"macOS 12.3+ on Apple silicon. Pass device='cpu' instead.")
            return cls("torch", None, None, kind)
        count, index = _torch_count(torch, kind), index or 0
        if index >= count:
            seen = f"only {count} ({kind}:0 to {kind}:{count - 1})" if count else "none"
            raise BackendUnavailableError(
                f"Device '{kind}:{index}' was asked for with backend 'torch', but this "
                f"PyTorch {torch.__version__} sees {seen}. "
                + (_TORCH_CUDA_HINT if kind == "cuda" else "Install PyTorch's XPU build."))
        return cls("torch", index, None, f"{kind}:{index}")

    @classmethod
    def of(cls, x):
        import array_api_compat as aac

        if not aac.is_torch_array(x):
            return None
        where = x.device
        if where.type in ("cpu", "mps"):
            return cls("torch", None, None, where.type)
        return cls("torch", where.index or 0, None, f"{where.type}:{where.index or 0}")

    @property
    def xp(self):
        _torch()
        import array_api_compat.torch as xp

        return xp

    @property
    def array_device(self):
        return _torch().device(self.native)

    def synchronize(self):
        torch = _torch()
        kind = self.native.split(":")[0]
        if kind == "cuda":
            torch.cuda.synchronize(self.index)
        elif kind in ("mps", "xpu"):
            getattr(torch, kind).synchronize()

    def check_dtype(self, dtype):
        if dtype == "float64" and self.native == "mps":
            raise ValueError(
                "Apple's MPS has no float64, and gpumlp does not compute in a lower "
                "precision than asked: pass dtype='float32' (on the command line: --dtype "
                "float32), or train float64 on device='cpu'.")


class JaxDevice(Device):
    """JAX, on one of its devices (``cpu:N``, ``gpu:N``, ``tpu:N``).

    Within :meth:`context` JAX computes with 64-bit types enabled, for this
    thread only, so float64 training works without touching the user's
    global ``jax_enable_x64`` setting (float32 arrays stay float32: Python
    numbers are weakly typed). :meth:`compile` puts a training step under
    ``jax.jit``.
    """

    kind = "jax"
    backend = "jax"
    compiles = True

    def __init__(self, kind=None, index=0, namespace=None, native="cpu"):
        super().__init__(kind, int(index or 0), None, str(native))

    def _key(self):
        return (self.kind, self.native, self.index)

    def __reduce__(self):
        return (Device, (self.kind, self.index, None, self.native))

    def __str__(self):
        return f"jax:{self.native}:{self.index}"

    @property
    def name(self):
        return "jax" if (self.native, self.index) == ("cpu", 0) else str(self)

    @property
    def spec(self):
        return f"{self.native}:{self.index}"

    @classmethod
    def parse(cls, spec):
        kind, index = _split(spec, "jax", ("auto", "cpu", "gpu", "cuda", "rocm", "tpu"))
        jax = _jax()
        if kind == "auto":
            if index is not None:
                raise ValueError(f"Unknown device {spec!r}: 'auto' takes no index.")
            return cls.of_jax(jax.devices()[0])
        platform = "gpu" if kind in ("cuda", "rocm") else kind
        try:
            found = jax.devices(platform)
        except RuntimeError:
            found = []
        index = index or 0
        if index >= len(found):
            seen = f"only {len(found)}" if found else "none"
            hint = ("Install JAX for your GPU, e.g. pip install -U 'jax[cuda12]'."
                    if platform == "gpu" else "Run on a Cloud TPU VM with jax[tpu]."
                    if platform == "tpu" else "")
            raise BackendUnavailableError(
                f"Device '{platform}:{index}' was asked for with backend 'jax', but JAX "
                f"{jax.__version__} sees {seen} ({', '.join(map(str, jax.devices()))} "
                f"present). {hint}".rstrip())
        return cls("jax", index, None, platform)

    @classmethod
    def of_jax(cls, jax_device):
        """The :class:`JaxDevice` for a ``jax.Device``."""
        import jax

        platform = "gpu" if jax_device.platform in ("gpu", "cuda", "rocm") else \
            jax_device.platform
        return cls("jax", jax.devices(jax_device.platform).index(jax_device), None, platform)

    @classmethod
    def of(cls, x):
        import array_api_compat as aac

        if not aac.is_jax_array(x) or not hasattr(x, "devices"):
            return None
        found = x.devices()
        return cls.of_jax(next(iter(found))) if len(found) == 1 else None

    @property
    def xp(self):
        return _jax().numpy

    @property
    def array_device(self):
        return _jax().devices(self.native)[self.index]

    def context(self):
        jax = _jax()
        enable = getattr(jax, "enable_x64", None)
        if enable is None:  # JAX before 0.6
            from jax.experimental import enable_x64

            return enable_x64()
        return enable(True)

    def asarray(self, x, dtype=None):
        jax = _jax()
        with self.context():
            out = jax.device_put(jax.numpy.asarray(x, dtype=dtype), self.array_device)
        wanted = dtype if dtype is not None else getattr(x, "dtype", None)
        if wanted is not None and np.dtype(wanted) == np.float64 and out.dtype != np.float64:
            raise RuntimeError(  # never train in float32 when float64 was asked for
                f"JAX made {out.dtype} of a float64 array; gpumlp enables 64-bit types "
                f"within each fit, but this JAX {jax.__version__} did not honour it. Pass "
                f"dtype='float32', or set jax.config.update('jax_enable_x64', True).")
        return out

    def synchronize(self):
        # JAX dispatches asynchronously; an effect barrier waits for all of it.
        jax = _jax()
        if hasattr(jax, "effects_barrier"):
            jax.effects_barrier()

    def compile(self, step):
        """``step`` under ``jax.jit``; solver states that are dataclasses become pytrees."""
        jax = _jax()
        jitted = jax.jit(step)

        def run(*args):
            for arg in args:
                _register_pytree(jax, arg)
            # Python numbers (Adam's first step count) become committed
            # arrays here, as the step's own outputs are, so that the second
            # call finds the trace of the first.
            return jitted(*jax.tree_util.tree_map(self._committed, args))

        run.jitted = jitted  # for tests that count compilations
        return run

    def compile_blocks(self, epoch, max_epochs):
        """The epochs of a block as one ``lax.fori_loop`` under ``jax.jit``.

        The number of epochs is an argument of the program, not part of its
        shape: one compilation serves every block length (each length of a
        ``lax.scan`` would be a compilation of its own, 0.3 to 0.5 s on a
        2-core CPU). Each epoch writes its parameters, loss and flag to its
        own slot of buffers of ``max_epochs`` slots.
        """
        jax = _jax()
        jnp = jax.numpy

        def blocks(params, rates, count, X, y, w):
            def body(j, carry):
                params, stacked, scalars = carry
                params, loss, finite = epoch(params, rates[j], X, y, w)
                stacked = [s.at[j].set(p) for s, p in zip(stacked, params)]
                scalars = scalars.at[:, j].set(jnp.stack([loss, finite]))
                return params, stacked, scalars

            start = (list(params), [jnp.zeros((max_epochs, *p.shape), p.dtype) for p in params],
                     jnp.zeros((2, max_epochs), params[0].dtype))
            _, stacked, scalars = jax.lax.fori_loop(0, count, body, start)
            return stacked, scalars

        return self.compile(blocks)

    def _committed(self, leaf):
        jax = _jax()
        return leaf if isinstance(leaf, jax.Array) else jax.device_put(leaf, self.array_device)


def _register_pytree(jax, state):
    """Let ``jax.jit`` take a dataclass solver state, registering its class once."""
    import dataclasses

    cls = type(state)
    if not dataclasses.is_dataclass(state) or cls in _PYTREES:
        return
    names = [f.name for f in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])
    _PYTREES.add(cls)


_PYTREES: set = set()


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


_SPEC = re.compile(r"^(?P<kind>[a-z]+)(?::(?P<index>\d+))?$")

_INSTALL = {"torch": "pip install 'gpumlp[torch]'", "jax": "pip install 'gpumlp[jax]'"}
_TORCH_CUDA_HINT = ("Install a CUDA (or ROCm) build of PyTorch from pytorch.org, check the "
                    "driver with `nvidia-smi`, or pass device='cpu'.")


def default_device_spec() -> str:
    """The specifier used when none is given: ``$GPUMLP_DEVICE`` or ``"auto"``."""
    return os.environ.get(ENV_VAR, "").strip() or "auto"


def default_backend_spec() -> str:
    """The backend used when none is given: ``$GPUMLP_BACKEND`` or ``"auto"``."""
    return os.environ.get(BACKEND_ENV_VAR, "").strip() or "auto"


def get_device(spec: str | Device | None = None, backend: str | None = None) -> Device:
    """Parse a backend and a device specifier, once, into a :class:`Device`.

    Parameters
    ----------
    spec : str, Device or None
        ``"auto"``, ``"cpu"``, ``"cuda"`` (device 0) or ``"cuda:N"``, and for
        PyTorch ``"mps"`` and ``"xpu:N"``, for JAX ``"gpu:N"`` and ``"tpu:N"``;
        a :class:`Device`, returned as is; or ``None``: the environment
        variable ``GPUMLP_DEVICE`` if set, else ``"auto"``.
    backend : str or None
        ``"numpy"``, ``"cupy"``, ``"torch"``, ``"jax"`` or ``"auto"``;
        ``None``: the environment variable ``GPUMLP_BACKEND`` if set, else
        ``"auto"``. ``"auto"`` is NumPy on the CPU and CuPy on CUDA (with
        ``spec="auto"``: the first CUDA GPU if CuPy sees one, else the CPU);
        the devices only one library drives pick it: ``"mps"`` and ``"xpu"``
        PyTorch, ``"tpu"`` JAX. A named backend never falls back to another:
        with it, ``"auto"`` is that library's first accelerator, else its CPU
        (CuPy: GPU 0 or an error).

    Returns
    -------
    Device

    Raises
    ------
    ValueError
        If the specifier or backend is not one of the forms above, or the
        device is not one the backend drives; when a value came from
        ``GPUMLP_DEVICE`` or ``GPUMLP_BACKEND``, the message names the variable.
    BackendUnavailableError
        If the backend's library or the device is missing; the message says
        what to install (``gpumlp[torch]``, ``gpumlp[jax]``, CuPy's extras).
        :class:`CUDAUnavailableError` for CuPy.
    """
    from_env = []
    if backend is None and isinstance(spec, Device):
        return spec   # a Device is of one backend: $GPUMLP_BACKEND is for when none is said
    if backend is None:
        backend = default_backend_spec()
        if os.environ.get(BACKEND_ENV_VAR, "").strip():
            from_env.append(f"{BACKEND_ENV_VAR}={backend!r}")
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string such as 'torch' or 'auto', got "
                        f"{type(backend).__name__}.")
    name = backend.strip().lower()
    if name not in ("auto", *BACKENDS):
        raise _env_error(from_env, ValueError(
            f"Unknown backend {backend!r}. Use 'auto', {', '.join(map(repr, BACKENDS))}."))
    if isinstance(spec, Device):
        if name != "auto" and spec.backend != name:
            raise ValueError(f"Device {spec} is not a device of backend {name!r}.")
        return spec
    if spec is None:
        spec = default_device_spec()
        if os.environ.get(ENV_VAR, "").strip():
            from_env.append(f"{ENV_VAR}={spec!r}")
    if not isinstance(spec, str):
        raise TypeError(
            f"device must be a string such as 'cpu', 'cuda:0' or 'auto', "
            f"got {type(spec).__name__}."
        )
    try:
        if name == "auto":
            return _parse(spec)
        return Device._backends[name].parse(spec)
    except ValueError as exc:
        raise _env_error(from_env, exc) from None
    except BackendUnavailableError as exc:
        if not from_env:
            raise
        # The device came from the environment, not from the caller: say so.
        advice = " and ".join(
            f"{var.split('=')[0]} to {'numpy' if var.startswith(BACKEND_ENV_VAR) else 'cpu'}"
            for var in from_env)
        raise type(exc)(f"{exc} The device came from the environment "
                        f"({' and '.join(from_env)}): unset it, or set {advice}.") from None


def _env_error(from_env, exc):
    """``exc``, saying which environment variable held the value when one did."""
    if not from_env:
        return exc
    if len(from_env) > 1:
        named = f"variables {' and '.join(from_env)} are not a usable backend and device"
    else:
        what = "backend" if from_env[0].startswith(BACKEND_ENV_VAR) else "device"
        named = f"variable {from_env[0]} is not a {what}"
    return ValueError(f"The environment {named}: {exc} Set it to one of those, or unset it.")


def _split(spec, backend, kinds):
    """``(kind, index)`` of a specifier, ``kind`` one of ``kinds``; ValueError otherwise."""
    match = _SPEC.match(spec.strip().lower())
    if match is None or match["kind"] not in kinds:
        raise ValueError(f"Unknown device {spec!r} for backend {backend!r}. Use "
                         f"{', '.join(repr(k) for k in kinds)} (or 'kind:N', N an index).")
    return match["kind"], None if match["index"] is None else int(match["index"])


def _parse(spec):
    """The :class:`Device` a specifier names with backend ``"auto"`` (see :func:`get_device`)."""
    match = _SPEC.match(spec.strip().lower())
    kind = match["kind"] if match else None
    if kind in ("mps", "xpu"):
        return TorchDevice.parse(spec)  # PyTorch alone drives these
    if kind == "tpu":
        return JaxDevice.parse(spec)
    if kind not in ("cpu", "cuda", "gpu", "auto"):
        raise ValueError(
            f"Unknown device {spec!r}. Use 'auto', 'cpu', 'cuda' or 'cuda:N' "
            f"(N a GPU index), or 'mps', 'xpu' (PyTorch) or 'tpu' (JAX)."
        )
    index = match["index"]
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
    return _cuda_device(spec, int(index or 0))


def _cuda_device(spec, index):
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


def _torch():
    """Import PyTorch, or raise the one clear error naming the extra."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            f"Backend 'torch' was asked for, but PyTorch is not installed ({exc}). "
            f"Install it with `{_INSTALL['torch']}` (or a build for your GPU from "
            f"pytorch.org), or choose another backend."
        ) from None
    return torch


def _torch_count(torch, kind):
    """How many ``kind`` devices (``cuda``, ``mps``, ``xpu``) this PyTorch sees."""
    if kind == "cuda":
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return int(bool(mps is not None and mps.is_available()))
    xpu = getattr(torch, "xpu", None)
    return xpu.device_count() if xpu is not None and xpu.is_available() else 0


def _jax():
    """Import JAX, or raise the one clear error naming the extra."""
    try:
        import jax
    except ImportError as exc:
        raise BackendUnavailableError(
            f"Backend 'jax' was asked for, but JAX is not installed ({exc}). Install it "
            f"with `{_INSTALL['jax']}` (or jax[cuda12] for a GPU), or choose another "
            f"backend."
        ) from None
    return jax


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


def inventory() -> list[tuple[str, str, bool, str]]:
    """Every backend and device, usable or not, for ``gpumlp devices``.

    This imports every backend's library that is installed (CuPy, PyTorch,
    JAX), to ask it what it sees.

    Returns
    -------
    list of (backend, device, usable, detail)
        ``detail`` describes a usable device (library version, name,
        memory) and says why an unusable one cannot be used.
    """
    rows = [("numpy", "cpu", True, f"NumPy {np.__version__}")]
    try:
        count = _cuda_device_count()
    except CUDAUnavailableError as exc:
        rows.append(("cupy", "cuda", False, str(exc)))
    else:
        cupy = _cupy()
        for index in range(count):
            props = cupy.cuda.runtime.getDeviceProperties(index)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            rows.append(("cupy", f"cuda:{index}", True, f"CuPy {cupy.__version__}, {name}, "
                         f"{props['totalGlobalMem'] / 2**30:.1f} GiB"))
    try:
        torch = _torch()
    except BackendUnavailableError as exc:
        rows.append(("torch", "-", False, str(exc)))
    else:
        rows.append(("torch", "cpu", True, f"PyTorch {torch.__version__}"))
        for kind, why in (("cuda", "no CUDA or ROCm GPU (a CPU-only build, or no driver)"),
                          ("mps", "no Apple GPU (MPS needs macOS 12.3+ on Apple silicon)"),
                          ("xpu", "no Intel GPU (XPU)")):
            count = _torch_count(torch, kind)
            if not count:
                rows.append(("torch", kind, False, f"PyTorch {torch.__version__} sees {why}"))
            for index in range(count):
                spec = kind if kind == "mps" else f"{kind}:{index}"
                name = torch.cuda.get_device_name(index) if kind == "cuda" else kind
                detail = f"{name}, no float64" if kind == "mps" else name
                rows.append(("torch", spec, True, detail))
    try:
        jax = _jax()
    except BackendUnavailableError as exc:
        rows.append(("jax", "-", False, str(exc)))
    else:
        for platform in ("cpu", "gpu", "tpu"):
            try:
                found = jax.devices(platform)
            except RuntimeError:
                found = []
            if not found:
                rows.append(("jax", platform, False, f"JAX {jax.__version__} has no "
                             f"{platform} platform"
                             + (" (install jax[cuda12])" if platform == "gpu" else "")))
            for index, device in enumerate(found):
                rows.append(("jax", f"{platform}:{index}", True,
                             f"JAX {jax.__version__}, {device.device_kind}"))
    return rows


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


def read_floats(*values, xp=None) -> list[float]:
    """0-d arrays read back to the host as Python floats, in one transfer.

    The one host read of training: the trainer's per-block figures and the
    few numbers a solver's decisions need (``learning_rate_init="auto"``,
    L-BFGS's line search) come back through here.

    Parameters
    ----------
    *values : 0-d arrays (or arrays of one element) of one namespace
        NumPy scalars among them are already on the host and taken as they
        are (a block runner that read its figures itself, such as
        :class:`gpumlp.fastpath.compiled.CompiledBlocks`).
    xp : namespace, optional
        The arrays' namespace, when the caller knows it (saves looking it up).

    Returns
    -------
    list of float
    """
    if any(isinstance(v, np.generic) for v in values):
        on_device = [v for v in values if not isinstance(v, np.generic)]
        read = iter(read_floats(*on_device, xp=xp) if on_device else ())
        return [float(v) if isinstance(v, np.generic) else next(read) for v in values]
    if xp is None:
        from array_api_compat import array_namespace

        xp = array_namespace(*values)
    # Reshaping only what is not 0-d already: each call costs microseconds,
    # and a solver may read once a step.
    stacked = xp.stack([v if getattr(v, "ndim", None) == 0 else xp.reshape(xp.asarray(v), ())
                        for v in values])
    return [float(v) for v in to_numpy(stacked)]


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
