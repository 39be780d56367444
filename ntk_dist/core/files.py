"""Files on a local disk, written so that a crash at any moment leaves valid state.

Every writer of ntk_dist goes through this module: one atomic-write helper (one
temporary-name scheme, ``.tmp-<uuid>-<name>`` beside the target, so ``check`` and
resume know the only pattern a killed writer can leave), the exclusive directory
lock, the trim of a torn last line of an append-only log, and the translation of a
full disk into an error that says what to do. A file written inside a staged copy of a
remote output (:mod:`ntk_dist.core.storage`) is also uploaded, whole, once renamed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

from ntk_dist.core.integrity import MANIFEST, manifest_line
from ntk_dist.core.storage import publish

#: The one glob a killed atomic writer can leave behind (see :func:`write_atomic`).
TEMP_PATTERN = ".tmp-*"

#: errno values meaning the file system (or the user's quota on it) is full.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def temp_path(path) -> Path:
    """A fresh hidden temporary name beside ``path`` (matches :data:`TEMP_PATTERN`)."""
    path = Path(path)
    return path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")


def remove_temp_files(root) -> list[Path]:
    """Delete what killed atomic writers left under ``root`` (:data:`TEMP_PATTERN`).

    Call it only as the directory's one writer (under :func:`exclusive_lock`): a temporary
    file is then never a write in progress. Returns the removed paths.
    """
    removed = [p for p in sorted(Path(root).rglob(TEMP_PATTERN)) if p.is_file()]
    for path in removed:
        path.unlink()
    return removed


def fsync_dir(path) -> None:
    """fsync the directory ``path`` (makes a rename or a new file inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, write, *, binary: bool = True, checksums=None) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, fsync, then rename it onto
    ``path`` (and fsync the directory): a reader sees the old file or the whole new one,
    never a partial one (rename is atomic on POSIX file systems).

    With ``checksums=ROOT`` (a directory above ``path``), the file's sha256 is recorded in
    ROOT's manifest before the rename (:mod:`ntk_dist.core.integrity`)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if checksums is not None:
            append_line(Path(checksums) / MANIFEST, manifest_line(checksums, tmp, path))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)
    publish(path)  # uploaded whole when ``path`` is in a staged copy of a remote output
    return path


def write_text_atomic(text: str, path) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda fh: fh.write(text), binary=False)


def write_bytes_atomic(data: bytes, path) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`write_atomic`)."""
    return write_atomic(path, lambda fh: fh.write(data))


def write_table_atomic(table, path, *, checksums=None) -> Path:
    """Write the pyarrow ``table`` as Parquet to ``path`` atomically (:func:`write_atomic`),
    with a CRC32 in every page header (checked by readers that ask for it)."""
    import pyarrow.parquet as pq

    return write_atomic(
        path, lambda fh: pq.write_table(table, fh, write_page_checksum=True), checksums=checksums
    )


def save_figure_atomic(
    fig, path, *, fmt: str | None = None, dpi: int = 150, checksums=None
) -> Path:
    """``fig.savefig`` to ``path`` atomically: never a half-written figure."""
    return write_atomic(
        path,
        lambda fh: fig.savefig(fh, format=fmt or Path(path).suffix[1:], dpi=dpi),
        checksums=checksums,
    )


def ensure_writable_dir(path, *, name: str, fix: str) -> Path:
    """Create the directory ``path`` if needed and prove it writable with a probe file.

    Raises:
      ValueError: ``"{name} {path} is not writable ({reason}); {fix}"``.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic("", temp_path(path / "write-probe")).unlink()
    except OSError as err:
        raise ValueError(f"{name} {path} is not writable ({err.strerror}); {fix}") from None
    return path


@contextmanager
def disk_full_as_usage_error(out):
    """Report "no space left on device" inside the block as a ValueError saying what to do.

    Writers of this module (and appends of whole lines) leave what is on disk valid when
    a write fails, so freeing space and rerunning the same command resumes the work.
    Other OSErrors pass through unchanged.

    Args:
      out: the output location named in the message when the error names no file.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in _NO_SPACE:
            raise
        raise ValueError(
            f"no space left on the device holding {err.filename or out}: free space there "
            "and rerun the same command to resume (finished work is kept)"
        ) from None


@contextmanager
def exclusive_lock(out, what: str = "ntk-dist run"):
    """Hold an exclusive ``flock`` on ``OUT/.lock``, or raise ValueError naming ``out``
    when another process holds it. The kernel drops the lock when its holder dies, so a
    crash never leaves a stale lock."""
    fh = open(Path(out) / ".lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ValueError(
            f"{out} is in use by another {what}; wait for it to finish or choose another --out"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def append_line(path, line: str) -> None:
    """Append the whole line ``line`` to the line log ``path`` and fsync it, after
    trimming a torn last line (:func:`trim_torn_line`); call it as the log's one writer.
    A log inside a staged copy of an object-store output is uploaded whole after each
    append (:func:`ntk_dist.core.storage.publish`)."""
    trim_torn_line(path)
    with open(path, "a") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())
    publish(path)


def trim_torn_line(path) -> None:
    """Cut a partial last line (no newline) off the append-only line log ``path``.

    A write cut short by a full disk or a crash can leave one; the next append would glue
    it to a new line and corrupt both. Call it as the log's only writer, before appending.
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as fh:
        end = pos = fh.seek(0, os.SEEK_END)
        keep = 0
        while pos > 0:
            step = min(pos, 1 << 16)
            fh.seek(pos - step)
            chunk = fh.read(step)
            if pos == end and chunk.endswith(b"\n"):
                return
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = pos - step + newline + 1
                break
            pos -= step
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
