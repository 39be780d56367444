"""The on-disk form of a Gram matrix: layout, checkpoint and resume.

:func:`ntk_dist.gram` with ``out=DIR`` writes one ``.npy`` file per kernel
(``numpy.lib.format.open_memmap``, may exceed RAM) plus a checkpoint:

    DIR/manifest.json   what is being computed (sizes, tile, kernel, input hashes)
    DIR/tiles.log       append-only, fsync'd, one "i j sha256" line per tile on disk
    DIR/COMPLETE        written last (by atomic rename) when every tile is on disk

A tile is logged only after the memmaps holding it are flushed, so an
interrupted run (even SIGKILL) resumes by recomputing only the tiles missing
from the log, provided the manifest (:func:`fingerprint`) is unchanged. Without
``COMPLETE`` the ``.npy`` files are never to be trusted. The blocks of the
``.npy`` files are allocated up front, so a disk that fills up fails before work,
not with SIGBUS mid-run.

The sha256 of each line is that of the tile's blocks (:func:`tile_digest`), so ``ntk-dist
check`` verifies every entry of the matrix (:func:`tile_problems`; a mirrored block
must equal the transpose of its tile). Tiles with a non-finite entry (inputs so large
the kernel overflows) stop the run before they are written (:func:`check_finite`).
Logs written before digests existed ("i j" lines) verify by shape only.

On object storage (``out="s3://bucket/prefix"``, :mod:`ntk_dist.core.storage`) the
run works on a staged local copy and uploads the ``.npy`` files, the log and then
``COMPLETE`` when the Gram is complete; only the manifest is uploaded before. An
interrupted remote run therefore starts again from the beginning: a Gram that takes
long enough for that to matter belongs on a local or shared disk.

A sink receives the finished tiles of one run: :class:`MemorySink` in memory,
:class:`DiskSink` in ``DIR``.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ntk_dist.core.files import ensure_writable_dir, trim_torn_line, write_text_atomic
from ntk_dist.core.storage import publish, unpublish

MANIFEST, LOG, COMPLETE = "manifest.json", "tiles.log", "COMPLETE"


def prepare_out(out: Path, overwrite: bool, nbytes: int) -> None:
    """Every output check, before any work: complete result, writability, free space.

    Raises:
      ValueError: ``out`` is a file, holds a complete Gram and ``overwrite`` is False,
        is not writable, or has less than ``nbytes`` free (counting ``.npy`` files there).
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a directory, got the file {out}; choose another path")
    if (out / COMPLETE).exists():
        if not overwrite:
            raise ValueError(
                f"out {out} already holds a complete Gram; pass overwrite=True (--overwrite) "
                "to replace it"
            )
        for name in (COMPLETE, MANIFEST, LOG):  # the marker first, here and remotely
            (out / name).unlink(missing_ok=True)
            unpublish(out / name)
    ensure_writable_dir(out, name="out", fix="choose another path")
    existing = sum(f.stat().st_size for f in out.glob("*.npy"))
    free = shutil.disk_usage(out).free + existing
    if nbytes > free:
        raise ValueError(
            f"out {out} has {free / 2**30:.2f} GiB free but the Gram needs "
            f"{nbytes / 2**30:.2f} GiB; free space or choose another path"
        )


def fingerprint(x1, x2, kernel: dict, b: int, k: int) -> dict:
    """The manifest of a run: a resumed run must match it exactly.

    Args:
      x1, x2: the inputs (hashed); x2 may be None.
      kernel: ``{"kind": "analytic", **FC(...).kwargs(), "get": kinds}`` or ``{"kind":
        "empirical", "model": ..., "params": ..., "get": ("ntk",)}``.
      b: tile edge. k: outputs per sample.

    Returns:
      The JSON-ready dict written to ``manifest.json``.
    """
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


def check_gram_input(x: np.ndarray, name: str) -> np.ndarray:
    """``x`` if it is a real (N, d) float or integer array of finite values, else a
    ValueError naming ``name`` (complex values are never cast to real)."""
    if np.iscomplexobj(x) or not (np.issubdtype(x.dtype, np.floating) or _integer(x)):
        raise ValueError(f"{name}: expected real numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected an (N, d) array, got shape {x.shape}")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ValueError(f"{name}: {bad} entries are inf or NaN; the Gram needs finite inputs")
    return x


def _integer(x) -> bool:
    return np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_


def check_finite(ij, blocks: dict) -> None:
    """ValueError if a block of tile ``ij`` holds inf or NaN (written never)."""
    for name, block in blocks.items():
        if not np.isfinite(block).all():
            raise ValueError(
                f"the {name} Gram has inf or NaN entries in tile {tuple(ij)}: the inputs are "
                f"too large for {block.dtype} (overflow); rescale them (e.g. to unit variance)"
            )


def tile_digest(blocks: dict) -> str:
    """sha256 of a tile's blocks, kinds in name order, each in C order."""
    digest = hashlib.sha256()
    for name in sorted(blocks):
        digest.update(np.ascontiguousarray(blocks[name]).tobytes())
    return digest.hexdigest()


def tile_problems(arrays: dict, lines: list[str], *, step: int, square: bool) -> list[str]:
    """Problems of the logged tiles of a Gram on disk (``arrays``: kind -> array).

    Args:
      arrays: the ``.npy`` files, opened (memmaps).
      lines: the lines of ``tiles.log`` ("i j sha256"; "i j" lines are not verified).
      step: rows (and columns) per tile, ``tile * outputs``.
      square: whether the mirrored block of an off-diagonal tile is stored too.
    """
    problems = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        i, j = int(parts[0]), int(parts[1])
        r, c = i * step, j * step
        blocks = {n: a[r : r + step, c : c + step] for n, a in arrays.items()}
        if tile_digest(blocks) != parts[2]:
            problems.append(f"tile ({i}, {j}): its entries differ from the sha256 logged")
        elif square and i != j:
            for n, a in arrays.items():
                if not np.array_equal(a[c : c + step, r : r + step], blocks[n].T):
                    problems.append(f"tile ({i}, {j}): its mirror in {n} is not its transpose")
    return problems


class MemorySink:
    """Tiles assembled in in-memory arrays, one per kind; ``done`` is always empty."""

    def __init__(self, shape, kinds, dtype):
        self.arrays = {name: np.empty(shape, dtype) for name in kinds}
        self.done: set = set()

    def write(self, ij, step, blocks, *, mirror):
        check_finite(ij, blocks)
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


class DiskSink(MemorySink):
    """Memmaps plus an fsync'd tile log in ``out`` (module docstring); flushed and logged
    every ``_FLUSH_S`` seconds. ``done`` holds the tiles a resumed run finds logged."""

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
                    if len(parts) in (2, 3):  # a torn last line is ignored (recomputed)
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
        r, c = ij[0] * step, ij[1] * step  # the digest of what is stored (its dtype)
        stored = {n: self.arrays[n][r : r + step, c : c + step] for n in blocks}
        self.unlogged.append((*ij, tile_digest(stored)))
        if time.monotonic() - self.last_flush > self._FLUSH_S:
            self._checkpoint()

    def _checkpoint(self):
        for a in self.arrays.values():
            a.flush()
            # Flushed pages are safe in the file: drop them from this process so the driver's
            # resident memory stays O(tiles between checkpoints), not O(matrix).
            a._mmap.madvise(mmap.MADV_DONTNEED)
        self.log.write("".join(f"{i} {j} {digest}\n" for i, j, digest in self.unlogged))
        self.log.flush()
        os.fsync(self.log.fileno())
        self.unlogged = []
        self.last_flush = time.monotonic()

    def finish(self):
        self._checkpoint()
        self.log.close()
        # On object storage (a staged copy) the matrices and the log are uploaded whole
        # before the marker, so a remote COMPLETE always has every file behind it.
        for name in (*self.arrays, LOG):
            publish(self.out / (name if name == LOG else f"{name}.npy"))
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
