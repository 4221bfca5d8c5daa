"""Reading user data: CSV with a header, ``.npy`` and ``.npz``.

Each reader returns host NumPy arrays and names, and turns every problem with
the file into a :class:`DataError` (a ``ValueError``) that names the file and,
where it can, the line and column, and says what to do.

Where the target comes from
---------------------------
* CSV: the column named by ``target``; by default the last column.
* ``.npy``: a 2-D array whose last column is the target.
* ``.npz``: the arrays ``X`` and ``y`` (``y`` is not needed to predict).
"""

from __future__ import annotations

import csv
import math
import os
import zipfile

import numpy as np

__all__ = ["DataError", "read_features", "read_training_data", "write_predictions"]

_MISSING = {"", "nan", "na", "n/a", "null", "none"}


class DataError(ValueError):
    """A data file that cannot be used, with the reason and the remedy."""


def _check_exists(path):
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file. Check the path passed to --data.")
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory; pass a .csv, .npy or .npz file.")


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".npy", ".npz"):
        raise DataError(f"{path}: unknown file type {ext or '(none)'!r}; use .csv (with a "
                        f"header row), .npy or .npz.")
    return ext


def _read_csv(path):
    """Header names and a float64 table; bad cells are reported by column."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise DataError(f"{path} is empty; it needs a header row and at least one data row.")
    header = [name.strip() for name in rows[0]]
    body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
    if not body:
        raise DataError(f"{path} has a header but 0 data rows; add at least one row.")
    table = np.empty((len(body), len(header)))
    for i, row in enumerate(body):
        line = i + 2
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, but the header has "
                            f"{len(header)} columns.")
        for j, cell in enumerate(row):
            try:
                table[i, j] = float(cell)
            except ValueError:
                if cell.strip().lower() in _MISSING:
                    table[i, j] = math.nan
                    continue
                raise DataError(
                    f"{path}, line {line}: column {header[j]!r} holds the non-numeric value "
                    f"{cell!r}. Encode it as numbers or drop the column."
                ) from None
    return header, table


def _check_finite(path, table, names):
    bad = ~np.isfinite(table)
    if not bad.any():
        return
    n_nan, n_inf = int(np.isnan(table).sum()), int(np.isinf(table).sum())
    row, col = np.argwhere(bad)[0]
    counts = " and ".join(
        part for part in (f"{n_nan} missing or NaN" if n_nan else "",
                          f"{n_inf} infinite" if n_inf else "") if part)
    raise DataError(
        f"{path}: {counts} value(s); the first is in row {row + 1}, column "
        f"{names[col]!r}. Remove or impute them before training."
    )


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: cannot read it without unpickling objects ({exc}); "
                        f"save plain numeric arrays.") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc}).") from None


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:
        raise DataError(f"{path}: cannot read it without unpickling objects ({exc}); "
                        f"save plain numeric arrays.") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}).") from None


def _numeric(path, array, what):
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: {what} has dtype {array.dtype}; it must be numeric.")
    return np.asarray(array, dtype=np.float64)


def read_training_data(path, target=None):
    """Features and target from a file.

    Parameters
    ----------
    path : str
    target : str, optional
        For CSV, the target column's name (default: the last column).

    Returns
    -------
    X : ndarray, shape (n, f)
    y : ndarray, shape (n,)
    feature_names : list of str
    target_name : str
    """
    _check_exists(path)
    kind = _kind(path)
    if target is not None and kind != ".csv":
        raise DataError(f"--target names a CSV column; {kind} files keep the target "
                        f"{'in their last column' if kind == '.npy' else 'in the array y'}.")
    if kind == ".csv":
        header, table = _read_csv(path)
        target = header[-1] if target is None else target
        if target not in header:
            raise DataError(f"{path}: there is no column {target!r}; the columns are "
                            f"{', '.join(header)}. Pass one of them to --target.")
        if len(header) < 2:
            raise DataError(f"{path}: needs at least one feature column besides the target.")
        _check_finite(path, table, header)
        t = header.index(target)
        features = [name for j, name in enumerate(header) if j != t]
        return np.delete(table, t, axis=1), table[:, t], features, target
    if kind == ".npy":
        table = _numeric(path, _load_npy(path), "the array")
        if table.ndim != 2 or table.shape[1] < 2:
            raise DataError(f"{path}: expected a 2-D array with features then the target in "
                            f"its last column, got shape {table.shape}.")
        if table.shape[0] == 0:
            raise DataError(f"{path} has 0 rows; it needs at least one.")
        names = [f"x{j}" for j in range(table.shape[1] - 1)] + ["y"]
        _check_finite(path, table, names)
        return table[:, :-1], table[:, -1], names[:-1], "y"
    arrays = _load_npz(path)
    missing = [key for key in ("X", "y") if key not in arrays]
    if missing:
        raise DataError(f"{path}: an .npz file needs arrays named X and y; missing "
                        f"{', '.join(missing)} (it has {', '.join(arrays) or 'none'}).")
    X, y = _numeric(path, arrays["X"], "X"), _numeric(path, arrays["y"], "y")
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: X must be 2-D and y 1-D with as many rows; got "
                        f"{X.shape} and {y.shape}.")
    if X.shape[0] == 0:
        raise DataError(f"{path} has 0 rows; it needs at least one.")
    names = [f"x{j}" for j in range(X.shape[1])]
    _check_finite(path, X, names)
    _check_finite(path, y[:, None], ["y"])
    return X, y, names, "y"


def read_features(path, feature_names, target_name=None):
    """The feature matrix for prediction, in the order ``feature_names`` gives.

    A CSV may hold the columns in any order and may include the target
    column, which is ignored. An ``.npy`` file holds exactly the features;
    an ``.npz`` file holds them as ``X``.
    """
    _check_exists(path)
    kind = _kind(path)
    n = len(feature_names)
    if kind == ".csv":
        header, table = _read_csv(path)
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise DataError(f"{path}: the model needs the column(s) {', '.join(missing)}, "
                            f"which the file lacks (it has {', '.join(header)}).")
        columns = [header.index(name) for name in feature_names]
        X = table[:, columns]
    else:
        X = _load_npy(path) if kind == ".npy" else _load_npz(path).get("X")
        if X is None:
            raise DataError(f"{path}: an .npz file for prediction needs an array named X.")
        X = _numeric(path, X, "X")
        if X.ndim != 2 or X.shape[1] != n:
            raise DataError(f"{path}: the model expects {n} feature column(s); the array "
                            f"has shape {X.shape}.")
        if X.shape[0] == 0:
            raise DataError(f"{path} has 0 rows; it needs at least one.")
    _check_finite(path, X, list(feature_names))
    return X


def write_predictions(path, y_pred, target_name="prediction"):
    """Write predictions as CSV (one column per output) or ``.npy``, atomically."""
    from ._atomic import atomic_path

    y_pred = np.asarray(y_pred)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".npy"):
        raise DataError(f"--out {path}: predictions are written as .csv or .npy.")
    with atomic_path(path) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as handle:
                np.save(handle, y_pred)
        else:
            columns = y_pred.reshape(y_pred.shape[0], -1)
            names = [target_name] if columns.shape[1] == 1 else [
                f"{target_name}_{j}" for j in range(columns.shape[1])]
            np.savetxt(tmp, columns, delimiter=",", header=",".join(names), comments="",
                       fmt="%.9g")
