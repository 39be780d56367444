"""Starting and joining Ray, safely by default.

The local default is an embedded Ray instance bound to 127.0.0.1 with the
dashboard off and Ray's token authentication on. Nothing listens on another address.
Token authentication (Ray >= 2.52; the default for local instances from 2.59) is
turned on explicitly, ``RAY_AUTH_MODE=token`` for this process and the ones Ray
starts, even when the environment says ``RAY_AUTH_MODE=disabled``; Ray generates the
token in ``~/.ray/auth_token`` on first use. Ray binds its gRPC servers (GCS, raylet,
workers, agents) to loopback only when it treats the node as local-only, which
it decides from ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; Ray reads that variable
once, when it is imported, so :func:`ensure_ray` sets both the variable (for the
processes it starts) and Ray's already-read constant, and passes
``_node_ip_address="127.0.0.1"``. Measured with ``ss -ltnp``: without this, Ray
2.60's servers listen on every interface (``*:port``) even with that node address.
Every server of a local instance gets a port the kernel picks (the metrics exporter
and the dashboard through ``ray.init``; the dashboard agent, whose default 52365 is
fixed, by :func:`_free_agent_port`), so two local instances on one host never collide.
The token file is owner-only (:func:`secure_token_file`). Joining a cluster
(``address=...``) changes none of this: nodes there must reach each other.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

LOOPBACK = "127.0.0.1"


def ensure_ray(
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    dashboard: bool = False,
    verbose: bool = False,
) -> bool:
    """Connect to Ray, starting a local loopback instance when none is running.

    Args:
      address: ``None`` for a new local instance on 127.0.0.1; ``"auto"`` or
        ``"host:port"`` to join an existing cluster.
      num_cpus, num_gpus: resources of a new local instance (default: all).
      dashboard: start the dashboard (bound to 127.0.0.1) on a local instance.
      verbose: forward worker logs to the driver and keep Ray's INFO logging.

    Returns:
      True if this call started or connected Ray, False if it was already connected.
    """
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        _loopback_only()
        secure_token_file()
        _token_auth()
    level = logging.INFO if verbose else logging.WARNING
    common = dict(log_to_driver=verbose, logging_level=level, configure_logging=True)
    with warnings.catch_warnings():
        # JAX warns at every fork once it is loaded; Ray's start forks only to exec its
        # own server binaries at once (subprocess), which run no JAX code: no deadlock.
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        _init(ray, address, num_cpus, num_gpus, dashboard, common)
    return True


def _init(ray, address, num_cpus, num_gpus, dashboard, common) -> None:
    if address is not None:
        ray.init(address=address, **common)
    else:
        with _free_agent_port():
            ray.init(
                # "local": always a new instance, never another process's cluster here.
                address="local",
                num_cpus=num_cpus,
                num_gpus=num_gpus,
                include_dashboard=dashboard,
                dashboard_host=LOOPBACK,
                dashboard_port=free_port() if dashboard else None,
                _metrics_export_port=free_port(),
                _node_ip_address=LOOPBACK,
                **common,
            )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick), for a local Ray server."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def _free_agent_port():
    """Give the dashboard agent of a new local instance a free port: Ray's default is the
    fixed 52365, so a second local instance on the host failed to bind it (logged only),
    and ``ray.init`` has no option for it."""
    from ray._private import parameter, ray_constants

    fixed = ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT
    base = parameter.RayParams

    class FreePorts(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.dashboard_agent_listen_port == fixed:
                self.dashboard_agent_listen_port = free_port()

    parameter.RayParams = FreePorts
    try:
        yield
    finally:
        parameter.RayParams = base


def secure_token_file() -> Path:
    """Ray's token file ``~/.ray/auth_token``, created owner-only (0600) when missing and
    made owner-only when it is readable by others (Ray writes it 0644)."""
    path = Path.home() / ".ray" / "auth_token"
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return path
    try:
        from ray._private.authentication.authentication_token_generator import (
            generate_new_authentication_token,
        )
    except ImportError:  # Ray < 2.52 has no token authentication
        return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(generate_new_authentication_token())
    return path


def _loopback_only() -> None:
    """Make a local Ray instance bind every server to 127.0.0.1 (module docstring)."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _token_auth() -> None:
    """Turn on Ray's token authentication for a new local instance (module docstring)."""
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # Ray < 2.52 has no token authentication
        return
    _enable_token_auth()  # sets RAY_AUTH_MODE=token and reloads Ray's cached config


def available_memory() -> int:
    """Bytes of memory available on this machine now, without swapping.

    Linux's ``MemAvailable`` (free pages plus the page cache the kernel can reclaim; free
    pages alone are often a small part of it), else the free pages. The one probe that
    refuses or splits work too large for memory before it starts (``ntk_dist.distributed.gram``,
    ``ntk_dist.distributed.execute``), rather than letting it be killed midway.
    """
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def task_memory(resources) -> float:
    """Bytes of memory one Ray task of ``resources`` may use on the connected cluster.

    The largest live node's ``memory`` resource (its free memory, less the object store,
    when the node started) shared by the tasks of this shape that node runs at once
    (:meth:`ntk_dist.distributed.resources.Resources.slots`); infinity when Ray reports
    none. The one memory estimate of training batches and Gram tiles.
    """
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    best = max(nodes, key=lambda r: r.get("memory", 0.0), default={})
    memory = best.get("memory", 0.0)
    return memory / resources.slots(best) if memory else float("inf")


#: Environment variable naming the persistent compilation cache directory ("" or "off":
#: no cache).
CACHE_ENV = "NTK_DIST_CACHE_DIR"
#: Size bound of the cache. A bound turns on JAX's file lock around every read and
#: write of the cache, which keeps concurrent workers from reading a half-written entry.
CACHE_MAX_BYTES = 4 * 2**30


def compilation_cache_dir():
    """Where compiled XLA programs persist between processes (a Path, or None: off).

    ``$NTK_DIST_CACHE_DIR`` when set ("" or "off" turns the cache off), else
    ``$XDG_CACHE_HOME/ntk_dist/jax`` (``~/.cache/ntk_dist/jax``).
    """
    from pathlib import Path

    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip() in ("", "off") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ntk_dist" / "jax"


def enable_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache in :func:`compilation_cache_dir`.

    A second process (a Ray worker, a rerun) then loads a program another one compiled
    instead of compiling it again. Workers on one machine share the directory safely:
    with a size bound (:data:`CACHE_MAX_BYTES`) JAX takes a file lock around each entry's
    read and write. A cache directory the user gave JAX (``JAX_COMPILATION_CACHE_DIR``)
    is kept; an unwritable directory leaves the cache off.
    """
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    path = compilation_cache_dir()
    if path is None:
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)


def configure_worker(resources) -> None:
    """Prepare this process to train the tasks of ``resources``; called by each task.

    Sets the environment of
    :meth:`ntk_dist.distributed.resources.Resources.env_vars` (thread caps, the CPU
    platform of CPU tasks) in this process rather than through a per-task
    ``runtime_env``, which would make Ray start a fresh worker process per task shape.
    Ray reuses its workers, so what a worker compiled stays in its in-memory cache for
    the next round; the persistent cache (:func:`enable_compilation_cache`) shares it
    between workers. The settings apply when XLA starts in the process, so a worker
    keeps those of the first task shape it ran.
    """
    import jax
    from jax._src import xla_bridge

    if not xla_bridge.backends_are_initialized():
        env = resources.env_vars()
        os.environ.update(env)
        if "JAX_PLATFORMS" in env:
            jax.config.update("jax_platforms", env["JAX_PLATFORMS"])
    enable_compilation_cache()
