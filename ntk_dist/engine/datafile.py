"""A researcher's own arrays as a data set: ``DataSpec(name="file", path=...)``.

Formats (chosen by the file's suffix):

- ``.npz`` (``numpy.savez(path, x=inputs, y=targets)``): arrays ``x`` of shape (n, d)
  and ``y`` of shape (n,) or (n, k). Read with ``allow_pickle=False``: no code runs.
- ``.parquet``: columns ``x`` and ``y``, each a number column (one feature / one target)
  or a list column whose rows all have the same length (d features / k targets).

Both must hold real numbers (float or integer dtype; bool, complex, strings and objects
are refused), at least one row, the same number of rows in x and y, and no NaN, inf or
null. Targets are used as given with the squared loss of docs/theory.md §3: give
classes as one-hot rows. Every error names the field (``data.path``) and says what was
found and what is expected.

Identity: :func:`read_data_file` returns the file's sha256 with the arrays; the spec
records it (``data.sha256``) and so its hash covers the data's content, not only its
path.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

FILE_SUFFIXES = (".npz", ".parquet")
_ARRAYS = ("x", "y")


class FileArrays(NamedTuple):
    """A data file's validated arrays (float64, read-only) and its content hash.

    Attributes:
      x: inputs, shape (n, d).
      y: targets, shape (n, k).
      sha256: hex sha256 of the file's bytes.
    """

    x: np.ndarray
    y: np.ndarray
    sha256: str


def read_data_file(path) -> FileArrays:
    """Read and validate a ``.npz`` or ``.parquet`` data file (module docstring).

    Cached on (absolute path, modification time, size), so a changed file is read again.

    Raises:
      ValueError: naming ``data.path``: no such file, unknown suffix, unreadable, a missing
        array or column, a bad shape or dtype, or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"data.path: no file at {str(path)!r}; give the path of a .npz or .parquet file "
            "(relative paths are resolved against the current directory)"
        )
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise ValueError(
            f"data.path: {str(path)!r} has suffix {path.suffix!r}; expected .npz "
            "(numpy.savez(path, x=..., y=...)) or .parquet (columns x and y)"
        )
    stat = path.stat()
    return _read(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _read(path: str, _mtime_ns: int, _size: int) -> FileArrays:
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"data.path: cannot read {path!r} ({err.strerror})") from None
    read = _npz if path.lower().endswith(".npz") else _parquet
    x, y = read(raw, path)  # parse the bytes that were hashed
    x, y = _checked(x, "x", path), _checked(y, "y", path)
    if x.ndim != 2:
        raise ValueError(f"data.path: {path!r}: x has shape {x.shape}; expected (n_points, dim)")
    y = y[:, None] if y.ndim == 1 else y
    if y.ndim != 2:
        raise ValueError(
            f"data.path: {path!r}: y has shape {y.shape}; expected (n_points,) or "
            "(n_points, n_outputs)"
        )
    if x.shape[0] != y.shape[0] or x.shape[0] == 0 or 0 in (x.shape[1], y.shape[1]):
        raise ValueError(
            f"data.path: {path!r}: x has shape {x.shape} and y {y.shape}; they need the same "
            "number of rows, at least one, and at least one column each"
        )
    for a in (x, y):
        a.setflags(write=False)
    return FileArrays(x, y, hashlib.sha256(raw).hexdigest())


def _npz(raw: bytes, path: str):
    if not raw.startswith(b"PK"):  # np.load would take other bytes for a pickle
        raise ValueError(
            f"data.path: {path!r} is not an .npz archive (the zip file numpy.savez writes)"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            missing = [name for name in _ARRAYS if name not in npz.files]
            if missing:
                raise ValueError(
                    f"data.path: {path!r} has no array {missing[0]!r} (it has: "
                    f"{', '.join(npz.files) or 'none'}); save it with "
                    "numpy.savez(path, x=inputs, y=targets)"
                )
            return tuple(npz[name] for name in _ARRAYS)
    except ValueError as err:
        if str(err).startswith("data.path"):
            raise
        raise ValueError(
            f"data.path: {path!r} is not a readable .npz of numeric arrays ({err})"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"data.path: {path!r} is not a readable .npz file ({err})") from None


def _parquet(raw: bytes, path: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowException, OSError) as err:
        raise ValueError(f"data.path: {path!r} is not a readable Parquet file ({err})") from None
    missing = [name for name in _ARRAYS if name not in table.column_names]
    if missing:
        raise ValueError(
            f"data.path: {path!r} has no column {missing[0]!r} (it has: "
            f"{', '.join(table.column_names) or 'none'}); expected columns x and y"
        )
    out = []
    for name in _ARRAYS:
        col = table.column(name).combine_chunks()
        if col.null_count:
            raise ValueError(
                f"data.path: {path!r}: column {name!r} has {col.null_count} null values"
            )
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            lengths = np.unique(pc.list_value_length(col).to_numpy(zero_copy_only=False))
            if len(lengths) > 1:
                raise ValueError(
                    f"data.path: {path!r}: the lists of column {name!r} have lengths "
                    f"{lengths.tolist()}; every row needs the same length"
                )
            flat = pc.list_flatten(col)
            if flat.null_count:
                raise ValueError(
                    f"data.path: {path!r}: column {name!r} has null entries in its lists"
                )
            width = int(lengths[0]) if len(lengths) else 0
            out.append(_numbers(flat, name, path).reshape(len(col), width))
        else:
            out.append(_numbers(col, name, path))
    return tuple(out)


def _numbers(array, name: str, path: str) -> np.ndarray:
    import pyarrow as pa

    if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type)):
        raise ValueError(
            f"data.path: {path!r}: column {name!r} holds {array.type}; expected numbers "
            "(float or int) or lists of numbers"
        )
    return array.to_numpy(zero_copy_only=False)


def _checked(a: np.ndarray, name: str, path: str) -> np.ndarray:
    kind = a.dtype.kind
    if kind not in "fiu":
        raise ValueError(
            f"data.path: {path!r}: {name} has dtype {a.dtype}; expected real numbers "
            "(a float or integer dtype)"
        )
    a = np.array(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise ValueError(
            f"data.path: {path!r}: {name} has {int(bad.sum())} non-finite values (NaN or "
            f"inf), the first in row {row}; clean or drop those rows"
        )
    return a
