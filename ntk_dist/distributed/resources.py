"""What one Ray task asks for: the one resources description of ntk_dist.

Training batches (:mod:`ntk_dist.distributed.execute`) and Gram tiles
(:mod:`ntk_dist.distributed.gram`) are both Ray tasks described by :class:`Resources`;
the spec's ``resources:`` section builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ntk_dist.core import validate


@dataclass(frozen=True)
class Resources:
    """What one Ray task asks Ray for.

    Attributes:
      num_cpus: CPUs per task (>= 1; for CPU tasks also the thread cap, see
        :meth:`env_vars`). Default 1: prefer one CPU per task and more tasks.
      num_gpus: GPUs per task (0 for CPU tasks, 1 for a GPU node's device). Default 0.
      max_retries: re-executions of a task that failed or was lost with its worker or
        node (>= 0). Default 5.
    """

    num_cpus: int = 1
    num_gpus: float = 0.0
    max_retries: int = 5

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "num_cpus", validate.positive_int(self.num_cpus, "resources.num_cpus"))
        set_(self, "num_gpus", validate.nonnegative_float(self.num_gpus, "resources.num_gpus"))
        set_(
            self,
            "max_retries",
            validate.nonnegative_int(self.max_retries, "resources.max_retries"),
        )

    def env_vars(self) -> dict[str, str]:
        """Environment of the worker process running the task.

        - ``num_gpus > 0``: Ray sets CUDA_VISIBLE_DEVICES, so JAX in the worker sees
          exactly its devices; preallocation is off so tasks can share a device.
        - ``num_gpus == 0``: ``JAX_PLATFORMS=cpu`` (a CPU task on a GPU node must not
          grab GPU memory) and a thread cap, since Ray does not pin processes to cores:
          ``OMP_NUM_THREADS=N`` (BLAS/LAPACK called by XLA's CPU eigendecompositions)
          and, for N = 1, ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
          intra_op_parallelism_threads=1`` (XLA:CPU's Eigen matmuls then run on the
          calling thread). Without these, every 1-CPU task would start a thread per
          machine core and oversubscribe the node.
        """
        if self.num_gpus > 0:
            return {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        env = {"JAX_PLATFORMS": "cpu", "OMP_NUM_THREADS": str(self.num_cpus)}
        if self.num_cpus == 1:
            env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        return env

    def slots(self, cluster: dict) -> int:
        """Tasks of this shape that the cluster runs at once (>= 1), from
        ``ray.cluster_resources()``: its CPUs (or GPUs, for GPU tasks) over the task's."""
        slots = cluster.get("CPU", 1.0) // self.num_cpus
        if self.num_gpus:
            slots = min(slots, cluster.get("GPU", 0.0) // self.num_gpus)
        return max(1, int(slots))
