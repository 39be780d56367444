"""Output locations on object storage: ``s3://``, ``gs://`` or any pyarrow filesystem URI.

An output location (``--out``) is a local directory or a URI that
``pyarrow.fs.FileSystem.from_uri`` opens (``s3://bucket/prefix``, ``gs://bucket/prefix``,
``hdfs://...``; ``file:///abs/path`` is the local directory itself). A command that
works on a remote location works on a **staged copy**: :func:`staged` downloads every
object under the prefix into a fresh temporary directory (so the remote copy alone is
enough to resume: an empty local disk, as on a new head pod, is the normal case), the
command reads and writes that directory as it would a local output, and every file
the atomic writers of :mod:`ntk_dist.core.files` publish there is uploaded at once,
whole, under its final name (:func:`publish`). The staged copy is deleted when the
command ends.

Atomicity: each file is uploaded with one output stream, closed once. On S3 an object
becomes visible only when its PUT (or its multipart upload) completes, on GCS when its
upload is finalised, so no reader ever sees a half-written object under its final name,
and a replaced object (``boundaries.parquet``) is the old or the new one. Objects are
never written in place, appended to or renamed. (A filesystem that exposes partial
writes, such as HDFS, gives no such guarantee.)

Credentials and endpoint come from the standard environment and config files, as
pyarrow's S3 and GCS filesystems read them (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``,
``~/.aws/credentials``, ``GOOGLE_APPLICATION_CREDENTIALS``). ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (an S3-compatible server: MinIO, Ceph, moto) is passed to pyarrow
as ``endpoint_override`` and ``scheme``, since pyarrow 26 does not read it itself; an
``endpoint_override`` in the URI's query wins.

One driver per location: object stores have no ``flock``, and pyarrow offers no
conditional put, so nothing stops two drivers writing to one prefix at once; run one
driver per ``--out`` (a Ray job, a KubeRay RayJob). Two would not corrupt an object,
each being written whole, but their studies would diverge.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


def is_uri(location) -> bool:
    """True for a URI with a scheme (``s3://b/p``, ``file:///p``), false for a local path."""
    return isinstance(location, str) and "://" in location


def join(location, *parts: str) -> str | Path:
    """``location / parts``, for a local path or a URI alike (for messages)."""
    if is_uri(location):
        return "/".join([location.rstrip("/"), *parts])
    return Path(location).joinpath(*parts)


def _with_endpoint(uri: str) -> str:
    """``uri`` with the S3 endpoint of ``AWS_ENDPOINT_URL(_S3)`` added (module docstring)."""
    split = urlsplit(uri)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    query = dict(parse_qsl(split.query))
    if split.scheme != "s3" or not endpoint or "endpoint_override" in query:
        return uri
    url = urlsplit(endpoint)
    query.update(endpoint_override=url.netloc or url.path, scheme=url.scheme or "https")
    return urlunsplit(split._replace(query=urlencode(query)))


class Remote:
    """An output location on a pyarrow filesystem: ``fs`` and the ``root`` path in it."""

    def __init__(self, uri: str):
        from pyarrow import fs

        self.uri = uri.split("?", 1)[0].rstrip("/")
        try:
            self.fs, root = fs.FileSystem.from_uri(_with_endpoint(uri))
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(
                f"output {self.uri}: cannot open it ({err}); give a local directory or a "
                "URI such as s3://bucket/prefix, with credentials in the environment"
            ) from None
        self.root = root.rstrip("/")

    @property
    def is_local(self) -> bool:
        from pyarrow import fs

        return isinstance(self.fs, fs.LocalFileSystem)

    def files(self) -> list[str]:
        """Paths, relative to the root, of every object under it."""
        from pyarrow import fs

        try:
            infos = self.fs.get_file_info(
                fs.FileSelector(self.root, recursive=True, allow_not_found=True)
            )
        except OSError as err:
            raise ValueError(f"output {self.uri}: cannot list it ({err})") from None
        prefix = self.root + "/"
        return sorted(
            i.path[len(prefix) :]
            for i in infos
            if i.type == fs.FileType.File and i.path.startswith(prefix)
        )

    def put(self, rel: str, data: bytes) -> None:
        """Write one object, whole (module docstring: one stream, closed once)."""
        with self.fs.open_output_stream(f"{self.root}/{rel}") as out:
            out.write(data)

    def get(self, rel: str) -> bytes:
        with self.fs.open_input_stream(f"{self.root}/{rel}") as src:
            return src.read()

    def delete(self, rel: str) -> None:
        self.fs.delete_file(f"{self.root}/{rel}")

    def check_writable(self) -> None:
        """Put and delete a probe object; ValueError naming the location if that fails."""
        probe = f".tmp-{uuid.uuid4().hex}-write-probe"
        try:
            self.put(probe, b"")
            self.delete(probe)
        except OSError as err:
            raise ValueError(
                f"output {self.uri} is not writable ({err}); check the bucket, the "
                "credentials (AWS_ACCESS_KEY_ID, ...) and the endpoint (AWS_ENDPOINT_URL)"
            ) from None

    def download(self, local: Path) -> int:
        """Copy every object under the root into the directory ``local``; returns how many.

        Hidden temporary names (``.tmp-*``) are skipped: nothing of ntk_dist writes them
        to an object store, and a local writer's leftovers are no results.
        """
        n = 0
        for rel in self.files():
            if Path(rel).name.startswith(".tmp-"):
                continue
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.get(rel))
            n += 1
        return n


#: Staged copies being mirrored: local directory -> the remote location it publishes to.
_MIRRORS: dict[Path, Remote] = {}


def publish(path) -> None:
    """Upload the file ``path`` to the remote location its staged copy mirrors, whole,
    under its final name; a no-op for files outside every staged copy.

    :func:`ntk_dist.core.files.write_atomic` calls it after each rename, so every
    atomic write of a results directory is also one atomic object write; a writer
    of a file that is not written atomically (the Optuna journal) calls it itself
    when the file is in a consistent state.
    """
    if not _MIRRORS:
        return
    path = Path(path).absolute()
    for local, remote in _MIRRORS.items():
        if path.is_relative_to(local) and not path.name.startswith(".tmp-"):
            remote.put(path.relative_to(local).as_posix(), path.read_bytes())
            return


def unpublish(path) -> None:
    """Delete the object that :func:`publish` uploaded for ``path``, if any; a no-op for
    files outside every staged copy. A writer that removes a file from a staged copy (a
    Gram replaced with ``--overwrite`` drops its ``COMPLETE`` marker first) calls it, so
    the remote copy never keeps a marker for files being rewritten."""
    if not _MIRRORS:
        return
    path = Path(path).absolute()
    for local, remote in _MIRRORS.items():
        if path.is_relative_to(local):
            rel = path.relative_to(local).as_posix()
            if rel in remote.files():
                remote.delete(rel)
            return


@contextmanager
def staged(location, *, mirror: bool = True):
    """A local directory standing for the output ``location`` (module docstring).

    A local path (or a ``file://`` URI) is yielded as itself (a Path). A remote URI is
    downloaded into a fresh temporary directory, which is yielded and deleted on exit
    (a ValueError raised inside names the URI instead of that directory);
    with ``mirror`` (writers) the location is probed for writing first and every
    :func:`publish` inside the block uploads to it; without (``check``), nothing is
    ever written there.

    Raises:
      ValueError: the URI cannot be opened, listed or written.
    """
    if not is_uri(location):
        yield Path(location)
        return
    remote = Remote(location)
    if remote.is_local:
        yield Path(remote.root)
        return
    if mirror:
        remote.check_writable()
    tmp = Path(tempfile.mkdtemp(prefix="ntk-dist-staged-")).absolute()
    local = tmp / (Path(remote.root).name or "out")  # the name a report's title shows
    try:
        local.mkdir()
        remote.download(local)
        if mirror:
            _MIRRORS[local] = remote
        try:
            yield local
        except ValueError as err:  # messages name the location, not the staged copy
            raise ValueError(str(err).replace(str(local), remote.uri)) from None
    finally:
        _MIRRORS.pop(local, None)
        shutil.rmtree(tmp, ignore_errors=True)
