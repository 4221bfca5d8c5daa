"""One safe writer (issue 20, §2): every file gpumlp writes goes through ``atomic_path``.

Each writer (model, predictions, JSON report, plot) refuses a target that is
not a regular file, writes through a symbolic link, names the file in its
errors, and leaves no temporary file; a killed writer's temporary file is
removed by the next write to its folder, a live one's never. The command
line saves before it prints, and a closed stdout costs it the report only.
"""

import errno
import os
import stat
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from test_atomic import SUFFIX, WRITERS

import gpumlp
from gpumlp import _atomic, io
from gpumlp._atomic import atomic_path, check_target, remove_stale_temporaries
from gpumlp.cli import main

posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, devices and pids: POSIX")


def _temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.startswith(".tmp"))


def _make_fifo(path):
    os.mkfifo(path)


def _make_directory(path):
    os.mkdir(path)


def _make_character_device(path):
    """A character device like /dev/null, made here so that no real device is at risk."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError, OSError) as exc:
        pytest.skip(f"cannot make a character device here ({exc}); needs root or CAP_MKNOD")


def _make_link_to_fifo(path):
    os.mkfifo(str(path) + ".fifo")
    os.symlink(os.path.basename(str(path) + ".fifo"), path)


SPECIAL = {"fifo": (_make_fifo, "a FIFO"), "directory": (_make_directory, "a directory"),
           "character-device": (_make_character_device, "a character device"),
           "link-to-fifo": (_make_link_to_fifo, "a FIFO")}


def _kind(path):
    return stat.S_IFMT(os.stat(path).st_mode)


@posix_only
@pytest.mark.parametrize("special", sorted(SPECIAL))
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_target_that_is_not_a_regular_file_is_refused_and_kept(tmp_path, writer, special):
    make, kind = SPECIAL[special]
    path = tmp_path / f"out{SUFFIX[writer]}"
    make(path)
    before = _kind(path)
    with pytest.raises(OSError) as caught:
        WRITERS[writer](path)
    assert f"cannot write {path}" in str(caught.value) and f"it is {kind}" in str(caught.value)
    assert _kind(path) == before  # still a FIFO, a directory, a device
    assert _temporaries(tmp_path) == []


def test_dev_null_is_refused_by_the_check_alone():
    """``gpumlp train --out /dev/null`` replaced /dev/null as root; only the check runs here."""
    if not os.path.exists(os.devnull) or os.devnull == "nul":
        pytest.skip("no /dev/null")
    with pytest.raises(OSError, match="it is a character device, not a regular file"):
        check_target(os.devnull)


@posix_only
@pytest.mark.parametrize("special", ["fifo", "character-device", "directory"])
def test_the_cli_refuses_a_special_out_before_training(tmp_path, capsys, monkeypatch, special):
    monkeypatch.setattr("gpumlp.cli._train_and_report",
                        lambda *a, **k: pytest.fail("training started"))
    out = tmp_path / "m.npz"
    SPECIAL[special][0](out)
    before = _kind(out)
    assert main(["train", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot write {out}: it is {SPECIAL[special][1]}" in err
    assert len(err.strip().splitlines()) == 1 and _kind(out) == before


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_symbolic_link_is_written_through_and_kept(tmp_path, writer):
    """The README's choice: the file linked to is replaced (atomically); the link stays."""
    target = tmp_path / "real" / f"target{SUFFIX[writer]}"
    target.parent.mkdir()
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    link = tmp_path / f"link{SUFFIX[writer]}"
    link.symlink_to(target)
    WRITERS[writer](link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != b"old" and stat.S_IMODE(os.stat(target).st_mode) == 0o640
    assert _temporaries(tmp_path) == _temporaries(target.parent) == []
    dangling = tmp_path / f"dangling{SUFFIX[writer]}"
    dangling.symlink_to(tmp_path / "real" / f"new{SUFFIX[writer]}")
    WRITERS[writer](dangling)  # as open(path, "w") would: the file linked to is created
    assert dangling.is_symlink() and (tmp_path / "real" / f"new{SUFFIX[writer]}").is_file()


def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    """A full disk said "[Errno 28]" alone; simulated here by the write failing so."""
    path = tmp_path / "m.npz"
    WRITERS["model"](path)
    before = path.read_bytes()

    def full(handle, **arrays):
        handle.write(b"PK")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError) as caught:
        WRITERS["model"](path)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"[Errno 28] cannot write {path}: {os.strerror(errno.ENOSPC)}"
    assert path.read_bytes() == before and _temporaries(tmp_path) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_real_enospc_from_dev_full_names_the_target(tmp_path, monkeypatch):
    """The temporary file's writes go to /dev/full, which fails them with ENOSPC."""
    path = tmp_path / "report.json"
    real_open = open

    def open_on_dev_full(file, mode="r", *args, **kwargs):
        if os.path.basename(str(file)).startswith(".tmp-gpumlp-") and "w" in mode:
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_on_dev_full)
    with pytest.raises(OSError) as caught:
        _atomic.write_text_atomic(path, "{}" * 10_000)
    assert caught.value.errno == errno.ENOSPC and f"cannot write {path}: " in str(caught.value)
    assert not path.exists() and _temporaries(tmp_path) == []


def test_the_cli_names_the_model_file_on_a_full_disk(tmp_path, capsys, monkeypatch):
    def full(handle, **arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", full)
    out = tmp_path / "m.npz"
    assert main(["train", "--quiet", "--samples", "100", "--epochs", "2", "--device", "cpu",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"gpumlp train: error: [Errno 28] cannot write {out}: No space left" in err


# ---------------------------------------------------- stale temporary files
_WRITE_AND_WAIT = textwrap.dedent("""
    import sys, time
    from gpumlp._atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "w") as handle:
            handle.write("from the child")
        print("writing", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _writer_in_a_child(path, seconds):
    """A process inside ``atomic_path(path)``, its temporary file written, sleeping."""
    child = subprocess.Popen([sys.executable, "-c", _WRITE_AND_WAIT, str(path), str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "writing\n"
    return child


@posix_only
def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    """Issue 20: 6 temporary files after 12 SIGKILLs during checkpoint writes."""
    for _ in range(3):
        child = _writer_in_a_child(tmp_path / "m.npz", 60)
        child.kill()
        child.wait()
        child.stdout.close()
        # What a killed writer leaves; each new writer removed the last one's.
        assert len(_temporaries(tmp_path)) == 1
    _atomic.write_text_atomic(tmp_path / "other.json", "{}")  # any write to the folder
    assert _temporaries(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["other.json"]


@posix_only
def test_a_concurrent_writers_temporary_file_is_left_alone(tmp_path):
    child = _writer_in_a_child(tmp_path / "m.json", 1.5)
    try:
        (live,) = _temporaries(tmp_path)
        _atomic.write_text_atomic(tmp_path / "m.json", "from the parent")
        assert _temporaries(tmp_path) == [live]
    finally:
        child.wait(timeout=60)
        child.stdout.close()
    assert child.returncode == 0  # its rename found its file
    assert (tmp_path / "m.json").read_text() == "from the child"
    assert _temporaries(tmp_path) == []


@posix_only
def test_only_our_own_stale_files_of_this_host_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = _atomic._host_tag()
    other_host = "0" * 8 if host != "0" * 8 else "1" * 8
    names = {
        "stale": f".tmp-gpumlp-{dead.pid}-{host}-abcd_123-m.npz",
        "live (this process)": f".tmp-gpumlp-{os.getpid()}-{host}-abcd_123-m.npz",
        "another host": f".tmp-gpumlp-{dead.pid}-{other_host}-abcd_123-m.npz",
        "not ours": ".tmp-abcd_123m.npz",
        "not ours either": f".tmp-gpumlp-{dead.pid}-{host}-m.npz",
    }
    for name in names.values():
        (tmp_path / name).write_text("x")
    (tmp_path / f".tmp-gpumlp-{dead.pid}-{host}-dir_1234-d").mkdir()  # not a file: kept
    assert remove_stale_temporaries(str(tmp_path)) == [names["stale"]]
    assert len(os.listdir(tmp_path)) == len(names)


@posix_only
def test_a_locked_file_is_alive_even_when_its_pid_is_not_seen(tmp_path):
    """A writer in another pid namespace: its pid means nothing here, its lock does."""
    fcntl = pytest.importorskip("fcntl")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / f".tmp-gpumlp-{dead.pid}-{_atomic._host_tag()}-abcd_123-m.npz"
    path.write_text("x")
    with open(path) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert remove_stale_temporaries(str(tmp_path)) == [] and path.exists()
    assert remove_stale_temporaries(str(tmp_path)) == [path.name] and not path.exists()


@posix_only
def test_a_temporary_file_names_its_writer_and_stays_under_name_max(tmp_path):
    long_name = "m" * 250 + ".npz"
    with atomic_path(tmp_path / long_name) as tmp:
        name = os.path.basename(tmp)
        assert name.startswith(f".tmp-gpumlp-{os.getpid()}-{_atomic._host_tag()}-")
        assert len(name) <= 255 and _atomic._TEMP_NAME.match(name)
    assert (tmp_path / long_name).exists()


# ------------------------------------------------- save before printing; EPIPE
def _run_with_closed_stdout(*args):
    """Run the CLI with a stdout whose reader has already gone: every write meets EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "gpumlp", *args], stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=300,
                                env=dict(os.environ, GPUMLP_DEVICE="cpu"))
    finally:
        os.close(write_end)
    return result


@posix_only
def test_a_closed_stdout_never_loses_the_model_and_ends_quietly(tmp_path):
    """``gpumlp train ... --out m.npz | head -1`` trained, died on EPIPE and wrote nothing."""
    out, plot = tmp_path / "m.npz", tmp_path / "loss.png"
    args = ["train", "--samples", "200", "--epochs", "7", "--out", str(out)]
    try:
        import matplotlib  # noqa: F401

        args += ["--plot", str(plot)]
    except ImportError:
        plot = None
    result = _run_with_closed_stdout(*args)
    assert result.returncode == 141, result.stderr  # 128 + SIGPIPE, as a shell reports
    assert result.stderr == ""
    assert io.read_metadata(out)["n_iter"] == 7
    assert plot is None or plot.read_bytes()[:4] == b"\x89PNG"


@posix_only
def test_predict_into_a_closed_pipe_ends_quietly(tmp_path):
    model = tmp_path / "m.npz"
    assert main(["train", "--samples", "100", "--epochs", "2", "--quiet", "--device", "cpu",
                 "--out", str(model)]) == 0
    features = tmp_path / "X.npy"
    np.save(features, np.ones((5000, 10)))
    result = _run_with_closed_stdout("predict", "--model", str(model), "--data",
                                     str(features))
    assert result.returncode == 141 and result.stderr == ""


@posix_only
def test_a_reader_that_closes_after_one_line_ends_predict_quietly(tmp_path):
    """``gpumlp predict ... | head -1``: the pipe breaks in the middle of the output."""
    model = tmp_path / "m.npz"
    assert main(["train", "--samples", "100", "--epochs", "2", "--quiet", "--device", "cpu",
                 "--out", str(model)]) == 0
    features = tmp_path / "X.npy"
    np.save(features, np.ones((50_000, 10)))  # ~600 KB of CSV: far more than a pipe holds
    child = subprocess.Popen([sys.executable, "-m", "gpumlp", "predict", "--model", str(model),
                              "--data", str(features)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=dict(os.environ, GPUMLP_DEVICE="cpu"))
    assert child.stdout.readline() == b"y\n"
    child.stdout.close()
    err = child.stderr.read().decode()
    child.stderr.close()
    assert child.wait(timeout=300) == 141 and err == ""


def test_the_model_is_saved_before_the_report_is_printed(tmp_path, capsys, monkeypatch):
    """The report's first line is printed only once the model and the plot are on disk."""
    out = tmp_path / "m.npz"
    import builtins

    seen = []
    real_print = builtins.print

    def print_and_look(*args, **kwargs):
        text = " ".join(map(str, args))
        if text.startswith("epochs:"):
            seen.append(out.exists())
        real_print(*args, **kwargs)

    monkeypatch.setattr(builtins, "print", print_and_look)
    assert main(["train", "--samples", "100", "--epochs", "3", "--quiet", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert seen == [True]


def test_the_guarded_stdout_passes_writes_through_until_the_pipe_breaks():
    from gpumlp.cli import _GuardedStdout

    class Pipe:
        def __init__(self):
            self.text, self.closed = "", False

        def write(self, text):
            if self.closed:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe")
            self.text += text
            return len(text)

        def flush(self):
            if self.closed:
                raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    pipe = Pipe()
    guarded = _GuardedStdout(pipe)
    guarded.write("one\n")
    assert pipe.text == "one\n" and not guarded.broken
    pipe.closed = True
    assert guarded.write("two\n") == 4 and guarded.broken
    guarded.flush()
    guarded.write("three\n")
    assert pipe.text == "one\n"


def test_out_dash_is_refused_for_a_model_and_means_stdout_for_predictions(tmp_path, capsys):
    assert main(["train", "--quiet", "--out", "-"]) == 2
    assert "--out - : --out writes a file, not stdout" in capsys.readouterr().err
    assert not os.path.exists("-")
    model = tmp_path / "m.npz"
    assert main(["train", "--samples", "100", "--epochs", "2", "--quiet", "--device", "cpu",
                 "--out", str(model)]) == 0
    features = tmp_path / "X.npy"
    np.save(features, np.ones((3, 10)))
    capsys.readouterr()
    assert main(["predict", "--model", str(model), "--data", str(features), "--out", "-"]) == 0
    printed = capsys.readouterr().out
    assert main(["predict", "--model", str(model), "--data", str(features)]) == 0
    assert printed == capsys.readouterr().out and printed.splitlines()[0] == "y"
    assert len(printed.splitlines()) == 4


def test_a_write_error_removes_the_temporary_file_and_keeps_the_old(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write("new")
        raise ZeroDivisionError
    assert path.read_text() == "old" and _temporaries(tmp_path) == []


# ------------------------------------------------------------ one function
_WRITING_CALLS = {"savez", "savez_compressed", "save", "savetxt", "savefig", "tofile",
                  "to_csv", "to_parquet", "write_bytes", "write_text", "dump"}


def _writes_outside_atomic_path(source, filename):
    """Calls in ``source`` that write a file other than through ``atomic_path``'s ``tmp``.

    A write must go to ``tmp`` (the temporary path ``atomic_path`` yields) or to
    ``handle``/``sys.stdout``; ``open`` for writing must open ``tmp``.
    """
    import ast

    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        first = ast.unparse(node.args[0]) if node.args else ""
        if name == "open" and isinstance(func, ast.Name):
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            writing = isinstance(mode, ast.Constant) and set(str(mode.value)) & set("wax+")
            if writing and first != "tmp":
                found.append(f"{filename}:{node.lineno}: open({first}, {mode.value!r})")
        elif name in _WRITING_CALLS and first not in ("tmp", "handle", "sys.stdout"):
            if name == "save" and first in ("last", "model", "self.last"):
                continue  # gpumlp.io.save itself, which writes through atomic_path
            found.append(f"{filename}:{node.lineno}: {name}({first}, ...)")
    return found


def test_every_file_gpumlp_writes_goes_through_atomic_path():
    import pathlib

    import gpumlp

    root = pathlib.Path(gpumlp.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name != "_atomic.py":
            found += _writes_outside_atomic_path(path.read_text(), str(path.relative_to(root)))
    assert found == []
    # The check itself sees a stray write:
    assert _writes_outside_atomic_path("open(path, 'w')\nnp.save(path, a)\n", "x.py") == [
        "x.py:1: open(path, 'w')", "x.py:2: save(path, ...)"]


@pytest.mark.parametrize("spelling", ["glob", "folder"])
@pytest.mark.parametrize("option", ["--out", "--json"])
def test_an_output_over_a_part_of_a_glob_or_folder_of_data_is_refused(tmp_path, capsys,
                                                                      spelling, option):
    """Dask data named by a glob or a folder is every file it matches: an output
    that is one of them is an input (adversary 7 #347: the part was replaced)."""
    parts = tmp_path / "parts"
    parts.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        X = rng.normal(size=(10, 2))
        np.savez(parts / f"p{i}.npz", X=X, y=X.sum(1))
    before = (parts / "p1.npz").read_bytes()
    data = str(parts / "*.npz") if spelling == "glob" else str(parts)
    assert main(["train", "--quiet", "--device", "cpu", "--data", data,
                 option, str(parts / "p1.npz")]) == 2
    assert "is the same file as --data" in capsys.readouterr().err
    assert (parts / "p1.npz").read_bytes() == before


@posix_only
def test_a_file_named_as_input_is_never_removed_as_a_stale_temporary(tmp_path, capsys):
    """A killed checkpoint write can leave a complete model under a temporary's
    name; a user who loads it (predict, --resume, io.load) must keep it
    (adversary 7 #397: the command's own write removed it)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    X = np.random.default_rng(0).normal(size=(30, 2))
    model = gpumlp.MLPRegressor((3,), max_iter=2, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, X.sum(1))
    stale = [tmp_path / f".tmp-gpumlp-{dead.pid}-{_atomic._host_tag()}-abcd_12{i}-m.npz"
             for i in range(3)]
    io.save(model, tmp_path / "m.npz")
    for path in stale:   # copies: a write of ours would remove the earlier ones
        path.write_bytes((tmp_path / "m.npz").read_bytes())
    np.save(tmp_path / "X.npy", X)
    io.load(stale[1])
    assert main(["predict", "--model", str(stale[0]), "--data", str(tmp_path / "X.npy"),
                 "--out", str(tmp_path / "p.npy")]) == 0
    io.save(model, tmp_path / "other.npz")
    assert stale[0].exists() and stale[1].exists()
    assert not stale[2].exists()   # named by no command: a stale temporary, removed
