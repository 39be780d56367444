"""Block tiling of an N1 x N2 kernel matrix: the one tiling rule of ntk_dist.

The in-process kernels (:mod:`ntk_dist.theory.kernels`), the matrix-free solver
(:mod:`ntk_dist.theory.solve`) and the distributed Gram
(:mod:`ntk_dist.distributed.gram`) all cut a matrix into B x B tiles with
:func:`tiles`; a square (symmetric) matrix needs only the tiles i <= j, the others are
their transposes.
"""

from __future__ import annotations

import math

#: Bytes of worker memory assumed per tile entry (the kernel blocks plus the
#: intermediates of the layer recursion), used to size tiles to memory.
BYTES_PER_ENTRY = 128


def tiles(n1: int, n2: int, b: int, square: bool) -> list[tuple[int, int]]:
    """Tile indices (i, j) of an ``n1 x n2`` matrix in ``b x b`` tiles, row-major;
    only j >= i when ``square``. Tile (i, j) covers rows ``i*b:(i+1)*b`` and columns
    ``j*b:(j+1)*b`` (the last ones ragged)."""
    t1, t2 = math.ceil(n1 / b), math.ceil(n2 / b)
    return [(i, j) for i in range(t1) for j in range(i if square else 0, t2)]


def tile_for_bytes(block_bytes: float) -> int:
    """The largest tile edge B whose tile fits ``block_bytes`` (>= 1)."""
    return max(1, int(math.sqrt(block_bytes / BYTES_PER_ENTRY)))
