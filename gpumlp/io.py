"""Files: atomic writes (and, later, model files)."""

from __future__ import annotations

import os
import tempfile

__all__ = ["write_text_atomic"]


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A crash midway leaves the old file (or none) in place, never half of a
    new one.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
