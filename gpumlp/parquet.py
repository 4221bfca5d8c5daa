"""Parquet datasets as Dask arrays: every layout Dask, pandas and Spark write.

A dataset is one ``.parquet`` file, a glob of them, or a folder of them:
the part files ``dask.dataframe.to_parquet`` writes (with or without
``_metadata``), those of several ``pandas.DataFrame.to_parquet`` calls, and
hive-partitioned folders (``key=value/`` levels, whose values become
columns after the file's own, as pandas reads them). Linked folders are
followed, as pyarrow's datasets follow them. Names starting with
``.`` or ``_`` (``_metadata``, ``_common_metadata``, ``_SUCCESS``, ``.crc``
files) are skipped, as Dask and pyarrow skip them; any other file that is
not Parquet is refused, by name.

Only the files' footers are read here, on the driver: the columns, their
types and each row group's rows. pandas' and Dask's index columns are not
data and are left out. Every part must hold the same columns (in any order)
of numeric types; a part or row group with zero rows is skipped (Dask writes
empty partitions), and a dataset with no rows at all is refused. Each chunk
is one file's consecutive row groups, up to about :data:`CHUNK_BYTES` of
float64, so the chunk lengths are known without reading any data.

On the worker, a chunk is read, its values checked to be finite and
returned as one float64 table (features, then the target). A NaN or
infinity is reported with the file, its row in the file and its row in the
dataset. Nothing here imports pyarrow or Dask until a reader is called.
"""

from __future__ import annotations

import glob
import os

import numpy as np

__all__ = ["CHUNK_BYTES", "is_parquet", "read_parquet"]

#: The float64 bytes a chunk grows to, from whole row groups of one file.
CHUNK_BYTES = 128 * 2**20
SUFFIXES = (".parquet", ".parq", ".pq")


def _skipped(name):
    return name.startswith((".", "_"))


def is_parquet(path) -> bool:
    """Whether ``path`` names Parquet data: such a file, a glob of them, or a folder holding one.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    path = os.fspath(path).rstrip("/") or os.fspath(path)
    if path.endswith(SUFFIXES):
        return True
    if os.path.isdir(path):
        for _, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not _skipped(d)]
            if any(f.endswith(SUFFIXES) and not _skipped(f) for f in files):
                return True
        return False
    return any(f.endswith(SUFFIXES) for f in glob.glob(path))


def _files(path):
    """``[(file, {partition key: value text})]``, sorted, checked: Parquet only, one set of keys."""
    from .data import DataError

    if os.path.isfile(path):
        return [(path, {})]
    if not os.path.isdir(path):
        found = sorted(glob.glob(path))
        if not found:
            raise DataError(f"{path}: no such file or folder. Check the path passed to --data.")
        other = [f for f in found if not (os.path.isfile(f) and f.endswith(SUFFIXES))]
        if other:
            raise DataError(f"{path}: the pattern matches {other[0]}, which is not a Parquet "
                            f"file; narrow the pattern to the .parquet files.")
        return [(f, {}) for f in found]
    parts = []
    seen = set()
    # Linked folders are followed, as pyarrow's datasets follow them (a
    # partition kept elsewhere and linked in is part of the data); a link back
    # into the tree is refused rather than walked forever.
    for folder, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            raise DataError(f"{folder}: a folder link leads back to {real}, which the "
                            f"dataset already holds; remove the link.")
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        levels = os.path.relpath(folder, path).split(os.sep) if folder != path else []
        keys = {}
        for level in levels:
            key, equals, value = level.partition("=")
            if not equals or not key:
                raise DataError(f"{folder}: a folder inside a Parquet dataset must be a hive "
                                f"partition named key=value; move its files out or rename it.")
            keys[key] = value
        for name in sorted(files):
            if _skipped(name):
                continue
            file = os.path.join(folder, name)
            if not name.endswith(SUFFIXES):
                raise DataError(f"{path}: mixes Parquet files with other files, such as "
                                f"{file}; keep only the dataset's .parquet files in the folder.")
            parts.append((file, keys))
    if not parts:
        raise DataError(f"{path}: no Parquet files found in the folder.")
    first_file, first_keys = parts[0]
    for file, keys in parts:
        if list(keys) != list(first_keys):
            raise DataError(f"{path}: {file} is partitioned by ({', '.join(keys) or 'nothing'})"
                            f" but {first_file} by ({', '.join(first_keys) or 'nothing'}); "
                            f"a dataset has one partitioning.")
    return parts


def _numeric(field_type):
    import pyarrow as pa

    if pa.types.is_dictionary(field_type):
        field_type = field_type.value_type
    return (pa.types.is_integer(field_type) or pa.types.is_floating(field_type)
            or pa.types.is_boolean(field_type) or pa.types.is_decimal(field_type))


def _footer(file):
    """The file's data columns (index columns left out), their types and row-group rows."""
    import pyarrow.parquet as pq

    from .data import DataError

    try:
        handle = pq.ParquetFile(file)
    except Exception as exc:  # pyarrow on untrusted bytes: any failure
        raise DataError(f"{file}: not a readable Parquet file ({type(exc).__name__}: "
                        f"{exc}).") from None
    schema = handle.schema_arrow
    index = {c for c in ((schema.pandas_metadata or {}).get("index_columns") or [])
             if isinstance(c, str)}
    columns = [name for name in schema.names if name not in index]
    twice = sorted({name for name in columns if columns.count(name) > 1})
    if twice:
        raise DataError(f"{file}: names the column(s) {', '.join(map(repr, twice))} more "
                        f"than once; give each column its own name.")
    types = {name: schema.field(name).type for name in columns}
    meta = handle.metadata
    rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    return columns, types, rows


def _partition_value(folder_key, value, file):
    from urllib.parse import unquote

    from .data import _NUMBER, DataError

    # pyarrow and pandas read a folder name's %XX escapes; a value they read
    # as text (such as 1_000, which Python's float() takes) is refused.
    text = unquote(value)
    if _NUMBER.fullmatch(text):
        return float(text)
    raise DataError(f"{file}: the partition {folder_key}={value} is not a number; "
                    f"partition columns are features, so their values must be numeric.")


def _chunks(rows, width):
    """Groups of consecutive non-empty row groups, each up to about ``CHUNK_BYTES``."""
    limit = max(1, CHUNK_BYTES // (8 * width))
    groups, current, count = [], [], 0
    for i, n in enumerate(rows):
        if n == 0:
            continue
        if current and count + n > limit:
            groups.append((current, count))
            current, count = [], 0
        current.append(i)
        count += n
    if current:
        groups.append((current, count))
    return groups


def read_parquet(path, target=None, drop=()):
    """X and y of a Parquet dataset as dask arrays, read on the workers.

    Parameters
    ----------
    path : str
        A ``.parquet`` file, a glob of them, or a folder (see the module docs).
    target : str, optional
        The target column (default: the last data column). A hive-partitioned
        dataset needs it named: its last column is a partition key.
    drop : sequence of str
        Columns left out (``--drop``): never read, and they may hold text.
        Each must be a column of the dataset, and not the target.

    Returns
    -------
    X, y : dask arrays, float64, shapes (n, f) and (n,)
    feature_names : list of str
    target_name : str

    Raises
    ------
    DataError
        Naming the file: not Parquet, other columns than the first part's,
        a non-numeric column or partition value, no rows at all.
    """
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("Parquet needs pyarrow: pip install pyarrow") from None
    import dask
    import dask.array as da

    from .data import DataError, target_column

    parts = _files(path)
    first, first_columns, first_types = None, None, None
    plan = []
    for file, keys in parts:
        columns, types, rows = _footer(file)
        if first is None:
            first, first_columns = file, columns
        elif set(columns) != set(first_columns):
            extra = sorted(set(columns) - set(first_columns))
            missing = sorted(set(first_columns) - set(columns))
            said = "; ".join(p for p in (f"it adds {', '.join(map(repr, extra))}" if extra
                                         else "", f"it lacks {', '.join(map(repr, missing))}"
                                         if missing else "") if p)
            raise DataError(f"{file} has other columns than {first} ({said}); every part "
                            f"of a dataset must hold the same columns.")
        clash = [key for key in keys if key in columns]
        if clash:
            raise DataError(f"{file}: the partition key {clash[0]!r} is also a column of the "
                            f"file; rename one of them.")
        if sum(rows):
            text = [f"{name!r} ({types[name]})" for name in columns
                    if not _numeric(types[name]) and name not in drop]
            if text:
                raise DataError(f"{file}: non-numeric column(s) {', '.join(text)}; encode them "
                                f"as numbers or drop them.")
            if first_types is None:
                first_types = types
        values = [_partition_value(key, value, file) for key, value in keys.items()]
        plan.append((file, values, rows))
    keys = list(parts[0][1])
    columns = [str(c) for c in first_columns] + keys
    if target is None and keys:
        # The last column, the default target, would be a partition key: the
        # folders' labels, almost never what is to be predicted.
        raise DataError(f"{path}: the dataset is partitioned by ({', '.join(keys)}), whose "
                        f"values come after the files' columns, so the last column is a "
                        f"partition key, not a target; name the target with --target (one "
                        f"of {', '.join(columns)}).")
    unknown = [name for name in drop if name not in columns]
    if unknown:
        raise DataError(f"{path}: --drop names {', '.join(map(repr, unknown))}, which the "
                        f"dataset does not have; its columns are {', '.join(columns)}.")
    if target is not None and target in drop:
        raise DataError(f"{path}: --drop names the target {target!r}; drop features only.")
    if target is None and columns[-1] in drop:
        raise DataError(f"{path}: --drop names {columns[-1]!r}, the last column, which is the "
                        f"target by default; name the target with --target, or keep "
                        f"{columns[-1]!r}.")
    kept = [c for c in columns if c not in drop]
    target = target_column(path, kept, target)
    features = [c for c in kept if c != target]
    order = features + [target]
    read = [c for c in first_columns if str(c) in order]
    blocks, start = [], 0
    for file, values, rows in plan:
        for groups, n in _chunks(rows, len(order)):
            first_row = sum(rows[:groups[0]])
            blocks.append(da.from_delayed(
                dask.delayed(_load_chunk, pure=True)(file, groups, read, keys, values,
                                                     order, n, first_row, start),
                (n, len(order)), np.float64))
            start += n
    if not blocks:
        raise DataError(f"{path}: the dataset has 0 rows (every part is empty); add rows.")
    table = da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
    return table[:, :-1], table[:, -1], features, target


def _column(array):
    """A pyarrow column as float64 NumPy, nulls as NaN.

    An integer beyond 2^53 is rounded to the nearest float64, as NumPy's
    ``astype``, a CSV's digits and an integer array given to ``fit`` are
    (Arrow's own cast refuses it, with a message that names no column).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode() if hasattr(array, "dictionary_decode") else \
            pa.chunked_array([c.dictionary_decode() for c in array.chunks])
    options = pc.CastOptions(pa.float64(), allow_float_truncate=True)
    return np.asarray(pc.cast(array, options=options).to_numpy(zero_copy_only=False),
                      dtype=np.float64)


def _load_chunk(file, groups, columns, keys, values, order, n, first_row, start):
    """On a worker: row groups ``groups`` of ``file`` as one float64 table, checked finite."""
    import pyarrow.parquet as pq

    from .data import DataError

    table = pq.ParquetFile(file).read_row_groups(groups, columns=list(columns))
    if table.num_rows != n:
        raise DataError(f"{file} changed while it was read: {table.num_rows} rows in row "
                        f"groups {groups}, listed as {n}. Do not write to the data while "
                        f"training.")
    out = np.empty((n, len(order)))
    partition = dict(zip(keys, values))
    for j, name in enumerate(order):
        out[:, j] = partition[name] if name in partition else _column(table.column(name))
    check_finite_part(out, order, file, first_row, start)
    return out


def check_finite_part(table, names, file, first_row, start):
    """Raise a ``DataError`` at the first NaN or infinity of a part's ``table``.

    Parameters
    ----------
    table : ndarray, shape (n, len(names))
    names : list of str
        The columns' names.
    file : str
    first_row, start : int
        The table's first row in ``file`` and in the dataset (from 0).
    """
    from .data import DataError

    bad = ~np.isfinite(table)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    count = int(bad.sum())
    raise DataError(
        f"{file}: {count} missing, NaN or infinite value(s) in this part; the first is in "
        f"column {names[col]!r}, data row {first_row + row + 1} of the file (row "
        f"{start + row + 1} of the dataset, rows counted from 1). Remove or impute them "
        f"before fitting.")
