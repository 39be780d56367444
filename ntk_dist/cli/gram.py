"""``ntk-dist gram``: an NNGP/NTK Gram matrix from inputs on disk, tiled on Ray.

Reads X1 (and optionally X2) from ``.npy`` (shape (N, d)) or Parquet (every column
numeric, one row per point), writes ``OUT/nngp.npy`` and/or ``OUT/ntk.npy`` with a
checkpoint (``ntk_dist.distributed.gram``): rerunning an interrupted command resumes it, and a
complete output is replaced only with ``--overwrite``. ``--out`` may be an object-store
URI (``s3://bucket/prefix``), uploaded when complete (``ntk_dist.distributed.gram_store``).
Exit code 2 on bad input, before any work.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np


def read_inputs(path: str, name: str) -> np.ndarray:
    """Load an (N, d) float array from ``.npy`` or ``.parquet``; ValueError naming ``name``."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{name}: no such file {path}")
    if p.suffix == ".npy":
        try:
            x = np.load(p, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{name}: {path} is not a readable .npy array ({err})") from None
    elif p.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(p)
        bad = [f.name for f in table.schema if f.type.id not in _numeric_ids()]
        if bad:
            raise ValueError(f"{name}: Parquet columns must all be numeric, got {bad} in {path}")
        x = np.column_stack([c.to_numpy() for c in table.columns])
    else:
        raise ValueError(f"{name}: expected a .npy or .parquet file, got {path}")
    from ntk_dist.distributed.gram_store import check_gram_input

    x = check_gram_input(x, f"{name} ({path})")
    return x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)


@cache
def _numeric_ids() -> frozenset[int]:
    import pyarrow as pa

    types = [pa.float16(), pa.float32(), pa.float64(), pa.int8(), pa.int16(), pa.int32()]
    types += [pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
    return frozenset(t.id for t in types)


def _run(args) -> int:
    import jax

    from ntk_dist.distributed.gram import gram
    from ntk_dist.theory.architecture import FC

    x1 = read_inputs(args.x1, "--x1")
    x2 = None if args.x2 is None else read_inputs(args.x2, "--x2")
    if x1.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    res = gram(
        x1,
        x2,
        FC(args.depth, args.activation, args.sigma_w, args.sigma_b),
        get=tuple(args.get.split(",")),
        tile=args.tile,
        out=args.out,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"wrote {args.out}: {res.tiles_computed} of {res.tiles_total} tiles computed "
        f"({res.tiles_total - res.tiles_computed} resumed)"
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser("gram", help="compute an NNGP/NTK Gram matrix on Ray, to disk")
    p.add_argument("--x1", required=True, help="inputs (N1, d): .npy or .parquet")
    p.add_argument("--x2", help="second inputs (N2, d); omit for the symmetric Gram of x1")
    p.add_argument(
        "--out",
        required=True,
        help="output directory (nngp.npy, ntk.npy, COMPLETE), or s3://bucket/prefix",
    )
    p.add_argument("--depth", type=int, required=True, help="hidden layers L >= 1")
    p.add_argument("--activation", default="relu", help="erf, relu, leaky_relu[:slope], ...")
    p.add_argument("--sigma-w", type=float, required=True, help="weight scale > 0")
    p.add_argument("--sigma-b", type=float, default=0.0, help="bias scale >= 0")
    p.add_argument("--get", default="nngp,ntk", help="comma-separated kernels: nngp,ntk")
    p.add_argument("--tile", type=int, help="tile edge B (default: automatic)")
    p.add_argument("--overwrite", action="store_true", help="replace a complete output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
