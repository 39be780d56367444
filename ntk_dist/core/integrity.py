"""Checksums of stored files: one sha256 manifest per output directory.

``ROOT/checksums.jsonl`` holds one JSON line per file written through the atomic writers
of :mod:`ntk_dist.core.files` with ``checksums=ROOT``::

    {"file": "runs/part-3f….parquet", "sha256": "9a…", "bytes": 18342}

The line is appended (and fsync'd) *before* the file is renamed into place, so every
file that exists has its line; a kill between the two leaves a line for a file that
never appeared, which is ignored. A file rewritten under the same name (the boundary
table, figures) gets one line per write and verifies against any of them.

A directory written before checksums existed has no manifest: its files are *legacy*,
verified by content only (every Parquet page decoded, schemas, the study), and the
summary of ``ntk-dist check`` says so. Cost: one extra read of each file as it is
written, and one full read per verification (sha256 runs at about 1 GB/s).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: The manifest's file name inside its root directory.
MANIFEST = "checksums.jsonl"
_CHUNK = 1 << 20


def sha256_file(path) -> str:
    """Hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_line(root, written, final) -> str:
    """The manifest line recording the file ``written`` (a temporary name) as ``final``,
    a path under ``root`` (:func:`ntk_dist.core.files.write_atomic` appends it)."""
    line = {
        "file": Path(final).relative_to(root).as_posix(),
        "sha256": sha256_file(written),
        "bytes": os.path.getsize(written),
    }
    return json.dumps(line, sort_keys=True) + "\n"


def read_manifest(root) -> tuple[dict[str, set[str]] | None, list[str]]:
    """The manifest of ``root`` as {relative path: recorded sha256 values}, validated line
    by line, and one problem per bad line (naming the file and the line).

    Returns (None, []) when ``root`` has no manifest (a legacy directory). A torn last
    line (a kill mid-append) is not a problem: its file was never renamed into place.
    """
    path = Path(root) / MANIFEST
    if not path.exists():
        return None, []
    entries: dict[str, set[str]] = {}
    problems = []
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw:
            continue
        try:
            line = json.loads(raw.decode("utf-8"))
            name, digest = line["file"], line["sha256"]
            if not (isinstance(name, str) and isinstance(digest, str) and len(digest) == 64):
                raise ValueError("bad field types")
        except (ValueError, KeyError, TypeError) as err:
            if number == len(lines):  # no newline after it: torn by a kill
                continue
            problems.append(
                f"{path}: line {number} is not a checksum record ({type(err).__name__}); "
                "delete that line (the files it named are then verified by content only)"
            )
            continue
        entries.setdefault(name, set()).add(digest)
    return entries, problems


def checksum_problem(root, path, entries: dict[str, set[str]] | None) -> str | None:
    """Why the file ``path`` under ``root`` fails its recorded checksum, or None.

    ``entries`` is :func:`read_manifest`'s mapping; None (a legacy directory) or a file
    with no line passes here and must be verified by content.
    """
    if entries is None:
        return None
    recorded = entries.get(Path(path).relative_to(root).as_posix())
    if not recorded:
        return None
    actual = sha256_file(path)
    if actual in recorded:
        return None
    return (
        f"{path}: corrupt (sha256 {actual[:12]} differs from the one recorded in "
        f"{Path(root) / MANIFEST} when it was written)"
    )
