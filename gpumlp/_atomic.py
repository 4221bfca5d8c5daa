"""Atomic file writes: a temporary file beside the target, renamed into place.

A crash, an error or Ctrl-C never leaves half a file where a good one was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

__all__ = ["atomic_path", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success, rename it to ``path``.

    On any error (Ctrl-C included) the temporary file is removed and ``path``
    is left as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
