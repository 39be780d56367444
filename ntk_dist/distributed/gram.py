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
kernel (``numpy.lib.format.open_memmap``, may exceed RAM) plus a checkpoint:

    DIR/manifest.json   what is being computed (sizes, tile, kernel, input hashes)
    DIR/tiles.log       append-only, fsync'd, one "i j" line per tile on disk
    DIR/COMPLETE        written last (by atomic rename) when every tile is on disk

A tile is logged only after the memmaps holding it are flushed, so an
interrupted run (even SIGKILL) resumes by recomputing only the tiles missing
from the log. Without ``COMPLETE`` the ``.npy`` files are never to be trusted.

Cost: the analytic kernels cost O(N1 N2 (d + L)) flops; each tile task holds
its B x B blocks plus about ten B x B float64 intermediates. Driver memory is
O(B^2 * max_in_flight) when writing to disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ntk_dist.core import validate
from ntk_dist.core.files import (
    disk_full_as_usage_error,
    temp_path,
    trim_torn_line,
    write_text_atomic,
)
from ntk_dist.core.tiling import BYTES_PER_ENTRY, tiles
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
MANIFEST, LOG, COMPLETE = "manifest.json", "tiles.log", "COMPLETE"


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


@dataclass(frozen=True)
class TileResources:
    """Ray resources of one tile task.

    Attributes:
      num_cpus: CPUs per task (default 1).
      num_gpus: GPUs per task; 1 on GPU nodes so each tile runs on its own device
        (default 0).
      max_retries: re-executions of a task lost with its worker or node (default 5).
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 5

    def __post_init__(self):
        validate.positive_float(self.num_cpus, "resources.num_cpus")
        validate.nonnegative_float(self.num_gpus, "resources.num_gpus")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(
                f"resources.max_retries must be an integer >= 0, got {self.max_retries!r}"
            )


def gram(
    x1,
    x2=None,
    *,
    depth: int,
    activation,
    sigma_w: float,
    sigma_b: float,
    get=KINDS,
    tile: int | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    resources: TileResources | None = None,
    max_in_flight: int | None = None,
    progress: bool = False,
) -> GramResult:
    """Infinite-width NNGP/NTK Gram (``ntk_dist.fc_kernel``) in Ray tile tasks.

    Starts a local Ray on 127.0.0.1 (``ensure_ray``) when none is connected.

    Args:
      x1: inputs, shape (N1, d), float32 or float64.
      x2: inputs, shape (N2, d), or ``None`` for the symmetric Gram of x1 (tiles
        i <= j only, mirrored).
      depth, activation, sigma_w, sigma_b, get: as in :func:`ntk_dist.fc_kernel`.
      tile: tile edge B; default from worker count and memory (:func:`auto_tile`).
      out: directory for a disk-backed, checkpointed, resumable result; ``None``
        assembles in memory (refused when it would not fit).
      overwrite: replace a complete result in ``out`` (otherwise ValueError).
      resources: Ray resources per tile task (``TileResources(num_gpus=1)`` on GPUs).
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
    kernel_config(depth, activation, sigma_w, sigma_b, get)  # validates kernel arguments
    kinds = tuple(k for k in KINDS if k in get)
    kernel = dict(
        kind="analytic",
        depth=depth,
        activation=activation,
        sigma_w=float(sigma_w),
        sigma_b=float(sigma_b),
        get=kinds,
    )
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
    resources: TileResources | None = None,
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


def _cluster_shape(resources: TileResources) -> tuple[int, float]:
    import ray

    total = ray.cluster_resources()
    key = "GPU" if resources.num_gpus > 0 else "CPU"
    per = resources.num_gpus if key == "GPU" else resources.num_cpus
    workers = max(1, int(total.get(key, 1) // per))
    memory = total.get("memory", 8e9) / max(1, int(total.get("CPU", 1)))
    return workers, memory


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

        args = {k: kernel[k] for k in ("depth", "activation", "sigma_w", "sigma_b", "get")}
        res = fc_kernel(xa, xb, tile=max(len(xa), 1) * 2, **args)
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
    import ray
    from tqdm.auto import tqdm

    from ntk_dist.distributed.runtime import ensure_ray

    x1 = validate.inputs(np.asarray(x1), "x1")
    if x2 is not None:
        x2 = validate.inputs(np.asarray(x2), "x2")
        validate.same_features(x1, x2)
        x2 = x2.astype(np.result_type(x1, x2), copy=False)
    x1 = x1.astype(np.result_type(x1, x2) if x2 is not None else x1.dtype, copy=False)
    if x1.dtype not in (np.float32, np.float64):
        x1 = x1.astype(np.float64)
        x2 = None if x2 is None else x2.astype(np.float64)
    if tile is not None:
        tile = validate.positive_int(tile, "tile")
    resources = resources or TileResources()
    if max_in_flight is not None:
        max_in_flight = validate.positive_int(max_in_flight, "max_in_flight")
    square = x2 is None
    n1, n2 = x1.shape[0], (x1 if square else x2).shape[0]
    shape = (n1 * k, n2 * k)
    nbytes = len(kinds) * shape[0] * shape[1] * x1.itemsize
    if out is None:
        _check_fits(nbytes)
    else:
        out = Path(out)
        _prepare_out(out, overwrite, nbytes)

    ensure_ray()
    workers, memory = _cluster_shape(resources)
    b = tile or auto_tile(
        n1, n2, square=square, workers=workers, worker_memory=memory, gpu=resources.num_gpus > 0
    )
    grid = tiles(n1, n2, b, square)
    fingerprint = _fingerprint(x1, x2, kernel, b, k)
    sink = _MemorySink(shape, kinds, x1.dtype) if out is None else _DiskSink(
        out, shape, kinds, x1.dtype, fingerprint
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


def _prepare_out(out: Path, overwrite: bool, nbytes: int) -> None:
    """Every output check, before any work: complete result, writability, free space."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a directory, got the file {out}; choose another path")
    if (out / COMPLETE).exists():
        if not overwrite:
            raise ValueError(
                f"out {out} already holds a complete Gram; pass overwrite=True (--overwrite) "
                "to replace it"
            )
        (out / COMPLETE).unlink()
        for name in (MANIFEST, LOG):
            (out / name).unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic("", temp_path(out / "write-probe")).unlink()
    except OSError as err:
        raise ValueError(
            f"out {out} is not writable ({err.strerror}); choose another path"
        ) from None
    existing = sum(f.stat().st_size for f in out.glob("*.npy"))
    free = shutil.disk_usage(out).free + existing
    if nbytes > free:
        raise ValueError(
            f"out {out} has {free / 2**30:.2f} GiB free but the Gram needs "
            f"{nbytes / 2**30:.2f} GiB; free space or choose another path"
        )


def _fingerprint(x1, x2, kernel, b, k) -> dict:
    h = hashlib.sha256()
    for x in (x1, x2):
        if x is not None:
            h.update(np.ascontiguousarray(x).tobytes())
    desc = {key: v for key, v in kernel.items() if key not in ("model", "params")}
    if kernel["kind"] == "empirical":
        import jax

        for leaf in jax.tree.leaves(kernel["params"]):
            h.update(np.ascontiguousarray(leaf).tobytes())
        desc["model"] = repr(kernel["model"])
    desc["activation"] = str(desc.get("activation"))
    fp = dict(kernel=desc, inputs_sha256=h.hexdigest(), tile=b, outputs=k,
              x1_shape=list(x1.shape), x2_shape=None if x2 is None else list(x2.shape),
              dtype=str(x1.dtype))  # fmt: skip
    return json.loads(json.dumps(fp))  # the form read back from manifest.json


class _MemorySink:
    def __init__(self, shape, kinds, dtype):
        self.arrays = {name: np.empty(shape, dtype) for name in kinds}
        self.done: set = set()

    def write(self, ij, step, blocks, *, mirror):
        r, c = ij[0] * step, ij[1] * step
        for name, block in blocks.items():
            a = self.arrays[name]
            a[r : r + block.shape[0], c : c + block.shape[1]] = block
            if mirror:
                a[c : c + block.shape[1], r : r + block.shape[0]] = block.T

    def finish(self):
        pass

    def result(self):
        return self.arrays


class _DiskSink(_MemorySink):
    """Memmaps plus an fsync'd tile log; flushed and logged every ``_FLUSH_S`` seconds."""

    _FLUSH_S = 2.0

    def __init__(self, out: Path, shape, kinds, dtype, fingerprint):
        from numpy.lib.format import open_memmap

        self.out = out
        manifest = out / MANIFEST
        resume = manifest.exists() and json.loads(manifest.read_text()) == fingerprint
        resume = resume and all((out / f"{n}.npy").exists() for n in kinds)
        self.done = set()
        if resume:
            self.arrays = {n: open_memmap(out / f"{n}.npy", mode="r+") for n in kinds}
            trim_torn_line(out / LOG)
            if (out / LOG).exists():
                for line in (out / LOG).read_text().splitlines():
                    parts = line.split()
                    if len(parts) == 2:  # a torn last line is ignored (recomputed)
                        self.done.add((int(parts[0]), int(parts[1])))
        else:
            for name in (LOG, MANIFEST):
                (out / name).unlink(missing_ok=True)
            self.arrays = {
                n: open_memmap(out / f"{n}.npy", mode="w+", dtype=dtype, shape=shape) for n in kinds
            }
            write_text_atomic(json.dumps(fingerprint, indent=1), manifest)
        for name in kinds:
            _reserve(out / f"{name}.npy")
        self.log = open(out / LOG, "a")  # noqa: SIM115 - closed in finish()
        self.unlogged: list = []
        self.last_flush = time.monotonic()

    def write(self, ij, step, blocks, *, mirror):
        super().write(ij, step, blocks, mirror=mirror)
        self.unlogged.append(ij)
        if time.monotonic() - self.last_flush > self._FLUSH_S:
            self._checkpoint()

    def _checkpoint(self):
        for a in self.arrays.values():
            a.flush()
            # Flushed pages are safe in the file: drop them from this process so the driver's
            # resident memory stays O(tiles between checkpoints), not O(matrix).
            a._mmap.madvise(mmap.MADV_DONTNEED)
        self.log.write("".join(f"{i} {j}\n" for i, j in self.unlogged))
        self.log.flush()
        os.fsync(self.log.fileno())
        self.unlogged = []
        self.last_flush = time.monotonic()

    def finish(self):
        self._checkpoint()
        self.log.close()
        write_text_atomic("complete\n", self.out / COMPLETE)

    def result(self):
        from numpy.lib.format import open_memmap

        names = list(self.arrays)
        self.arrays.clear()
        return {n: open_memmap(self.out / f"{n}.npy", mode="r") for n in names}


def _reserve(path: Path) -> None:
    """Allocate every block of ``path`` now: a memmap page that a full disk has no room for
    kills the writer with SIGBUS, so a disk filling up mid-run must fail here, before work."""
    if not hasattr(os, "posix_fallocate"):  # macOS: files stay sparse
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def is_complete(out: str | os.PathLike) -> bool:
    """True when ``out`` holds a finished disk-backed Gram (its ``COMPLETE`` marker)."""
    return (Path(out) / COMPLETE).exists()
