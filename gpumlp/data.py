"""Reading user data: CSV with a header, ``.npy`` and ``.npz``.

Each reader returns host NumPy arrays and names, and turns every problem with
the file into a :class:`DataError` (a ``ValueError``) that names the file and,
where it can, the line and column, and says what to do. Files are untrusted
input: nothing is ever unpickled, and an ``.npy`` header (or an ``.npz``
member's) is checked (dtype, shape, size) before any data is read.

Where the target comes from
---------------------------
* CSV: the column named by ``target``; by default the last column.
* ``.npy``: a 2-D array whose last column is the target.
* ``.npz``: the arrays ``X`` and ``y`` (``y`` is not needed to predict); other
  members are never read (training names them in a note).

What a CSV may hold
-------------------
* UTF-8 text (a byte-order mark is dropped); any other encoding is refused
  with the line of the first undecodable byte: save the file as UTF-8.
* A header row of unique names. Trailing columns without a name that are
  empty on every line (a trailing comma on each line) are ignored; any other
  column without a name is refused when it would be read.
* Numbers as Python writes them (``1``, ``-2.5e3``, ``.5``, ``inf``,
  ``nan``), optionally quoted and padded with spaces; ``1_000``, ``1,5``
  and the like are non-numeric. Empty cells and the words ``nan``, ``na``,
  ``n/a``, ``null`` and ``none`` (any case) are missing values, which are
  then refused by count, with the first one's row and column.
* Lines whose cells are all blank are skipped.

When predicting, only the model's feature columns are read and must be
numeric (or, for a column the model encoded, one of its levels); other
columns may hold anything.

CSVs as users have them (training)
----------------------------------
* **An unnamed leading index**, as pandas' ``to_csv`` writes by default: a
  first column without a name whose cells are distinct integers is dropped,
  and a note says so (:attr:`Table.notes`). Any other column without a name
  is refused, as above.
* **Text columns** (every non-missing cell non-numeric, such as a region or
  a fuel type) with at most :data:`MAX_LEVELS` distinct values are encoded
  one-hot: one 0/1 feature ``name=level`` per level, in sorted order; the
  levels are kept in the model file (:attr:`Table.columns`). A text column
  with more levels is refused, naming it and the option that drops it
  (``--drop NAME``, ``drop=`` here). A column of numbers with a stray word
  is still an error at that cell, and so is a missing text cell.
* **At prediction**, a text column's cells must be levels seen in training:
  an unseen level is refused, naming the column, the line and the known
  levels (rather than guessing an encoding the model never saw).

The CSV reader parses with :func:`numpy.loadtxt` (C code, about a float64
table's size in memory) and, only when that fails, scans the file again
with the :mod:`csv` module to report the first problem exactly or to read the
missing values; both paths accept the same files and give the same numbers.
"""

from __future__ import annotations

import array
import csv
import dataclasses
import itertools
import math
import os
import re
import stat
import struct
import warnings
import zipfile
import zlib

import numpy as np

__all__ = ["MAX_LEVELS", "DataError", "Table", "encoded_names", "read_features",
           "read_training_data", "read_training_table", "target_column", "write_predictions"]

#: A text column with at most this many distinct values is encoded one-hot.
MAX_LEVELS = 20

_MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})
# What numpy.loadtxt parses as a float: Python's float() syntax less the
# underscores and the non-ASCII digits that float() also takes.
_NUMBER = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?|inf|infinity|nan)",
                     re.ASCII | re.IGNORECASE)
_SHOWN = 40  # characters of a bad cell quoted in a message


class DataError(ValueError):
    """A data file that cannot be used, with the reason and the remedy."""


def _check_exists(path):
    if not os.path.exists(path):
        pattern = " (read as a file name: --data takes a folder or a glob only " \
                  "for Dask, and this pattern matches no files)" \
            if any(c in path for c in "*?[") else ""
        raise DataError(f"{path}: no such file{pattern}. Check the path passed to --data.")
    if os.path.isdir(path):
        raise DataError(f"{path} is a directory; pass a .csv, .npy or .npz file.")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise DataError(f"{path} is not a regular file (a pipe or a device?); save the data "
                        f"to a .csv, .npy or .npz file and pass that.")


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".csv", ".npy", ".npz"):
        raise DataError(f"{path}: unknown file type {ext or '(none)'!r}; use .csv (with a "
                        f"header row), .npy or .npz.")
    return ext


def _shown(cell):
    return repr(cell if len(cell) <= _SHOWN else cell[:_SHOWN] + "...")


# ---------------------------------------------------------------------- CSV
def _open_text(path):
    # utf-8-sig drops a byte-order mark, so it never sticks to the first name.
    return open(path, encoding="utf-8-sig", newline="")


def _not_utf8(path):
    """The error for a file that is not UTF-8, naming the first bad line."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                byte = line[exc.start]
                return DataError(
                    f"{path}, line {number}: not UTF-8 text (byte 0x{byte:02x}); save the file "
                    f"as UTF-8 (in Excel: 'CSV UTF-8').")
    return DataError(f"{path}: not UTF-8 text; save the file as UTF-8.")


def _unclosed_quote(path, line):
    return DataError(f"{path}, line {line}: a quote (\") opened on this line is not closed "
                     f"on it; balance or remove it.")


def _syntax_error(path, line, exc):
    """The error for a record the csv module cannot split, at its first line."""
    with _open_text(path) as handle:
        text = next(itertools.islice(handle, line - 1, None), "")
    if text.count('"') % 2:
        return _unclosed_quote(path, line)
    return DataError(f"{path}, line {line}: cannot split it into cells ({exc}); a cell of "
                     f"over {csv.field_size_limit()} characters cannot be a number. Fix the "
                     f"line.")


def _csv_header(path):
    """The header's names, stripped, and the number of physical lines it takes."""
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                raise _syntax_error(path, 1, exc) from None
            return header, reader.line_num
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _split_header(header):
    """The header's names (stripped) up to the last named column, and the indices of
    the unnamed trailing columns after it (a trailing comma's empty cells)."""
    names = [name.strip() for name in header]
    width = len(names)
    while width and not names[width - 1]:
        width -= 1
    return names[:width], list(range(width, len(names)))


def _columns(path, header, wanted):
    """Which columns to read, and which are unnamed trailing ones that must stay empty.

    ``wanted`` is None for every named column (training) or the names to read
    (prediction). Returns the indices to read, in ``wanted``'s order, the
    indices of the ignorable trailing columns and the names read.
    """
    named, trailing = _split_header(header)
    if not named:
        raise DataError(f"{path}: the header row has no column names; the first line must "
                        f"name the columns, such as a,b,price.")
    if all(_is_number(name) for name in named):
        # Every "name" a number: a file with no header row, whose first row of data
        # would be lost and its numbers taken for column names.
        raise DataError(f"{path}: the first line ({', '.join(named[:4])}"
                        f"{', ...' if len(named) > 4 else ''}) holds numbers, not column "
                        f"names; it looks like data. gpumlp reads the first line as the "
                        f"header: add a line naming the columns, such as a,b,price.")
    seen = {}
    for name in named:
        seen[name] = seen.get(name, 0) + 1
    duplicates = [name for name, count in seen.items() if count > 1 and name]
    if duplicates:
        raise DataError(f"{path}: the header names the column(s) "
                        f"{', '.join(map(repr, duplicates))} more than once; give each column "
                        f"its own name.")
    if wanted is None:
        unnamed = [j + 1 for j, name in enumerate(named) if not name]
        if unnamed:
            raise DataError(f"{path}: column(s) {', '.join(map(str, unnamed))} have no name in "
                            f"the header row; name them, or delete those columns.")
        wanted = named
    else:
        missing = [name for name in wanted if name not in seen]
        if missing:
            _check_separator(path, named)   # (predict: a file of ';' or tabs, said so)
            # Quoted: a name with a space (" a" from a Parquet column) must show.
            raise DataError(f"{path}: the model needs the column(s) "
                            f"{', '.join(map(repr, missing))}, which the file lacks (it has "
                            f"{', '.join(repr(n) for n in named if n)}).")
    return [named.index(name) for name in wanted], trailing, list(wanted)


def _is_number(text) -> bool:
    """Whether ``text`` reads as a number (a header cell that is one is data)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _ignored(cell):
    return 0.0


def _blank(cell):
    # 0 for an empty cell in an unnamed trailing column, NaN (sent to the scan) otherwise.
    return 0.0 if not cell.strip() else math.nan


def _load_fast(handle, width, used, trailing):
    """The table by numpy.loadtxt, or None when the file needs the careful scan."""
    converters = {j: _ignored for j in range(width) if j not in set(used)}
    converters.update({j: _blank for j in trailing})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            table = np.loadtxt(handle, dtype=np.float64, delimiter=",", quotechar='"',
                               comments=None, ndmin=2, converters=converters or None,
                               encoding=None)
    except UnicodeDecodeError:
        raise
    except ValueError:
        return None
    if table.shape[0] == 0:  # only empty lines after the header
        return np.empty((0, len(used)))
    if table.shape[1] != width:
        return None
    if trailing and np.isnan(table[:, trailing]).any():
        return None
    return table[:, used] if used != list(range(width)) else table


def _parse(cell):
    text = cell.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    if text.lower() in _MISSING:
        return math.nan
    return None


def _scan(path, n_header_lines, names, width, used, trailing):
    """The table by a line-by-line scan that reports the first bad line exactly."""
    values = array.array("d")  # 8 bytes a value, as in the table
    for line, end, record in _checked_records(path, n_header_lines, width, trailing):
        for j, name in zip(used, names):
            value = _parse(record[j])
            if value is None:
                where = "" if end == line else \
                    f" (a quoted cell spanning lines {line}-{end}: check the quotes)"
                raise DataError(
                    f"{path}, line {line}: column {name!r} holds the non-numeric value "
                    f"{_shown(record[j])}{where}. Encode it as numbers or drop the column.")
            values.append(value)
    return np.frombuffer(values, dtype=np.float64).reshape(-1, len(used))


def _checked_records(path, n_header_lines, width, trailing):
    """Each non-blank data record as ``(first line, last line, cells)``, its shape checked.

    A record must have the header's width, and the cells under unnamed
    trailing columns must be empty; the first that breaks either is refused
    with its line. Quoted cells may span lines (``last line`` > ``first line``).
    """
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        for _ in range(n_header_lines):
            next(handle)
        while True:  # reader.line_num counts the lines it has read, after the header
            line = n_header_lines + reader.line_num + 1
            try:
                record = next(reader, None)
            except csv.Error as exc:
                raise _syntax_error(path, line, exc) from None
            if record is None:
                return
            if not any(cell.strip() for cell in record):
                continue
            if len(record) != width and any("\n" in c or "\r" in c for c in record):
                raise _unclosed_quote(path, line)
            if len(record) != width:
                raise DataError(f"{path}, line {line}: {len(record)} cells, but the header has "
                                f"{width} columns. Make every line as long as the header.")
            for j in trailing:
                if record[j].strip():
                    raise DataError(
                        f"{path}, line {line}: column {j + 1} has no name in the header but "
                        f"holds {_shown(record[j])}; name it in the header or empty it.")
            yield line, n_header_lines + reader.line_num, record


def _read_csv(path, wanted=None):
    """Column names and a float64 table, shape (n_rows, len(names)).

    ``wanted`` names the columns to read (default: every named column).
    """
    header, n_header_lines = _csv_header(path)
    if header is None:
        raise DataError(f"{path} is empty; it needs a header row and at least one data row.")
    used, trailing, names = _columns(path, header, wanted)
    width = len(header)
    try:
        with _open_text(path) as handle:
            for _ in range(n_header_lines):
                next(handle)
            table = _load_fast(handle, width, used, trailing)
        if table is None:
            table = _scan(path, n_header_lines, names, width, used, trailing)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if table.shape[0] == 0:
        raise DataError(f"{path} has a header but 0 data rows; add at least one row.")
    return names, table


def _check_finite(path, table, names, purpose="fitting"):
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
        f"{names[col]!r}. Remove or impute them before {purpose}."
    )


# ------------------------------------------------------------- .npy, .npz
def _npy_header(handle, name, size):
    """Shape, dtype, order and data size of the array an .npy stream holds.

    Reads only the header; ``size`` is the stream's length in bytes.
    Anything unusable (not .npy, Python objects, non-numeric, wrong size)
    raises a :class:`DataError` naming ``name``.
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
    except ValueError:
        raise DataError(f"{name}: not an .npy array (no NumPy header); save it with "
                        f"numpy.save.") from None
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise DataError(f"{name}: .npy format version {version} is not supported; save it "
                        f"again with numpy.save.")
    try:
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = read(handle)
    except Exception as exc:  # NumPy's header parser on untrusted bytes: any failure
        raise DataError(f"{name}: damaged .npy header ({type(exc).__name__}: {exc}); save "
                        f"the array again.") from None
    if any(n < 0 for n in shape):
        raise DataError(f"{name}: damaged .npy header (shape {shape}); save the array again.")
    if dtype.hasobject:
        raise DataError(f"{name} holds Python objects (dtype {dtype}), which gpumlp never "
                        f"unpickles; save plain numeric arrays.")
    if dtype.kind not in "biuf":
        raise DataError(f"{name} has dtype {dtype}; it must be numeric (bool, int or float).")
    nbytes = math.prod(shape) * dtype.itemsize
    left = size - handle.tell()
    if left != nbytes:
        state = "is truncated" if left < nbytes else "has extra bytes after its data"
        raise DataError(f"{name} {state}: its header describes {nbytes} bytes of data for "
                        f"shape {shape}, the file holds {left}. Write it again.")
    return shape, dtype, fortran_order, nbytes


def _read_data(handle, name, shape, dtype, fortran_order, nbytes):
    buffer = bytearray(nbytes)
    if handle.readinto(buffer) != nbytes:
        raise DataError(f"{name} is truncated: it ended before its {nbytes} bytes of data.")
    array = np.frombuffer(buffer, dtype=dtype)
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _npz_errors():
    return (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
            NotImplementedError, RuntimeError, struct.error, OverflowError)


def inspect_array(path, key=None):
    """Shape and dtype of an ``.npy`` file, or of member ``key`` of an ``.npz``.

    Reads only the header; the data's size is checked against the file's.

    Parameters
    ----------
    path : str
    key : str, optional
        The member's name without ``.npy`` (for ``.npz`` files).

    Returns
    -------
    shape : tuple of int
    dtype : numpy.dtype, numeric
    """
    shape, dtype, _, _ = _open_array(path, key, read=False)
    return shape, dtype


def load_array(path, key=None):
    """The array of an ``.npy`` file, or member ``key`` of an ``.npz``, checked first.

    Never unpickles; other members of an ``.npz`` are not read. Every
    problem is a :class:`DataError` naming the file (and member).

    Parameters
    ----------
    path : str
    key : str, optional
        The member's name without ``.npy`` (for ``.npz`` files).

    Returns
    -------
    ndarray, numeric
    """
    return _open_array(path, key, read=True)


def _open_array(path, key, read):
    if key is None:
        try:
            with open(path, "rb") as handle:
                header = _npy_header(handle, path, os.fstat(handle.fileno()).st_size)
                return _read_data(handle, path, *header) if read else header
        except OSError as exc:
            raise DataError(f"{path}: cannot read it ({exc.strerror or exc}).") from None
    name = f"{path}, array {key}"
    try:
        with open(path, "rb") as handle:
            if handle.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
                # zipfile would skip leading bytes; NumPy (and we) do not.
                raise zipfile.BadZipFile("it does not start as a zip archive")
        with zipfile.ZipFile(path) as archive:
            info = next((i for i in archive.infolist() if i.filename == f"{key}.npy"), None)
            if info is None:
                raise DataError(f"{path}: no array named {key} (it has "
                                f"{', '.join(_npz_keys(archive)) or 'none'}); an .npz file "
                                f"needs arrays named X and y.")
            with archive.open(info) as handle:
                header = _npy_header(handle, name, info.file_size)
                return _read_data(handle, name, *header) if read else header
    except DataError:
        raise
    except _npz_errors() as exc:
        raise DataError(f"{path}: not a readable .npz (zip) file, or a damaged one "
                        f"({type(exc).__name__}: {exc}); save it again with numpy.savez."
                        ) from None


def _npz_keys(archive):
    return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]


def _numeric(array):
    return np.asarray(array, dtype=np.float64)


# --------------------------------------------------- CSVs as users have them
@dataclasses.dataclass
class Table:
    """A training table read from a file, with what was done to it.

    Attributes
    ----------
    X : ndarray, shape (n, f)
        The features, text columns encoded one-hot.
    y : ndarray, shape (n,)
    feature_names : list of str
        One per column of ``X`` (``name=level`` for an encoded level).
    target : str
    columns : list of (str, list of str or None)
        The file's feature columns in order, each with its levels when it
        was text (encoded) or None (numeric): what prediction needs.
    notes : list of str
        What was done besides reading (a dropped index, encoded columns).
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list
    target: str
    columns: list
    notes: list


def encoded_names(columns) -> list[str]:
    """The feature names of ``columns`` (``(name, levels or None)`` pairs), one-hot expanded."""
    names = []
    for name, levels in columns:
        names += [name] if levels is None else [f"{name}={level}" for level in levels]
    return names


def _records(path, n_header_lines, width, trailing):
    """Every data record's cells (stripped) and its first line, by the csv module.

    Refuses a file that is not UTF-8 or that has no data row.
    """
    records, lines = [], []
    try:
        for line, _, record in _checked_records(path, n_header_lines, width, trailing):
            records.append([cell.strip() for cell in record])
            lines.append(line)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    if not records:
        raise DataError(f"{path} has a header but 0 data rows; add at least one row.")
    return records, lines


def _column_values(path, name, cells, lines):
    """A column's numbers, or its text cells when no cell is a number (then None, cells)."""
    values = [_parse(cell) for cell in cells]
    bad = [i for i, v in enumerate(values) if v is None]
    if not bad:
        return np.asarray(values, dtype=np.float64), None
    if any(v is not None and not math.isnan(v) for v in values):
        i = bad[0]
        raise DataError(f"{path}, line {lines[i]}: column {name!r} holds the non-numeric value "
                        f"{_shown(cells[i])}. Encode it as numbers or drop the column.")
    return None, cells


def _levels(path, name, cells, lines):
    """A text column's levels (sorted), refusing missing cells and too many levels."""
    for i, cell in enumerate(cells):
        if cell.lower() in _MISSING:
            raise DataError(f"{path}, line {lines[i]}: the text column {name!r} has a missing "
                            f"value; fill it in (or drop the column with --drop {name}).")
    levels = sorted(set(cells))
    if len(levels) > MAX_LEVELS:
        raise DataError(f"{path}: column {name!r} holds text with {len(levels)} distinct "
                        f"values, too many to encode one-hot (at most {MAX_LEVELS}); drop it "
                        f"with --drop {name}, or encode it as numbers yourself.")
    return levels


def _one_hot(cells, levels):
    index = {level: k for k, level in enumerate(levels)}
    out = np.zeros((len(cells), len(levels)))
    out[np.arange(len(cells)), [index[c] for c in cells]] = 1.0
    return out


def _is_index(values):
    """Whether a column's numbers look like a row index: distinct integers."""
    return (values is not None and bool(np.all(np.isfinite(values)))
            and bool(np.all(values == np.round(values)))
            and len(np.unique(values)) == len(values))


#: The name pandas gives a nameless column read back: an index written by to_csv.
_PANDAS_INDEX = "Unnamed: 0"


def _read_csv_table(path, target, drop):
    header, n_header_lines = _csv_header(path)
    if header is None:
        raise DataError(f"{path} is empty; it needs a header row and at least one data row.")
    named, trailing = _split_header(header)
    index = 0 if len(named) > 1 and not named[0] and all(named[1:]) else None
    unnamed = [j + 1 for j, name in enumerate(named) if not name and j != index]
    if unnamed or not any(named) or all(_is_number(name) for name in named if name):
        _columns(path, header, None)   # raises the usual error
    seen = [name for name in named if name]
    duplicates = sorted({name for name in seen if seen.count(name) > 1})
    if duplicates:
        _columns(path, header, None)
    for name in drop:
        if name not in seen:
            raise DataError(f"{path}: --drop names the column {name!r}, which the file lacks "
                            f"(it has {', '.join(seen)}).")
    if target is None and seen and seen[-1] in drop:
        # The default target is the last column: dropping it would make the
        # one before it the target, unasked.
        raise DataError(f"{path}: --drop names {seen[-1]!r}, the last column, which is the "
                        f"target by default; name the target with --target, or keep "
                        f"{seen[-1]!r}.")
    target = target_column(path, [n for n in seen if n not in drop], target)
    keep = [j for j, name in enumerate(named) if name and name not in drop]
    used = ([index] if index is not None else []) + keep
    with _open_text(path) as handle:
        for _ in range(n_header_lines):
            next(handle)
        try:
            table = _load_fast(handle, len(header), used, trailing)
        except UnicodeDecodeError:
            raise _not_utf8(path) from None
    notes = []
    if table is not None:
        if table.shape[0] == 0:
            raise DataError(f"{path} has a header but 0 data rows; add at least one row.")
        numbers = {j: table[:, k] for k, j in enumerate(used)}
        texts, lines = {}, []
    else:
        records, lines = _records(path, n_header_lines, len(header), trailing)
        numbers, texts = {}, {}
        for j in used:
            name = named[j] or "column 1"
            values, cells = _column_values(path, name, [r[j] for r in records], lines)
            if values is not None:
                numbers[j] = values
            else:
                texts[j] = cells
    if index is not None:
        if not _is_index(numbers.get(index)):
            _columns(path, header, None)   # an unnamed column that is no index: refused
        notes.append(f"{path}: dropped column 1, which has no name and holds distinct "
                     f"integers: a row index, as pandas' to_csv writes it.")
    elif named[0] == _PANDAS_INDEX and 0 in keep and target != _PANDAS_INDEX and \
            _is_index(numbers.get(0)):
        keep.remove(0)
        notes.append(f"{path}: dropped column 1, {_PANDAS_INDEX!r}, which holds distinct "
                     f"integers: an old row index (pandas names a nameless column so when "
                     f"it reads one back, and to_csv then writes it as a column). Rename "
                     f"it to keep it as a feature.")
    t = named.index(target)
    if t in texts:
        raise DataError(f"{path}: the target column {target!r} holds text; it must be "
                        f"numeric.")
    columns, blocks, encoded = [], [], []
    for j in keep:
        if j == t:
            continue
        if j in texts:
            levels = _levels(path, named[j], texts[j], lines)
            columns.append((named[j], levels))
            blocks.append(_one_hot(texts[j], levels))
            encoded.append(f"{named[j]!r} ({len(levels)} levels)")
        else:
            columns.append((named[j], None))
            blocks.append(numbers[j][:, None])
    feature_names = encoded_names(columns)
    clash = sorted({n for n in feature_names if feature_names.count(n) > 1})
    if clash:
        raise DataError(f"{path}: encoding the text columns one-hot gives the name(s) "
                        f"{', '.join(map(repr, clash))} twice; rename a column.")
    if encoded:
        notes.append(f"{path}: encoded the text column(s) {', '.join(encoded)} one-hot, "
                     f"one 0/1 feature name=level per level; the levels are saved with the "
                     f"model.")
    X = np.concatenate(blocks, axis=1) if blocks else np.empty((len(numbers[t]), 0))
    y = np.array(numbers[t], dtype=np.float64)
    _check_finite(path, np.column_stack([X, y]), feature_names + [target])
    return Table(X, y, feature_names, target, columns, notes)


# ---------------------------------------------------------------- readers
def read_training_table(path, target=None, drop=()) -> Table:
    """Features and target from a file, with text columns encoded and an index dropped.

    Parameters
    ----------
    path : str
    target : str, optional
        For CSV, the target column's name (default: the last column kept).
    drop : sequence of str
        For CSV, columns not to read (a text column of too many levels, an id).

    Returns
    -------
    Table
    """
    path = os.fspath(path)
    _check_exists(path)
    kind = _kind(path)
    drop = tuple(drop or ())
    if drop and kind != ".csv":
        raise DataError(f"--drop names CSV columns; {path} is a {kind} file.")
    if kind == ".csv":
        if target is not None and target in drop:
            raise DataError(f"{path}: --drop names the target {target!r}; drop features only.")
        return _read_csv_table(path, target, drop)
    X, y, names, target = read_training_data(path, target)
    notes = []
    if kind == ".npz":
        with zipfile.ZipFile(path) as archive:
            others = [k for k in _npz_keys(archive) if k not in ("X", "y")]
        if others:   # a sample_weight the user meant to be used, say: never in silence
            notes.append(f"{path}: the arrays {', '.join(others)} are not read; gpumlp "
                         f"train reads X and y only (for sample weights, fit in Python: "
                         f"fit(X, y, sample_weight=...)).")
    return Table(X, y, names, target, [(name, None) for name in names], notes)


def _check_separator(path, columns) -> None:
    """Refuse a header of one column that is another file's separator hint or holds
    another separator (a file of ';' or tabs), saying how to convert it."""
    if len(columns) == 1 and columns[0].lower().startswith("sep="):
        raise DataError(f"{path}: its first line starts with {columns[0]!r}: a spreadsheet's "
                        f"separator hint, not the header; delete that line.")
    if len(columns) == 1:
        found = [(name, sep) for name, sep in (("semicolons", ";"), ("tabs", "\t"),
                                               ("'|'", "|")) if sep in columns[0]]
        if found:
            name, sep = found[0]
            raise DataError(
                f"{path}: its header is one column, {columns[0]!r}, separated by {name}; "
                f"gpumlp reads comma-separated files with decimal points. Convert it, e.g. "
                f"pandas.read_csv(path, sep={sep!r}).to_csv('data.csv', index=False) "
                f"(with decimal=',' if its numbers have decimal commas).")


def target_column(path: str, columns: list[str], target: str | None) -> str:
    """The target's column name: ``target``, by default the last column; checked.

    Raises
    ------
    DataError
        When there is no such column, or no feature column besides it.
    """
    _check_separator(path, columns)
    target = columns[-1] if target is None else target
    if target not in columns:
        raise DataError(f"{path}: there is no column {target!r}; the columns are "
                        f"{', '.join(columns)}. Pass one of them to --target.")
    if len(columns) < 2:
        raise DataError(f"{path}: needs at least one feature column besides the target.")
    return target


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
    path = os.fspath(path)
    _check_exists(path)
    kind = _kind(path)
    if target is not None and kind != ".csv":
        raise DataError(f"--target names a CSV column; {kind} files keep the target "
                        f"{'in their last column' if kind == '.npy' else 'in the array y'}.")
    if kind == ".csv":
        # An unnamed index dropped and text columns encoded (read_training_table).
        table = _read_csv_table(path, target, ())
        return table.X, table.y, table.feature_names, table.target
    if kind == ".npy":
        table = _numeric(load_array(path))
        if table.ndim != 2 or table.shape[1] < 2:
            raise DataError(f"{path}: expected a 2-D array with features then the target in "
                            f"its last column, got shape {table.shape}.")
        if table.shape[0] == 0:
            raise DataError(f"{path} has 0 rows; it needs at least one.")
        names = [f"x{j}" for j in range(table.shape[1] - 1)] + ["y"]
        _check_finite(path, table, names)
        # A contiguous copy, as the CSV reader gives: a strided view of the same
        # numbers would be summed in another order (a resume from an .npy of
        # a CSV's numbers parted from the CSV's run by an ulp, issue 20).
        return np.ascontiguousarray(table[:, :-1]), table[:, -1].copy(), names[:-1], "y"
    X, y = _numeric(load_array(path, "X")), _numeric(load_array(path, "y"))
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: X must be 2-D and y 1-D with as many rows; got "
                        f"{X.shape} and {y.shape}.")
    if X.shape[0] == 0:
        raise DataError(f"{path} has 0 rows; it needs at least one.")
    if X.shape[1] == 0:
        raise DataError(f"{path}: X has 0 columns; it needs at least one feature.")
    names = [f"x{j}" for j in range(X.shape[1])]
    _check_finite(path, X, names)
    _check_finite(path, y[:, None], ["y"])
    return X, y, names, "y"


def read_features(path, feature_names, target_name=None, columns=None):
    """The feature matrix for prediction, in the order ``feature_names`` gives.

    A CSV may hold the columns in any order, and other columns (the target,
    an id, text), which are not read. An ``.npy`` file holds exactly the
    features; an ``.npz`` file holds them as ``X``.

    Parameters
    ----------
    path : str
    feature_names : sequence of str
        The model's feature names, in the model's order.
    target_name : str, optional
        Unused; kept for callers that pass it.
    columns : list of (str, list of str or None), optional
        The training file's feature columns with their levels
        (:attr:`Table.columns`): a CSV's text columns are then encoded with
        those levels; a level not among them is refused.

    Returns
    -------
    X : ndarray, shape (n, len(feature_names))
    """
    path = os.fspath(path)
    _check_exists(path)
    kind = _kind(path)
    n = len(feature_names)
    if kind == ".csv" and columns is not None and any(lv is not None for _, lv in columns):
        X = _read_encoded(path, columns)
    elif kind == ".csv":
        _, X = _read_csv(path, list(feature_names))
    else:
        X = _numeric(load_array(path, None if kind == ".npy" else "X"))
        if X.ndim != 2 or X.shape[1] != n:
            raise DataError(f"{path}: the model expects {n} feature column(s); the array "
                            f"has shape {X.shape}.")
        if X.shape[0] == 0:
            raise DataError(f"{path} has 0 rows; it needs at least one.")
    _check_finite(path, X, list(feature_names), "predicting")
    return X


def _read_encoded(path, columns):
    """A CSV's feature columns for prediction, text ones encoded with the model's levels."""
    header, n_header_lines = _csv_header(path)
    if header is None:
        raise DataError(f"{path} is empty; it needs a header row and at least one data row.")
    wanted = [name for name, _ in columns]
    used, trailing, _ = _columns(path, header, wanted)
    records, lines = _records(path, n_header_lines, len(header), trailing)
    blocks = []
    for (name, levels), j in zip(columns, used):
        cells = [r[j] for r in records]
        if levels is None:
            values = [_parse(cell) for cell in cells]
            for i, value in enumerate(values):
                if value is None:
                    raise DataError(f"{path}, line {lines[i]}: column {name!r} holds the "
                                    f"non-numeric value {_shown(cells[i])}. Encode it as "
                                    f"numbers or drop the column.")
            blocks.append(np.asarray(values, dtype=np.float64)[:, None])
            continue
        known = set(levels)
        for i, cell in enumerate(cells):
            if cell.lower() in _MISSING:     # as training calls it
                raise DataError(f"{path}, line {lines[i]}: the text column {name!r} has a "
                                f"missing value; fill it in with one of the levels the "
                                f"model knows ({', '.join(levels)}).")
            if cell not in known:
                raise DataError(
                    f"{path}, line {lines[i]}: column {name!r} holds {_shown(cell)}, a level "
                    f"the model did not see in training (it knows {', '.join(levels)}); "
                    f"gpumlp does not guess an encoding for it: use a known level, or "
                    f"retrain with data that has it.")
        blocks.append(_one_hot(cells, levels))
    return np.concatenate(blocks, axis=1)


def prediction_columns(y_pred, target_names="prediction"):
    """Predictions as a 2-D table, and a name for each of its columns.

    Parameters
    ----------
    y_pred : array of shape (n_samples,) or (n_samples, n_outputs)
    target_names : str or list of str
        One name per output; or one name, numbered ``name_0``, ``name_1``, ...
        when there are several outputs.

    Returns
    -------
    columns : ndarray of shape (n_samples, n_outputs)
    names : list of str
    """
    columns = np.asarray(y_pred).reshape(np.shape(y_pred)[0], -1)
    names = [target_names] if isinstance(target_names, str) else list(target_names)
    names = names or ["prediction"]
    n_outputs = columns.shape[1]
    if len(names) == n_outputs:
        return columns, names
    if n_outputs == 1:
        return columns, names[:1]
    return columns, [f"{names[0]}_{j}" for j in range(n_outputs)]


def write_predictions_csv(handle, y_pred, target_names="prediction"):
    """Write predictions to an open text ``handle`` as CSV, with a quoted header.

    The header row is written by :mod:`csv`, so a name holding a comma, a
    quote or a line break is quoted, its quotes doubled, and
    every CSV reader reads back the names written; each value is written
    with the fewest digits that read back as the same number of its dtype
    (a fixed nine digits would round a float64 1e8 + 0.127 to 100000000).
    """
    columns, names = prediction_columns(y_pred, target_names)
    csv.writer(handle, lineterminator="\n").writerow(names)
    # str() of a NumPy scalar is its shortest round-trip form, per dtype.
    for row in columns:   # write() alone: the CLI's stdout wrapper ends a broken pipe quietly
        handle.write(",".join(map(str, row)) + "\n")


def write_predictions(path, y_pred, target_names="prediction"):
    """Write predictions as CSV (one column per output) or ``.npy``, atomically.

    Parameters
    ----------
    path : str or path-like
        Ending in ``.csv`` or ``.npy``; written by :func:`gpumlp._atomic.atomic_path`.
    y_pred : array of shape (n_samples,) or (n_samples, n_outputs)
    target_names : str or list of str
        The CSV header (see :func:`prediction_columns`).
    """
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
            with open(tmp, "w", newline="") as handle:
                write_predictions_csv(handle, y_pred, target_names)
