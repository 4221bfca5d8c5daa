"""Atomic writes: the files they leave have the mode a plain write would give them."""

import os
import stat
import sys
import warnings

import numpy as np
import pytest

from gpumlp import MLPRegressor, io
from gpumlp._atomic import atomic_path, write_text_atomic
from gpumlp.data import write_predictions


def _save_model(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = MLPRegressor((2,), max_iter=2, device="cpu").fit(np.ones((4, 2)), np.ones(4))
    io.save(net, path)


def _plot(path):
    pytest.importorskip("matplotlib")
    from gpumlp.plotting import plot_loss

    plot_loss([1.0, 0.5], [1.1, 0.6], path)


WRITERS = {
    "model": _save_model,
    "predictions-csv": lambda path: write_predictions(path, np.ones(3), "y"),
    "predictions-npy": lambda path: write_predictions(path, np.ones(3), "y"),
    "json-report": lambda path: write_text_atomic(path, "{}"),
    "plot": _plot,
}
SUFFIX = {"model": ".npz", "predictions-csv": ".csv", "predictions-npy": ".npy",
          "json-report": ".json", "plot": ".png"}


@pytest.fixture
def umask():
    """Set the umask for one test, and restore it."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_written_files_respect_the_umask_and_keep_an_existing_mode(tmp_path, writer, umask):
    """Issue 13, item 13: no more 0600 files from mkstemp."""
    path = tmp_path / f"out{SUFFIX[writer]}"
    umask(0o022)
    WRITERS[writer](path)
    assert _mode(path) == 0o644
    umask(0o027)
    os.unlink(path)
    WRITERS[writer](path)
    assert _mode(path) == 0o640
    os.chmod(path, 0o664)
    WRITERS[writer](path)  # replaces the file: its mode stays
    assert _mode(path) == 0o664
    assert sorted(os.listdir(tmp_path)) == [path.name]


def test_a_missing_folder_is_named_as_given_not_as_the_temporary_file(tmp_path):
    target = tmp_path / "nodir" / "m.npz"
    with pytest.raises(FileNotFoundError, match=f"cannot write {target}: ") as caught, \
            atomic_path(target):
        pass
    assert ".tmp-" not in str(caught.value)
