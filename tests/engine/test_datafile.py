"""A researcher's own data files: both formats load, splits are seeded, the content is
pinned by its sha256, and every bad file is refused naming data.path."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ntk_dist.engine.data import DataSpec, load

RNG = np.random.default_rng(0)
X = RNG.normal(size=(12, 4))
Y = np.eye(3)[RNG.integers(0, 3, 12)]


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **(arrays or {"x": X, "y": Y}))
    return str(path)


def _spec(path, **kw):
    return DataSpec("file", path=path, **{"n_train": 8, "n_test": 4, "dim": 4, **kw})


def _rows_of(a, b):
    """Index of each row of a in b (rows are distinct)."""
    return [int(np.flatnonzero((b == r).all(axis=1))[0]) for r in a]


def test_npz_rows_are_split_by_a_seeded_permutation(tmp_path):
    data = load(_spec(_npz(tmp_path), seed=3))
    rows = _rows_of(data.x_train, X) + _rows_of(data.x_test, X)
    assert sorted(rows) == list(range(12))  # every row once, train and test disjoint
    np.testing.assert_array_equal(data.y_train, Y[rows[:8]])
    assert _spec(_npz(tmp_path)).out_dim == 3
    other = load(_spec(_npz(tmp_path), seed=4))
    assert not np.array_equal(other.x_train, data.x_train)


def test_parquet_lists_and_scalar_columns_equal_the_npz(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": [list(r) for r in X], "y": list(Y[:, 1])}), path)
    got = load(_spec(str(path), seed=1))
    want = load(_spec(_npz(tmp_path, x=X, y=Y[:, 1]), seed=1))
    np.testing.assert_array_equal(got.x_train, want.x_train)
    np.testing.assert_array_equal(got.y_test, want.y_test)
    assert got.y_train.shape == (8, 1)


def test_a_changed_file_is_refused_by_its_sha256(tmp_path):
    path = _npz(tmp_path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    spec = _spec(path, sha256=digest)
    load(spec)
    np.savez(path, x=X + 1, y=Y)
    with pytest.raises(ValueError, match="data.sha256: .* has changed"):
        load(_spec(path, sha256=digest, seed=9))


def _parquet(tmp_path, table):
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    return str(path)


BAD_FILES = {
    "no file": lambda t: str(t / "absent.npz"),
    "suffix": lambda t: (t / "d.csv").write_text("1,2") and str(t / "d.csv"),
    "not a zip": lambda t: (t / "b.npz").write_bytes(b"garbage") and str(t / "b.npz"),
    "missing y": lambda t: _npz(t, x=X, z=Y),
    "NaN": lambda t: _npz(t, x=np.where(np.arange(12)[:, None] == 5, np.nan, X), y=Y),
    "strings": lambda t: _npz(t, x=X.astype(str), y=Y),
    "bool": lambda t: _npz(t, x=X > 0, y=Y),
    "x 1-d": lambda t: _npz(t, x=X[:, 0], y=Y),
    "rows differ": lambda t: _npz(t, x=X, y=Y[:5]),
    "parquet column": lambda t: _parquet(t, pa.table({"x": list(X[:, 0]), "z": list(Y[:, 0])})),
    "parquet ragged": lambda t: _parquet(
        t, pa.table({"x": [list(r[: 2 + i % 2]) for i, r in enumerate(X)], "y": list(Y[:, 0])})
    ),
    "parquet null": lambda t: _parquet(t, pa.table({"x": [1.0, None], "y": [1.0, 2.0]})),
    "parquet text": lambda t: _parquet(t, pa.table({"x": ["a", "b"], "y": [1.0, 2.0]})),
}
MESSAGES = {
    "no file": "no file at",
    "suffix": "expected .npz",
    "not a zip": "not an .npz archive",
    "missing y": "has no array 'y'",
    "NaN": "4 non-finite values .* row 5",
    "strings": "dtype <U",
    "bool": "dtype bool",
    "x 1-d": r"shape \(12,\)",
    "rows differ": "same number of rows",
    "parquet column": "has no column 'y'",
    "parquet ragged": "same length",
    "parquet null": "null values",
    "parquet text": "holds string",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_refused_naming_the_field(tmp_path, case):
    with pytest.raises(ValueError, match=f"^data.path: .*{MESSAGES[case]}"):
        _spec(BAD_FILES[case](tmp_path))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="file"), "data.path is required"),
        (dict(name="gaussian", path="x.npz"), "only used with name 'file'"),
        (dict(name="gaussian", sha256="ab"), "only used with name 'file'"),
    ],
)
def test_path_and_sha256_belong_to_file(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataSpec(**kwargs)


def test_sizes_are_checked_against_the_file(tmp_path):
    with pytest.raises(ValueError, match="data.dim must be 4"):
        _spec(_npz(tmp_path), dim=3)
    with pytest.raises(ValueError, match="<= 12, the rows"):
        _spec(_npz(tmp_path), n_train=10)
