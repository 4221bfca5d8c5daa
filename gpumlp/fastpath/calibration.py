"""Where the C blocks hand over to the NumPy fast path on this CPU: measured once, kept, read.

The C blocks (:mod:`gpumlp.fastpath.cblocks`) beat the NumPy fast path up to
an epoch's work ``n * h * (f + k)`` that depends on the CPU (its vector
width, its cores, its caches) and on its BLAS. ``cblocks.MAX_WORK`` is that
line as measured on the project's machine; :func:`gpumlp.fastpath.cblocks.calibrate`
(or ``gpumlp calibrate``) measures it on the user's CPU and keeps it in a
per-user file, keyed by what decides it (:func:`cpu_key`): the CPU model,
the instruction set the C blocks run with, the BLAS's core type and the
number of cores. The dispatch reads the line once per process
(:func:`max_work`):

1. the environment variable ``GPUMLP_CBLOCKS_MAX_WORK`` (an integer; ``0``
   keeps every fit on the NumPy path), read at the first fit that asks;
2. else this CPU's entry in the calibration file, where there is one;
3. else the measured default (``cblocks.MAX_WORK``, which holds where the
   NumPy path would run no more threads than the C kernel's two: see
   :func:`gpumlp.fastpath.cblocks.blocks_for`).

No timing is ever taken during a fit. The two paths round differently
(within the agreement suite's tolerances), so a choice made afresh from
timings in each process could send the same fit down either path from one
run to the next; here it changes only when the user calibrates again or
sets the variable.

The file is ``$XDG_CACHE_HOME/gpumlp/cblocks.json`` (by default
``~/.cache/gpumlp/cblocks.json``; ``%LOCALAPPDATA%\\gpumlp`` on Windows),
JSON: ``{"format": "gpumlp-cblocks-calibration-1", "entries": {KEY: {"max_work":
int, "key": {...}, "date": "...", "rows": [...]}}}``. A damaged file is
ignored with a :class:`CalibrationWarning` that says how to mend it.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import warnings
from pathlib import Path

__all__ = ["ENVIRONMENT", "FORMAT", "CalibrationWarning", "cache_path", "cpu_key",
           "crossover", "max_work", "store"]

#: The environment variable that overrides every calibration.
ENVIRONMENT = "GPUMLP_CBLOCKS_MAX_WORK"

#: The calibration file's format tag.
FORMAT = "gpumlp-cblocks-calibration-1"

#: The line chosen in this process, by instruction set: an int, or None for
#: the caller's default. Set at the first fit that asks, then kept.
_CHOSEN: dict = {}
_LOCK = threading.Lock()


class CalibrationWarning(UserWarning):
    """The calibration file could not be used; the measured default applies."""


def cache_path() -> Path:
    """The per-user calibration file (it may not exist)."""
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        root = Path(os.environ["LOCALAPPDATA"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "gpumlp" / "cblocks.json"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _blas_core() -> str:
    """The BLAS's name and the core type it runs its kernels for (OpenBLAS's
    ``architecture``, which ``OPENBLAS_CORETYPE`` changes)."""
    from threadpoolctl import ThreadpoolController

    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas":
            return f"{lib.internal_api} {getattr(lib, 'architecture', None) or ''}".strip()
    return "unknown"


def cpu_key(isa: str) -> dict:
    """What the crossover depends on, for the C blocks running ``isa``.

    Returns
    -------
    dict
        ``{"cpu": model name, "isa": isa, "blas": "openblas Haswell", "cores": n}``.
    """
    return {"cpu": _cpu_model(), "isa": isa, "blas": _blas_core(),
            "cores": os.cpu_count() or 1}


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


def _parse_override(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"The environment variable {ENVIRONMENT}={text!r} is not a "
                         f"non-negative integer (the largest epoch, n * h * (f + k), that "
                         f"the C blocks take; 0 for none); set one, or unset it.")
    return value


def check_override() -> None:
    """Raise where ``GPUMLP_CBLOCKS_MAX_WORK`` is set to anything but a non-negative integer.

    Every fit checks it, also one the C blocks would not serve, so that a typo
    is never silently ignored.

    Raises
    ------
    ValueError
        Naming the variable and what it takes.
    """
    text = os.environ.get(ENVIRONMENT, "").strip()
    if text:
        _parse_override(text)


def _entries(path: Path) -> dict:
    """The file's entries, damaged ones included; ValueError (why) for a file that is
    not a calibration."""
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"it cannot be read as JSON ({exc})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT \
            or not isinstance(content.get("entries"), dict):
        raise ValueError(f"it is not a {FORMAT} file")
    return content["entries"]


def _damaged(entry) -> bool:
    value = entry.get("max_work") if isinstance(entry, dict) else None
    return not isinstance(value, int) or isinstance(value, bool) or value < 0


def _read(path: Path) -> dict:
    """The file's entries; ValueError (why) for a file that is not a calibration."""
    entries = _entries(path)
    for key, entry in entries.items():
        if _damaged(entry):
            raise ValueError(f"its entry {key[:80]!r} has no non-negative integer max_work")
    return entries


def _from_file(isa: str) -> int | None:
    path = cache_path()
    if not path.is_file():      # the common case: nothing to key, nothing to read
        return None
    try:
        entries = _read(path)
    except ValueError as exc:
        warnings.warn(f"The C blocks' calibration file {path} is ignored: {exc}. The "
                      f"measured default applies; run `gpumlp calibrate` to write it "
                      f"again, or delete it.", CalibrationWarning, stacklevel=4)
        return None
    entry = entries.get(_key_text(cpu_key(isa)))
    return None if entry is None else entry["max_work"]


def max_work(isa: str) -> int | None:
    """The largest epoch, ``n * h * (f + k)``, that the C blocks take here, where it was
    set: by ``GPUMLP_CBLOCKS_MAX_WORK``, else by this CPU's calibration.

    Parameters
    ----------
    isa : str
        The instruction set the C blocks run with (``cblocks.chosen_isa()``).

    Returns
    -------
    int or None
        None where neither says (the caller's measured default applies);
        decided at the first call for ``isa`` in this process and the same
        for every later one (until :func:`store` writes a new calibration).

    Raises
    ------
    ValueError
        ``GPUMLP_CBLOCKS_MAX_WORK`` is not a non-negative integer.
    """
    with _LOCK:
        if isa not in _CHOSEN:
            text = os.environ.get(ENVIRONMENT, "").strip()
            _CHOSEN[isa] = _parse_override(text) if text else _from_file(isa)
        return _CHOSEN[isa]


def crossover(rows: list[tuple[int, float]]) -> int:
    """The calibrated line from measurements: the largest work up to which C always won.

    Parameters
    ----------
    rows : list of (work, ratio)
        Per ladder size, the epoch's work and the time of the C blocks over
        that of the NumPy fast path (below 1: C is faster).

    Returns
    -------
    int
        The work of the last size, in increasing work, before the first
        where C was not faster; 0 when it lost at the smallest. Nothing is
        extrapolated past the ladder's largest size.
    """
    line = 0
    for work, ratio in sorted(rows):
        if not ratio < 1.0:
            break
        line = int(work)
    return line


def store(entry: dict, path: Path | None = None) -> Path:
    """Write one CPU's calibration into the file, keeping the other CPUs' entries.

    Parameters
    ----------
    entry : dict
        ``{"key": cpu_key(...), "max_work": int, ...}``.
    path : Path, optional
        By default :func:`cache_path`.

    Returns
    -------
    Path
        The file written (atomically: a reader sees the old file or the new).
    """
    from .._atomic import write_text_atomic

    path = cache_path() if path is None else path
    entries = {}
    if path.is_file():
        try:
            entries = _entries(path)
        except ValueError as exc:   # not a calibration: replaced, as the warning promised
            warnings.warn(f"{path} was replaced: {exc}.", CalibrationWarning, stacklevel=2)
        damaged = [key for key, kept in entries.items() if _damaged(kept)]
        if damaged:     # the other CPUs' sound entries stay
            warnings.warn(f"{path}: {len(damaged)} damaged entr"
                          f"{'y was' if len(damaged) == 1 else 'ies were'} dropped "
                          f"({', '.join(repr(k[:80]) for k in damaged)}); the other CPUs' "
                          f"entries are kept.", CalibrationWarning, stacklevel=2)
            entries = {k: v for k, v in entries.items() if k not in damaged}
    entries[_key_text(entry["key"])] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"format": FORMAT, "entries": entries}, indent=1))
    with _LOCK:
        _CHOSEN.pop(entry["key"]["isa"], None)    # this process reads it afresh
    return path
