"""The one way gpumlp writes a file: checked, through a temporary file, then one rename.

Every file gpumlp writes (models, checkpoints, predictions, JSON reports,
plots) goes through :func:`atomic_path`, which promises:

* **Only regular files are written.** A target that exists and is not a
  regular file (a directory, a FIFO, a device such as ``/dev/null``) is
  refused: replacing it by a rename would destroy it, even as root. A
  symbolic link is followed: the file it points to is replaced and the link
  is kept, as ``open(path, "w")`` would do (:func:`check_target` says where).
  A path that leads to an open file descriptor (``/dev/stdout``,
  ``/dev/fd/N``, ``/proc/self/fd/N``) is refused: the rename would replace
  the file a shell redirected to (``>> log``) instead of writing to it. A
  read-only file is refused, as ``open(path, "w")`` refuses it: a rename
  would replace it all the same.
* **All or nothing.** The data goes to a temporary file in the target's
  folder, is flushed to the disk, and is renamed over the target in one step:
  a crash, ``SIGKILL`` or Ctrl-C never leaves half a file where a good one
  was.
* **The mode of a plain write**: the existing file's mode when it is
  replaced, else ``0o666`` less the umask (``mkstemp`` alone would leave
  every file ``0o600``).
* **No litter.** A process killed while writing leaves its temporary file
  behind; the next write to that folder removes such files, but only ours
  (named ``.tmp-gpumlp-<pid>-<host>-...``) and only stale ones: their writer,
  a process on this host, no longer exists, and no process holds the lock
  each writer keeps on its temporary file (which the kernel drops when the
  writer dies; it guards a writer whose pid this process cannot see, in
  another pid namespace). A concurrent writer's file is never touched.
* **Errors name the file**: an ``OSError`` says ``cannot write <target>: ...``
  with the target as the caller gave it, never the temporary file.

This module imports nothing from the rest of gpumlp, so every writer can use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: no locks, and no stale files removed (see below)
    fcntl = None

__all__ = ["atomic_path", "check_target", "mark_input", "remove_stale_temporaries",
           "write_text_atomic"]

_TEMP_PREFIX = ".tmp-gpumlp-"
#: Our temporary files: ``.tmp-gpumlp-<pid>-<host tag>-<mkstemp's 8 characters>-<name>``.
_TEMP_NAME = re.compile(re.escape(_TEMP_PREFIX) + r"(\d+)-([0-9a-f]{8})-[a-z0-9_]{8}-")
#: The target's name is kept in the temporary file's for people reading a
#: folder listing; it is cut so that the whole stays under NAME_MAX (255).
_NAME_KEPT = 128

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _current_umask() -> int:
    # The only portable way to read the umask is to set it and set it back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host_tag() -> str:
    """Eight hex digits naming this host, so a shared folder's files are told apart."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _cannot_write(path: str, exc: OSError) -> OSError:
    """``exc`` again, with ``path`` (as the caller gave it) in its message."""
    if str(exc).startswith(f"cannot write {path}"):
        return exc
    if exc.errno is None:
        return type(exc)(f"cannot write {path}: {exc}")
    return type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}")


def _open_stream(path: str) -> str | None:
    """What ``path`` names when it leads to an open file descriptor, else None.

    ``/dev/stdout``, ``/dev/fd/1`` and ``/proc/self/fd/1`` are links the
    kernel resolves to whatever the descriptor is open on: a pipe, or the
    file a shell redirected to (``>> log``). Replacing that file by a rename
    would drop what the redirection wrote and keeps writing.
    """
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    hops, current = 0, os.path.join(folder, os.path.basename(path))
    while hops < 40:
        parts = current.split(os.sep)
        if current.startswith("/proc/") and "fd" in parts[3:4]:
            return f"a file descriptor ({current})"
        if current.startswith("/dev/fd/") or current in ("/dev/stdout", "/dev/stderr",
                                                         "/dev/stdin"):
            return f"a standard stream or file descriptor ({current})"
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current),
                                                os.readlink(current)))
        hops += 1
    return None


def check_target(path: str | os.PathLike) -> str:
    """Check that ``path`` may be written, and return the file that will be written.

    Parameters
    ----------
    path : str or path-like
        The file to write, as the user named it.

    Returns
    -------
    str
        The absolute path of the file that a write replaces or creates:
        ``path`` itself, or, for a symbolic link, the file it points to
        (which may not exist yet).

    Raises
    ------
    IsADirectoryError
        If ``path`` is a directory (or a link to one).
    OSError
        If ``path`` exists and is not a regular file (a FIFO, a device, a
        socket), if it cannot be examined (a loop of links, no permission),
        or if its folder does not exist; if it names an open file descriptor
        (``/dev/stdout``, ``/dev/fd/N``, ``/proc/self/fd/N``); or, as a
        ``PermissionError``, if it is a file this process may not write (a
        read-only file, which a rename would replace all the same). The
        message names ``path``.
    """
    path = os.fspath(path)
    stream = _open_stream(path)
    if stream is not None:
        raise OSError(f"cannot write {path}: it names {stream}, an open file of this process "
                      f"(a shell's redirection), which gpumlp would replace rather than "
                      f"write to, losing what the redirection keeps; choose a file path.")
    real = os.path.realpath(path)
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        where = "" if real == os.path.abspath(path) else f" (it links to {real})"
        error = IsADirectoryError if stat.S_ISDIR(mode) else OSError
        raise error(f"cannot write {path}{where}: it is {kind}, not a regular file, and "
                    f"gpumlp replaces only regular files; choose a file path.")
    if mode is not None and not os.access(real, os.W_OK):
        where = "" if real == os.path.abspath(path) else f" (it links to {real})"
        raise PermissionError(13, f"cannot write {path}{where}: the file is read-only, and "
                                  f"gpumlp does not replace a file its owner protected; "
                                  f"make it writable (chmod u+w) or choose another path")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, f"cannot write {path}: its folder {folder} does not exist")
    return real


def _lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False if another holds it.

    Where files cannot be locked (no fcntl, a filesystem without locks), a
    lock is taken to be held by someone: nothing is removed on a doubt.
    """
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _is_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process we may not signal does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: ``(st_dev, st_ino, st_size, st_mtime_ns)`` of the files this process was
#: asked to read (the size and time so that a new file on a reused inode is
#: not mistaken for one of them): never
#: removed as stale temporaries, whatever their names (a user may recover a
#: killed writer's complete temporary file by loading it).
_INPUTS: set = set()


def mark_input(path: str | os.PathLike) -> None:
    """Record ``path`` as a file this process reads, so that no cleanup removes it.

    Parameters
    ----------
    path : str or path-like
        A file named as an input (a model to load, data to read). A path
        that cannot be examined is ignored.
    """
    with contextlib.suppress(OSError, TypeError, ValueError):
        _INPUTS.add(_identity(os.stat(path)))


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def remove_stale_temporaries(folder: str) -> list[str]:
    """Remove the temporary files in ``folder`` that killed gpumlp writers left.

    Only files named as :func:`atomic_path` names them, whose writer was a
    process on this host that no longer runs. A file of a live writer, of
    another host, or of anything else is kept; so is anything that cannot be
    examined or removed (the write that asked goes on regardless).

    Returns
    -------
    list of str
        The names removed.
    """
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return []
    host = _host_tag()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        match = _TEMP_NAME.match(name)
        if match is None or match.group(2) != host or _is_running(int(match.group(1))):
            continue
        full = os.path.join(folder, name)
        with contextlib.suppress(OSError):
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                st = os.fstat(fd)
                if (stat.S_ISREG(st.st_mode) and _identity(st) not in _INPUTS
                        and _lock(fd)):
                    os.unlink(full)
                    removed.append(name)
            finally:
                os.close(fd)
    return removed


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
        The file to write. Its folder must exist. If it exists it must be a
        regular file, or a symbolic link to one (then the file linked to is
        replaced, and the link kept).

    Yields
    ------
    str
        The temporary file to write to; it exists, empty, with the mode the
        final file will have.

    Raises
    ------
    OSError
        If ``path`` is refused (see :func:`check_target`), or if creating,
        writing or renaming the temporary file fails (a full disk, say). The
        message names ``path``, never the temporary file.

    Notes
    -----
    On any error (Ctrl-C included) the temporary file is removed and ``path``
    is left as it was. Before writing, the stale temporary files of killed
    writers in the same folder are removed (:func:`remove_stale_temporaries`).
    """
    shown = os.fspath(path)
    real = check_target(shown)
    folder = os.path.dirname(real)
    remove_stale_temporaries(folder)
    name = os.path.basename(real)[-_NAME_KEPT:]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-{_host_tag()}-",
                                   suffix=f"-{name}", dir=folder)
    except OSError as exc:
        raise _cannot_write(shown, exc) from None
    try:
        if fcntl is None:  # Windows would not rename a file still open
            os.close(fd)
            fd = None
        else:
            # The descriptor stays open, holding the lock that tells other
            # writers this file is alive, until the file is renamed or removed.
            _lock(fd)
            os.fchmod(fd, _mode_for(real))
        try:
            yield tmp
        except OSError as exc:
            raise _cannot_write(shown, exc) from None
        check_target(shown)  # it may have been replaced by a FIFO meanwhile
        try:
            _flush_to_disk(tmp)
            os.replace(tmp, real)
        except OSError as exc:
            raise _cannot_write(shown, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if fd is not None:
            os.close(fd)


def _flush_to_disk(tmp: str) -> None:
    """fsync ``tmp``, so that a power cut after the rename cannot leave it empty."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or path-like
    text : str
    """
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
