"""Atomic file writes: a temporary file beside the target, then one rename.

A crash or Ctrl-C never leaves half a file where a good one was, and the file
written gets the mode a plain ``open(path, "w")`` would give it: the existing
file's mode when it is replaced, else ``0o666`` less the umask (``mkstemp``
alone would leave every file ``0o600``). This module imports nothing from the
rest of gpumlp, so every writer can use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path", "write_text_atomic"]


def _current_umask() -> int:
    # The only portable way to read the umask is to set it and set it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    """The permission bits ``path`` should get: its own if it exists, else 0666 & ~umask."""
    try:
        st = os.stat(path)
    except OSError:
        return 0o666 & ~_current_umask()
    if stat.S_ISREG(st.st_mode):
        return stat.S_IMODE(st.st_mode)
    return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success, rename it to ``path``.

    Parameters
    ----------
    path : str or path-like
        The file to write. Its folder must exist.

    Yields
    ------
    str
        The temporary file to write to; it exists, empty, with the mode the
        final file will have.

    Raises
    ------
    OSError
        If the temporary file cannot be created (the message names ``path``,
        not the temporary file).

    Notes
    -----
    On any error (Ctrl-C included) the temporary file is removed and ``path``
    is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    try:
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes to keep
            os.fchmod(fd, _mode_for(path))
    finally:
        os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
    text : str
    """
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
