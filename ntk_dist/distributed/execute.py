"""Running many training jobs: grouping into batches, in-process or as Ray tasks.

The planner groups jobs by :attr:`ntk_dist.engine.jobs.TrainJob.batch_key` (jobs that can
share one compiled program) and cuts each group into batches whose estimated memory
fits a worker (:func:`estimate_bytes`). Each batch is one call of
:func:`ntk_dist.engine.train.train_batch`, either here (``backend="local"``) or as a Ray task
(``backend="ray"``). Records depend only on each job's fields (seeds included), never
on the batch it ran in or the worker that ran it.

Ray tasks and devices: :class:`ntk_dist.distributed.resources.Resources` (CPUs, GPUs,
retries and the worker environment of each task). Failed tasks are retried
(``Resources.max_retries``; a task that raised is retried too when
``retry_exceptions``; a worker that died always is).

Memory: batches are cut to fit both ``memory_bytes`` and the memory of the worker that
will train them (free RAM here for the local backend; for CPU tasks, the largest Ray
node's share per task, :func:`ntk_dist.distributed.runtime.task_memory`), and a job
that fits no worker on its own is refused before anything trains,
rather than killed midway (accelerator memory is not probed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ntk_dist.core import validate
from ntk_dist.distributed.resources import Resources
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.engine.records import RECORD_SCHEMA
from ntk_dist.models.networks import FCNetwork

BACKENDS = ("local", "ray")
DEFAULT_MEMORY_BYTES = 2 * 2**30
DEFAULT_MAX_BATCH = 256


def estimate_bytes(job: TrainJob) -> int:
    """Rough peak device memory of one job inside a batch, in bytes.

    Counts the parameter copies live in the scan (theta, theta_0, gradient, velocity;
    twice that with the linearised twin), the activations of a forward/backward pass
    over the training set, the dense Theta_hat(X, X) and its per-layer factors, and
    the recorded trajectories; doubled for XLA temporaries.
    """
    itemsize = 8 if job.dtype == "float64" else 4
    d, k = job.data.dim, job.model.out_dim
    m = job.data.n_train + job.data.n_test
    if isinstance(job.model, FCNetwork):
        sizes = job.model.layer_sizes(d)
        n_params = job.model.n_params(d)
        acts = m * sum(sizes) * (k + 2)
    else:
        n_params = job.model.n_params(d)
        acts = m * job.model.width * (k + 2)
    copies = 8 if job.linearised else 4
    mk = job.data.n_train * k
    records = len(job.record) * (4 + job.data.n_test * k + (job.probe_points * k) ** 2)
    return 2 * itemsize * (copies * n_params + acts + mk * mk + records)


def plan_batches(
    jobs: Sequence[TrainJob],
    *,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    max_batch: int | None = None,
    slots: int = 1,
) -> list[list[TrainJob]]:
    """Group jobs that share shapes into batches that fit ``memory_bytes``.

    Args:
      jobs: TrainJobs in any order.
      memory_bytes: device memory one batch may use (per worker), > 0.
      max_batch: most jobs per batch (>= 1); None: the largest size that still cuts
        the jobs into at least two batches per slot (:func:`split_size`), at most
        ``DEFAULT_MAX_BATCH``, with each shape group cut into equal batches.
      slots: tasks that run at once (Ray: the cluster's task slots; 1 in-process).

    Returns:
      Batches in order of their first job; within a batch, jobs keep their order.
      A job larger than ``memory_bytes`` on its own still gets a batch of one.
    """
    jobs = list(jobs)
    plan = _plan(jobs, memory_bytes, max_batch, slots=slots)
    return [[jobs[i] for i in batch] for batch in plan]


def split_size(group_sizes: Sequence[int], slots: int) -> int:
    """The largest batch size b <= ``DEFAULT_MAX_BATCH`` that cuts shape groups of
    ``group_sizes`` jobs into at least 2 * ``slots`` batches (1 if none does).

    Two batches per slot keep every worker busy while the slowest batch finishes, and
    a killed task loses at most half a slot's share of the work; one slot (in-process)
    needs no split.
    """
    if slots <= 1 or not group_sizes:
        return DEFAULT_MAX_BATCH
    count = lambda b: sum(-(-n // b) for n in group_sizes)
    size = min(DEFAULT_MAX_BATCH, max(group_sizes))
    while size > 1 and count(size) < 2 * slots:
        size -= 1
    return size


def _plan(jobs, memory_bytes, max_batch, free=float("inf"), slots=1) -> list[list[int]]:
    """Batches of job indices; ``free``: memory of the worker that will train them (bytes)."""
    memory_bytes = validate.positive_int(memory_bytes, "memory_bytes")
    if max_batch is not None:
        max_batch = validate.positive_int(max_batch, "max_batch")
    for i, job in enumerate(jobs):
        if not isinstance(job, TrainJob):
            raise ValueError(f"jobs[{i}] must be a TrainJob, got {type(job).__name__}")
    groups: dict[tuple, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.batch_key, []).append(i)
    even = max_batch is None
    if even:
        max_batch = split_size([len(idx) for idx in groups.values()], slots)
    batches = []
    for idx in groups.values():
        job, need = jobs[idx[0]], estimate_bytes(jobs[idx[0]])
        if need > free:
            raise ValueError(
                f"a training job of width {job.width} on {job.data.n_train} points needs about "
                f"{need / 2**30:.2f} GiB, more than the {free / 2**30:.2f} GiB of memory of any "
                "worker; reduce the width or the training set, or use nodes with more memory"
            )
        size = max(1, min(max_batch, min(memory_bytes, free) // need))
        if even:  # 6 jobs in batches of at most 5 are 3 + 3, not 5 + 1
            size = -(-len(idx) // -(-len(idx) // size))
        batches += [idx[s : s + size] for s in range(0, len(idx), size)]
    return batches


def _free_memory(backend: str, resources: Resources | None) -> float:
    """Memory a batch may take on its worker: free RAM here (local backend on CPU), the
    largest Ray node's (CPU tasks), unknown (infinity) for accelerator memory."""
    import jax

    from ntk_dist.distributed.runtime import available_memory, ensure_ray, task_memory

    if backend == "local":
        return available_memory() if jax.default_backend() == "cpu" else float("inf")
    resources = Resources() if resources is None else resources
    if resources.num_gpus > 0:
        return float("inf")
    ensure_ray()
    return task_memory(resources)


def _slots(backend: str, resources: Resources | None) -> int:
    """Tasks of ``resources`` the connected Ray cluster runs at once (1 in-process)."""
    if backend == "local":
        return 1
    import ray

    from ntk_dist.distributed.runtime import ensure_ray

    ensure_ray()
    return (Resources() if resources is None else resources).slots(ray.cluster_resources())


def run_jobs(
    jobs: Sequence[TrainJob],
    *,
    backend: str = "local",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    max_batch: int | None = None,
    chunk_size: int | None = None,
    resources: Resources | None = None,
    retry_exceptions: bool = True,
) -> pa.Table:
    """Train every job and return one record per job.

    Args:
      jobs: TrainJobs (validated when built).
      backend: ``"local"`` (batches one after another in this process) or ``"ray"``
        (one Ray task per batch, on the Ray instance this process is connected to;
        a local loopback one is started by :func:`ntk_dist.distributed.runtime.ensure_ray` if none).
      memory_bytes, max_batch: batch sizing, see :func:`plan_batches` (by default the
        Ray backend cuts at least two batches per task slot of the cluster).
      chunk_size: jobs per vmapped chunk inside a batch
        (:func:`ntk_dist.engine.train.train_batch`; None: automatic).
      resources, retry_exceptions: Ray task options, see :func:`submit_jobs`.

    Returns:
      pa.Table in RECORD_SCHEMA, rows in the order of ``jobs``.

    Raises:
      ValueError: before anything trains, if one job needs more memory than a worker has.

    Both backends use the persistent compilation cache
    (:func:`ntk_dist.distributed.runtime.enable_compilation_cache`).
    """
    validate.choice(backend, "backend", BACKENDS)
    if chunk_size is not None:
        chunk_size = validate.positive_int(chunk_size, "chunk_size")
    jobs = list(jobs)
    if not jobs:
        return RECORD_SCHEMA.empty_table()
    free = _free_memory(backend, resources)
    plan = _plan(jobs, memory_bytes, max_batch, free, _slots(backend, resources))
    if backend == "local":
        from ntk_dist.distributed.runtime import enable_compilation_cache
        from ntk_dist.engine.train import train_batch

        enable_compilation_cache()
        tables = [train_batch([jobs[i] for i in b], chunk_size=chunk_size) for b in plan]
    else:
        import ray

        refs = _submit(jobs, plan, resources, retry_exceptions, chunk_size)
        tables = ray.get(refs)
    order = np.argsort(np.concatenate([np.asarray(b, np.int64) for b in plan]), kind="stable")
    return pa.concat_tables(tables).take(pa.array(order))


def submit_jobs(
    jobs: Sequence[TrainJob],
    *,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    max_batch: int | None = None,
    chunk_size: int | None = None,
    resources: Resources | None = None,
    retry_exceptions: bool = True,
) -> list:
    """Submit the batches of :func:`plan_batches` as Ray tasks without waiting.

    Args:
      jobs: TrainJobs.
      memory_bytes, max_batch: batch sizing, see :func:`plan_batches` (by default at
        least two batches per task slot of the connected cluster).
      chunk_size: jobs per vmapped chunk inside a batch (None: automatic).
      resources: CPUs, GPUs and retries per task (default ``Resources()``: 1 CPU, no
        GPU, 5 retries).
      retry_exceptions: also retry tasks that raised (not only dead workers).

    Returns:
      list of ray.ObjectRef, one per batch in ``plan_batches(jobs, ...)`` order; each
      resolves to a pa.Table in RECORD_SCHEMA with that batch's rows (match rows to
      jobs by ``tag``).

    Raises:
      ValueError: before anything is submitted, if one job needs more memory than any
        worker has.
    """
    if chunk_size is not None:
        chunk_size = validate.positive_int(chunk_size, "chunk_size")
    jobs = list(jobs)
    free = _free_memory("ray", resources)
    plan = _plan(jobs, memory_bytes, max_batch, free, _slots("ray", resources))
    return _submit(jobs, plan, resources, retry_exceptions, chunk_size)


def _submit(jobs, plan, resources, retry_exceptions, chunk_size):
    import ray

    from ntk_dist.distributed.runtime import ensure_ray

    resources = Resources() if resources is None else resources
    if not isinstance(resources, Resources):
        raise ValueError(f"resources must be a Resources, got {type(resources).__name__}")
    ensure_ray()
    # No per-task runtime_env: it would make Ray start fresh workers for these tasks;
    # each task sets its worker up instead (runtime.configure_worker).
    task = ray.remote(_batch_task).options(
        num_cpus=resources.num_cpus,
        num_gpus=resources.num_gpus,
        max_retries=resources.max_retries,
        retry_exceptions=bool(retry_exceptions),
    )
    return [task.remote([jobs[i] for i in batch], resources, chunk_size) for batch in plan]


def _batch_task(jobs: list[TrainJob], resources: Resources, chunk_size: int | None) -> pa.Table:
    from ntk_dist.distributed.runtime import configure_worker

    configure_worker(resources)
    from ntk_dist.engine.train import train_batch

    return train_batch(jobs, chunk_size=chunk_size)
