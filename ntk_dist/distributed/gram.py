"""Gram matrices K(X1, X2) computed in tiles, one Ray task per tile.

The driver puts the inputs in the Ray object store once, submits one task per
B x B tile (a square Gram only the tiles i <= j, mirrored on assembly) with at
most ``max_in_flight`` tasks pending (back-pressure through ``ray.wait``), and
writes each finished tile itself. Tiles come back through the object store, so
workers need no shared filesystem: the same code runs on a local instance and
on a cluster joined with ``ray.init(address=...)``. A task lost with its node is
re-executed by Ray (``max_retries``), and the driver waits on results with
``fetch_local=False`` so it only pulls a tile when it is ready to write it.

Output: a NumPy array in memory, or, with ``out=DIR``, one ``.npy`` file per
kernel plus a checkpoint from which an interrupted run (even SIGKILL) resumes by
recomputing only the missing tiles (layout: :mod:`ntk_dist.distributed.gram_store`).

Cost: the analytic kernels cost O(N1 N2 (d + L)) flops; each tile task holds
its B x B blocks plus about ten B x B float64 intermediates. Driver memory is
O(B^2 * max_in_flight) when writing to disk.
"""

from __future__ import annotations

import functools
import math
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ntk_dist.core import validate
from ntk_dist.core.files import disk_full_as_usage_error
from ntk_dist.core.storage import is_uri, staged
from ntk_dist.core.tiling import BYTES_PER_ENTRY, tiles
from ntk_dist.distributed.gram_store import (
    DiskSink,
    MemorySink,
    check_gram_input,
    fingerprint,
    prepare_out,
)
from ntk_dist.distributed.resources import Resources
from ntk_dist.theory.architecture import FC, FIELDS, resolve
from ntk_dist.theory.kernels import DEFAULT_TILE, KINDS, kernel_config

#: Tiles per worker the automatic tile size aims for (load balance vs per-task overhead).
_TILES_PER_WORKER = 16
#: Largest automatic tile on CPU workers: the in-process kernel's tile, whose ~10 B x B
#: intermediates stay in cache (bench/bench_gram_tiles.py, N = 16384, 2 workers, warm:
#: 512-tiles 6.7 s, 1024: 8.3 s, 2048: 15.8 s, 4096: 16.2 s). GPU tiles: not yet measured.
_MAX_TILE_CPU, _MAX_TILE_GPU = DEFAULT_TILE, 2048
_MIN_TILE = 128
#: Fraction of available RAM an in-memory result may take before ``out`` is required.
_IN_MEMORY_FRACTION = 0.5


class GramResult(NamedTuple):
    """A computed Gram matrix.

    Attributes:
      nngp: K(x1, x2), shape (N1, N2) (empirical: ``None``), ndarray or read-only memmap.
      ntk: Theta(x1, x2), shape (N1, N2), or (N1 k, N2 k) sample-major for an empirical
        NTK with k outputs; ndarray or read-only memmap.
      tiles_total: number of tile tasks the matrix needs.
      tiles_computed: tiles computed by this call (fewer than ``tiles_total`` on resume).
    """

    nngp: np.ndarray | None
    ntk: np.ndarray | None
    tiles_total: int
    tiles_computed: int


def gram(
    x1,
    x2=None,
    arch: FC | None = None,
    *,
    get=KINDS,
    tile: int | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    resources: Resources | None = None,
    max_in_flight: int | None = None,
    progress: bool = False,
    **fields,
) -> GramResult:
    """Infinite-width NNGP/NTK Gram (``ntk_dist.fc_kernel``) in Ray tile tasks.

    Starts a local Ray on 127.0.0.1 (``ensure_ray``) when none is connected.

    Args:
      x1: inputs, shape (N1, d), float32 or float64.
      x2: inputs, shape (N2, d), or ``None`` for the symmetric Gram of x1 (tiles
        i <= j only, mirrored).
      arch, **fields: the architecture, an :class:`ntk_dist.FC` or its fields as
        keywords (``depth=2, activation="relu", ...``), as in :func:`ntk_dist.fc_kernel`.
      get: as in :func:`ntk_dist.fc_kernel`.
      tile: tile edge B; default from worker count and memory (:func:`auto_tile`).
      out: directory for a disk-backed, checkpointed, resumable result; ``None``
        assembles in memory (refused when it would not fit). A URI
        (``s3://bucket/prefix``, :mod:`ntk_dist.core.storage`) computes in a staged
        local copy, uploads the result when it is complete
        (:mod:`ntk_dist.distributed.gram_store`) and returns it in memory.
      overwrite: replace a complete result in ``out`` (otherwise ValueError).
      resources: Ray resources per tile task (``Resources(num_gpus=1)`` on GPUs).
      max_in_flight: most tasks pending at once (default 2 per worker CPU).
      progress: show a tqdm bar (tiles done, entries/s, ETA).

    Returns:
      :class:`GramResult` with ``nngp``/``ntk`` of the inputs' dtype (``None`` when
      not requested).

    Raises:
      ValueError: before any work, for bad kernel arguments, tile <= 0, mismatched
        feature dimensions, an unwritable or too-small output location, or a
        complete result in ``out`` without ``overwrite``.
        The output's disk filling up mid-run is a ValueError too: what is on disk
        stays valid (the ``.npy`` blocks are allocated up front), and rerunning after
        freeing space resumes.
    """
    arch = resolve(arch, fields)
    kernel_config(arch, get)  # validates get
    kinds = tuple(k for k in KINDS if k in get)
    # Plain fields, not the FC: the manifest records them, and a named activation travels
    # to the workers by name and resolves there to the cached function (jit cache hits).
    kernel = dict(kind="analytic", **arch.kwargs(), get=kinds)
    with disk_full_as_usage_error(out):
        return _run(
            x1, x2, kernel, kinds, 1, tile, out, overwrite, resources, max_in_flight, progress
        )  # fmt: skip


def empirical_gram(
    model,
    params,
    x1,
    x2=None,
    *,
    tile: int | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    resources: Resources | None = None,
    max_in_flight: int | None = None,
    progress: bool = False,
) -> GramResult:
    """Empirical NTK Gram Theta_hat(x1, x2) of given finite-network params, in Ray tiles.

    Args:
      model: :class:`FCNetwork`, :class:`CatapultToy` or ``apply(params, x)``, as in
        :func:`ntk_dist.empirical_ntk` (each tile calls it with ``implementation="auto"``).
      params: the network's parameter pytree (put in the object store once).
      x1, x2, tile, out, overwrite, resources, max_in_flight, progress: as in :func:`gram`.

    Returns:
      :class:`GramResult` with ``nngp=None`` and ``ntk`` of shape (N1 k, N2 k),
      sample-major (``ntk_dist.ntk_matrix`` layout), k the number of outputs.
    """
    import jax

    params = jax.tree.map(np.asarray, params)
    x1 = validate.inputs(np.asarray(x1), "x1")
    probe = np.asarray(_apply(model, params, x1[:1]))
    if probe.ndim != 2:
        raise ValueError(f"model output must have shape (N, k), got {probe.shape}")
    kernel = dict(kind="empirical", model=model, params=params, get=("ntk",))
    with disk_full_as_usage_error(out):
        return _run(
            x1, x2, kernel, ("ntk",), probe.shape[1], tile, out, overwrite, resources,
            max_in_flight, progress,
        )  # fmt: skip


def _apply(model, params, x):
    from ntk_dist.models.empirical import apply_fn

    return apply_fn(model)(params, x)


def auto_tile(
    n1: int, n2: int, *, square: bool, workers: int, worker_memory: float, gpu: bool = False
) -> int:
    """Tile edge B: about ``_TILES_PER_WORKER`` tiles per worker, capped by cache and memory.

    Args:
      n1, n2: Gram shape.
      square: only tiles i <= j are computed.
      workers: worker CPUs (or GPUs) running tiles at once.
      worker_memory: bytes of memory per worker.
      gpu: tiles run on GPUs (cap 2048) rather than CPUs (cap 512, cache-sized).

    Returns:
      B in [128, cap] with ``B^2 * 128`` bytes within half of ``worker_memory``.
    """
    target = _TILES_PER_WORKER * workers
    t = 1
    while (t * (t + 1) // 2 if square else t * math.ceil(n2 * t / n1)) < target and t < n1:
        t += 1
    b = math.ceil(n1 / t)
    b_mem = int(math.sqrt(0.5 * worker_memory / BYTES_PER_ENTRY))
    cap = _MAX_TILE_GPU if gpu else _MAX_TILE_CPU
    return int(max(_MIN_TILE, min(b, b_mem, cap)))


def cluster_shape(resources: Resources) -> tuple[int, float]:
    """(tile tasks the connected Ray cluster runs at once, bytes of memory per task)."""
    import ray

    from ntk_dist.distributed.runtime import task_memory

    return resources.slots(ray.cluster_resources()), task_memory(resources)


def _compute_tile(kernel: dict, x1, x2, b: int, i: int, j: int) -> dict:
    """One tile: {kind: block}; runs in a Ray worker (pure compute).

    A ragged edge tile is computed at the full tile shape, on inputs padded by repeating
    their last row, and cut: every entry depends only on its own pair of inputs, so the
    kept part is unchanged, and a worker compiles two tile shapes (square and cross
    B x B) instead of up to four per Gram, for at most one extra row of tiles of work.
    """
    import jax

    if x1.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    diag = x2 is None and i == j
    xs2 = x1 if x2 is None else x2
    xa, xb = x1[i * b : (i + 1) * b], None if diag else xs2[j * b : (j + 1) * b]
    na, nb = len(xa), len(xa) if diag else len(xb)
    xa = _pad_rows(xa, min(b, len(x1)))
    xb = None if diag else _pad_rows(xb, min(b, len(xs2)))
    if kernel["kind"] == "analytic":
        from ntk_dist.theory.kernels import fc_kernel

        fields = {k: kernel[k] for k in FIELDS if k in kernel}  # kwargs() omits defaults
        res = fc_kernel(xa, xb, get=kernel["get"], tile=max(len(xa), 1) * 2, **fields)
        blocks = {k: np.asarray(getattr(res, k)) for k in kernel["get"]}
    else:
        from ntk_dist.models.empirical import empirical_ntk, ntk_matrix

        theta = empirical_ntk(kernel["model"], kernel["params"], xa, xb)
        blocks = {"ntk": np.asarray(ntk_matrix(theta))}
    k = next(iter(blocks.values())).shape[0] // len(xa)  # outputs per sample (sample-major)
    return {name: v[: na * k, : nb * k] for name, v in blocks.items()}


def _pad_rows(x, rows: int):
    """x with its last row repeated up to ``rows`` rows."""
    return np.pad(x, ((0, rows - len(x)), (0, 0)), mode="edge") if len(x) < rows else x


def _run(x1, x2, kernel, kinds, k, tile, out, overwrite, resources, max_in_flight, progress):
    x1 = check_gram_input(validate.inputs(np.asarray(x1), "x1"), "x1")
    if x2 is not None:
        x2 = check_gram_input(validate.inputs(np.asarray(x2), "x2"), "x2")
        validate.same_features(x1, x2)
        x2 = x2.astype(np.result_type(x1, x2), copy=False)
    x1 = x1.astype(np.result_type(x1, x2) if x2 is not None else x1.dtype, copy=False)
    if x1.dtype not in (np.float32, np.float64):
        x1 = x1.astype(np.float64)
        x2 = None if x2 is None else x2.astype(np.float64)
    if tile is not None:
        tile = validate.positive_int(tile, "tile")
    resources = resources or Resources()
    if max_in_flight is not None:
        max_in_flight = validate.positive_int(max_in_flight, "max_in_flight")
    square = x2 is None
    n1, n2 = x1.shape[0], (x1 if square else x2).shape[0]
    shape = (n1 * k, n2 * k)
    nbytes = len(kinds) * shape[0] * shape[1] * x1.itemsize
    if out is None or is_uri(out):  # a URI's staged copy goes with the call: in memory
        _check_fits(nbytes)
    compute = functools.partial(
        _compute, x1, x2, kernel, kinds, k, shape, nbytes, tile, overwrite, resources,
        max_in_flight, progress,
    )  # fmt: skip
    if not is_uri(out):
        return compute(out)
    with staged(out) as local:
        res = compute(local)
        load = lambda a: None if a is None else np.array(a)  # noqa: E731
        return res._replace(nngp=load(res.nngp), ntk=load(res.ntk))


def _compute(
    x1, x2, kernel, kinds, k, shape, nbytes, tile, overwrite, resources, max_in_flight, progress,
    out,
):  # fmt: skip
    """The tile tasks of a validated request, into memory (``out=None``) or a local ``out``."""
    import ray
    from tqdm.auto import tqdm

    from ntk_dist.distributed.runtime import ensure_ray

    square = x2 is None
    n1, n2 = x1.shape[0], (x1 if square else x2).shape[0]
    if out is not None:
        out = Path(out)
        prepare_out(out, overwrite, nbytes)
    ensure_ray()
    workers, memory = cluster_shape(resources)
    b = tile or auto_tile(
        n1, n2, square=square, workers=workers, worker_memory=memory, gpu=resources.num_gpus > 0
    )
    grid = tiles(n1, n2, b, square)
    manifest = fingerprint(x1, x2, kernel, b, k)
    sink = MemorySink(shape, kinds, x1.dtype) if out is None else DiskSink(
        out, shape, kinds, x1.dtype, manifest
    )  # fmt: skip
    todo = [t for t in grid if t not in sink.done]
    in_flight = max_in_flight or 2 * workers

    task = ray.remote(_compute_tile).options(
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
        max_retries=resources.max_retries,
        retry_exceptions=False,
    )
    x1_ref = ray.put(x1)
    x2_ref = None if square else ray.put(x2)
    kernel_ref = ray.put(kernel)
    pending: dict = {}
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), unit="tile", disable=not progress)
    start, entries = time.perf_counter(), 0
    queue = iter(todo)
    try:
        while True:
            for ij in queue:
                pending[task.remote(kernel_ref, x1_ref, x2_ref, b, *ij)] = ij
                if len(pending) >= in_flight:
                    break
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, fetch_local=False)
            ij = pending.pop(ready[0])
            blocks = ray.get(ready[0])
            sink.write(ij, b * k, blocks, mirror=square and ij[0] != ij[1])
            entries += next(iter(blocks.values())).size * (2 if square and ij[0] != ij[1] else 1)
            bar.update(1)
            bar.set_postfix(entries_per_s=f"{entries / (time.perf_counter() - start):.3g}")
        sink.finish()
    finally:
        bar.close()
        for ref in pending:
            ray.cancel(ref)
    arrays = sink.result()
    return GramResult(arrays.get("nngp"), arrays.get("ntk"), len(grid), len(todo))


def _check_fits(nbytes: int) -> None:
    from ntk_dist.distributed.runtime import available_memory

    avail = available_memory()
    if nbytes > _IN_MEMORY_FRACTION * avail:
        raise ValueError(
            f"the Gram needs {nbytes / 2**30:.1f} GiB, more than half the {avail / 2**30:.1f} GiB "
            "of free memory; pass out=DIR to write it to disk"
        )
