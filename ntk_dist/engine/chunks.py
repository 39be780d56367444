"""How many jobs one vmapped chunk trains on CPU: a table measured on this code.

On CPU, vmapping B members turns each layer's matrix-vector work into a
matrix-matrix product of B columns (faster per member), until the chunk's training
state overflows the cache and every step becomes memory-bound (slower per member).
The best B therefore depends on the parameter count P (state, cache) and the
training-set size m (work per step); :data:`CPU_CHUNKS` holds the best measured B
per range of P (``bench/bench_train_chunks.py``, single-threaded as in a 1-CPU Ray
task; figures in bench/RESULTS.md). Accelerators train a whole batch as one chunk
(:func:`ntk_dist.engine.train.auto_chunk`).
"""

from __future__ import annotations

#: (largest parameter count P, jobs per chunk), in increasing P; above the last row, 1.
#: Measured with m <= 8 training points; a larger m makes each member's step a
#: matrix-matrix product already, see :func:`cpu_chunk`.
CPU_CHUNKS: tuple[tuple[int, int], ...] = (
    (150_000, 8),
    (400_000, 4),
)

#: Above this many training points a member's step is a matrix-matrix product on its
#: own, and batching members no longer helps: one job per chunk.
LARGE_M = 256


#: Bytes of parameters one vmapped chunk of catapult toys may hold on CPU. A toy step is
#: a few elementwise passes over its 2n parameters (closed forms, ntk_dist.engine.toy),
#: memory-bound: a chunk is fastest while its parameters stay in the core's L2 cache
#: (512 KiB here) with every core busy, as in a sweep's Ray workers. Measured at
#: n = 4096 in float64 (64 KiB a toy), 128 runs x 1000 steps in each of two concurrent
#: single-thread processes (seconds; bench/bench_train_toy_chunks.py, bench/RESULTS.md):
#: chunk 2: 0.77-0.84, 4: 0.77-0.81, 8: 1.42-1.51, 16: 1.16-1.26, 32: 1.03-1.55. One
#: process alone took 0.73 s at chunk 4 and 0.45-1.58 s at chunk 32: a chunk held in the
#: shared L3 varies with what else runs on the host, one held in L2 does not.
TOY_CHUNK_BYTES = 256 * 2**10


def toy_chunk(n_params: int, itemsize: int) -> int:
    """Jobs per vmapped chunk on CPU for catapult toys of ``n_params`` parameters of
    ``itemsize`` bytes: the largest power of two whose parameters fit
    :data:`TOY_CHUNK_BYTES` (at least 1)."""
    fit = max(1, TOY_CHUNK_BYTES // (n_params * itemsize))
    return 1 << (fit.bit_length() - 1)


def cpu_chunk(n_params: int, n_train: int, *, linearised: bool = False) -> int:
    """Jobs per vmapped chunk on CPU for networks of ``n_params`` parameters trained on
    ``n_train`` points (``linearised`` doubles the state, as twice the parameters)."""
    if n_train > LARGE_M:
        return 1
    size = n_params * (2 if linearised else 1)
    for bound, chunk in CPU_CHUNKS:
        if size <= bound:
            return chunk
    return 1
