"""Seeded regression data sets for finite-width training runs.

Every data set is a pure function of its :class:`DataSpec`: the same spec gives
bit-identical float64 NumPy arrays in any process. Training targets carry the spec's
Gaussian label noise; test targets are noise-free, so the test loss measures the
distance to the true function f*.

Data sets (``DataSpec.name``):

- ``"gaussian"``: x ~ N(0, I_d); y = <w, x> / sqrt(d) with a fixed w ~ N(0, I_d).
- ``"sphere"``: x uniform on the unit sphere S^{d-1}; y = <w, x> with w ~ N(0, I_d).
- ``"cubic"``: d = 1, x ~ U[0, 1], y = x^3 (the seed essay's problem, docs/theory.md §6.1).
- ``"product"``: d >= 2, x ~ N(0, I_d), y = x_1 x_2 (docs/theory.md §6.3).
- ``"teacher"``: x ~ N(0, I_d), y = a random FC teacher network (NTK parameterisation,
  ``teacher_depth`` hidden layers of ``teacher_width``, sigma_w = 1, sigma_b = 0).
- ``"single"``: one sample x = 1 (d = 1), y = ``target``: the catapult toy's setup
  (docs/theory.md §5).
- ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images, nothing downloaded;
  optional extra ``data``); pixels / 16 as inputs (d = 64), one-hot targets (k = 10),
  a seeded random subsample split into train and test.
- ``"file"``: a researcher's arrays x (n, d) and y (n, k) from ``path`` (``.npz`` or
  ``.parquet``, :mod:`ntk_dist.engine.datafile`), pinned by their ``sha256``; a seeded
  random subsample of ``n_train + n_test`` rows, split into train and test.

``test_grid=True`` replaces the random test inputs by a deterministic grid (noise-free
targets), for plotting functions and kernels along a curve: ``"cubic"``: ``n_test``
equally spaced points on [0, 1]; ``"product"`` with d = 2: the unit circle
x = (cos g, sin g) at g_i = 2 pi i / n_test wrapped into [-pi, pi), so that
x_test[0] = (1, 0) (docs/theory.md §6.3's x0).

``standardise=True`` centres and scales each input feature by the training set's
mean and standard deviation (features with zero spread are only centred).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ntk_dist.core import validate
from ntk_dist.engine.datafile import read_data_file

DATASETS = ("gaussian", "sphere", "cubic", "product", "teacher", "single", "digits", "file")
TEACHER_ACTIVATIONS = ("erf", "relu", "tanh", "identity")
_DIGITS_SIZE, _DIGITS_CLASSES = 1797, 10
#: Input dimension of ``"digits"`` (8x8 pixels).
DIGITS_DIM = 64


@dataclass(frozen=True)
class DataSpec:
    """A seeded data set (see the module docstring for each ``name``).

    Attributes:
      name: one of ``DATASETS``.
      n_train: training points m >= 1 (``"single"``: 1).
      n_test: test points >= 0 (``"single"``: 0).
      dim: input dimension d (``"single"``/``"cubic"``: 1; ``"product"``: >= 2;
        ``"digits"``: 64; ``"file"``: the file's).
      noise: standard deviation of the Gaussian label noise on training targets (>= 0).
      seed: data seed (>= 0), independent of the network seed.
      standardise: centre/scale input features by training statistics.
      test_grid: deterministic test inputs (module docstring; ``"cubic"`` and 2-d
        ``"product"`` only).
      target: the label y of ``"single"`` (ignored otherwise).
      teacher_width, teacher_depth, teacher_activation: the ``"teacher"`` network.
      path: the data file of ``"file"`` (an absolute path where workers run elsewhere).
      sha256: the file's expected sha256 (``"file"``; empty: whatever it holds now).
    """

    name: str = "gaussian"
    n_train: int = 8
    n_test: int = 0
    dim: int = 1
    noise: float = 0.0
    seed: int = 0
    standardise: bool = False
    target: float = 0.0
    teacher_width: int = 64
    teacher_depth: int = 1
    teacher_activation: str = "erf"
    test_grid: bool = False
    path: str = ""
    sha256: str = ""

    def __post_init__(self):
        set_ = object.__setattr__
        validate.choice(self.name, "data.name", DATASETS)
        set_(self, "n_train", validate.positive_int(self.n_train, "data.n_train"))
        set_(self, "n_test", _nonnegative_int(self.n_test, "data.n_test"))
        set_(self, "dim", validate.positive_int(self.dim, "data.dim"))
        set_(self, "noise", validate.nonnegative_float(self.noise, "data.noise"))
        set_(self, "seed", _nonnegative_int(self.seed, "data.seed"))
        set_(self, "target", validate.finite_float(self.target, "data.target"))
        set_(self, "teacher_width", validate.positive_int(self.teacher_width, "data.teacher_width"))
        set_(self, "teacher_depth", validate.positive_int(self.teacher_depth, "data.teacher_depth"))
        validate.choice(self.teacher_activation, "data.teacher_activation", TEACHER_ACTIVATIONS)
        if not isinstance(self.standardise, bool):
            raise ValueError(f"data.standardise must be True or False, got {self.standardise!r}")
        if not isinstance(self.test_grid, bool):
            raise ValueError(f"data.test_grid must be True or False, got {self.test_grid!r}")
        self._check_name_constraints()

    def _check_name_constraints(self):
        if self.name == "single":
            if self.n_train != 1 or self.n_test != 0 or self.dim != 1:
                raise ValueError(
                    "data 'single' is one sample x = 1: set n_train=1, n_test=0, dim=1; got "
                    f"n_train={self.n_train}, n_test={self.n_test}, dim={self.dim}"
                )
            if self.standardise:
                raise ValueError("data.standardise must be False for 'single' (one point)")
        if self.name == "cubic" and self.dim != 1:
            raise ValueError(f"data.dim must be 1 for 'cubic' (f*(x) = x^3), got {self.dim}")
        if self.name == "product" and self.dim < 2:
            raise ValueError(f"data.dim must be >= 2 for 'product' (f* = x1 x2), got {self.dim}")
        if self.name == "digits":
            if self.dim != DIGITS_DIM:
                raise ValueError(f"data.dim must be 64 for 'digits' (8x8 pixels), got {self.dim}")
            if self.n_train + self.n_test > _DIGITS_SIZE:
                raise ValueError(
                    f"data.n_train + data.n_test must be <= {_DIGITS_SIZE} for 'digits', got "
                    f"{self.n_train} + {self.n_test}"
                )
        for name in ("path", "sha256"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"data.{name} must be a string, got {getattr(self, name)!r}")
        if self.name != "file" and self.sha256:
            raise ValueError(f"data.sha256 is only used with name 'file', got {self.name!r}")
        if (self.name == "file") != bool(self.path):
            raise ValueError(
                "data.path is required for data 'file'"
                if self.name == "file"
                else f"data.path is only used with name 'file', got name {self.name!r}"
            )
        if self.name == "file":
            self._check_file()
        if self.test_grid and not (
            self.name == "cubic" or (self.name == "product" and self.dim == 2)
        ):
            raise ValueError(
                "data.test_grid is only defined for 'cubic' and for 'product' with dim=2, got "
                f"name={self.name!r}, dim={self.dim}; set test_grid: false"
            )

    def _check_file(self):
        arrays = self.file_arrays()
        n, dim = arrays.x.shape
        if self.dim != dim:
            raise ValueError(f"data.dim must be {dim} for {self.path!r} (x has shape {(n, dim)})")
        if self.n_train + self.n_test > n:
            raise ValueError(
                f"data.n_train + data.n_test must be <= {n}, the rows of {self.path!r}; got "
                f"{self.n_train} + {self.n_test}"
            )

    def file_arrays(self):
        """The validated arrays of ``"file"`` (:func:`ntk_dist.engine.datafile.read_data_file`).

        Raises:
          ValueError: the file is invalid, or its content no longer has ``sha256``.
        """
        arrays = read_data_file(self.path)
        if self.sha256 and arrays.sha256 != self.sha256:
            raise ValueError(
                f"data.sha256: {self.path!r} has changed (its sha256 is now {arrays.sha256}, "
                f"the spec says {self.sha256}); results of the old file do not describe it: "
                "use a new output directory, or restore the file"
            )
        return arrays

    @property
    def out_dim(self) -> int:
        """Target dimension k (10 for ``"digits"``, the columns of y for ``"file"``, else 1)."""
        if self.name == "file":
            return self.file_arrays().y.shape[1]
        return _DIGITS_CLASSES if self.name == "digits" else 1


def _nonnegative_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Arrays of one data set, float64; ``n_test = 0`` gives empty test arrays.

    Attributes:
      x_train: training inputs, shape (m, d).
      y_train: training targets (with label noise), shape (m, k).
      x_test: test inputs, shape (n_test, d).
      y_test: noise-free test targets, shape (n_test, k).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load(spec: DataSpec) -> Dataset:
    """Build the data set described by ``spec`` (cached; arrays are read-only)."""
    if not isinstance(spec, DataSpec):
        raise ValueError(f"data must be a DataSpec, got {type(spec).__name__}")
    return _load(spec)


@lru_cache(maxsize=256)
def _load(spec: DataSpec) -> Dataset:
    rng = np.random.default_rng([spec.seed, DATASETS.index(spec.name)])
    n = spec.n_train + spec.n_test
    x, y = _GENERATORS[spec.name](spec, rng, n)
    y_train = y[: spec.n_train] + spec.noise * rng.standard_normal(y[: spec.n_train].shape)
    x_train, x_test = x[: spec.n_train], x[spec.n_train :]
    y_test = y[spec.n_train :]
    if spec.test_grid:
        x_test, y_test = _GRIDS[spec.name](spec.n_test)
    if spec.standardise:
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    arrays = [np.array(a, dtype=np.float64) for a in (x_train, y_train, x_test, y_test)]
    for a in arrays:
        a.setflags(write=False)
    return Dataset(*arrays)


def _gaussian(spec, rng, n):
    x = rng.standard_normal((n, spec.dim))
    w = rng.standard_normal(spec.dim)
    return x, (x @ w)[:, None] / np.sqrt(spec.dim)


def _sphere(spec, rng, n):
    x = rng.standard_normal((n, spec.dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = rng.standard_normal(spec.dim)
    return x, (x @ w)[:, None]


def _cubic(spec, rng, n):
    x = rng.uniform(0.0, 1.0, (n, 1))
    return x, x**3


def _product(spec, rng, n):
    x = rng.standard_normal((n, spec.dim))
    return x, (x[:, 0] * x[:, 1])[:, None]


def _single(spec, rng, n):
    return np.ones((1, 1)), np.full((1, 1), spec.target)


def _teacher(spec, rng, n):
    from scipy.special import erf

    phi = {
        "erf": erf,
        "relu": lambda h: np.maximum(h, 0.0),
        "tanh": np.tanh,
        "identity": lambda h: h,
    }[spec.teacher_activation]
    x = rng.standard_normal((n, spec.dim))
    h, n_in = x, spec.dim
    for _ in range(spec.teacher_depth):
        h = phi(h @ rng.standard_normal((n_in, spec.teacher_width)) / np.sqrt(n_in))
        n_in = spec.teacher_width
    return x, h @ rng.standard_normal((n_in, 1)) / np.sqrt(n_in)


def _digits(spec, rng, n):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("data 'digits' needs scikit-learn: pip install 'ntk_dist[data]'") from None
    bunch = load_digits()
    idx = rng.permutation(_DIGITS_SIZE)[:n]
    x = bunch.data[idx] / 16.0
    y = np.eye(_DIGITS_CLASSES)[bunch.target[idx]]
    return x, y


def _file(spec, rng, n):
    arrays = spec.file_arrays()
    idx = rng.permutation(arrays.x.shape[0])[:n]
    return arrays.x[idx], arrays.y[idx]


def _cubic_grid(n):
    x = np.linspace(0.0, 1.0, n)[:, None]
    return x, x**3


def _circle_grid(n):
    g = (2 * np.pi * np.arange(n) / max(n, 1) + np.pi) % (2 * np.pi) - np.pi
    x = np.stack([np.cos(g), np.sin(g)], axis=1)
    return x, (x[:, 0] * x[:, 1])[:, None]


_GRIDS = {"cubic": _cubic_grid, "product": _circle_grid}

_GENERATORS = {
    "gaussian": _gaussian,
    "sphere": _sphere,
    "cubic": _cubic,
    "product": _product,
    "teacher": _teacher,
    "single": _single,
    "digits": _digits,
    "file": _file,
}
