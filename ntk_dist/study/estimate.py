"""Wall-time estimates of a plan in seconds, from a short timed probe of each shape group.

A batch of jobs that share a :attr:`ntk_dist.engine.jobs.TrainJob.batch_key` costs
``fixed + steps * per_step``: ``fixed`` is compiling and starting its program (paid per
batch, since the step count is part of the key), ``per_step`` one step of all its jobs.
:func:`probe` measures both for a group by training the group's batch, in this
process, for ``PROBE_STEPS`` steps twice: the first call compiles and runs, the second
reuses the compiled program, so their difference is ``fixed`` and the second alone
gives ``per_step``. A plan's estimate (:func:`plan_seconds`) spreads each round's
batches over the task slots it assumes (this machine's CPUs over the task's, for the
default local Ray instance), a round lasting at least its longest batch, and adds the
fixed costs that do not depend on the plan (:data:`RAY_START_S`, :data:`FINISH_S`).

The probe runs with this process's threads, a Ray task with its own; on a loaded
machine both are slowed alike. Measured accuracy: bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

#: Steps of the probe's batch (a fraction of a second of the smallest networks).
PROBE_STEPS = 128
#: Starting the default local Ray instance (the estimate's constant; 0 when joining one).
RAY_START_S = 15.0
#: Boundaries, figures and the study's bookkeeping after the last round of a sweep.
FINISH_S = 8.0


@dataclasses.dataclass(frozen=True)
class GroupCost:
    """Measured cost of one batch of a shape group: ``fixed_s + steps * step_s``."""

    fixed_s: float
    step_s: float

    def batch_seconds(self, steps: int) -> float:
        return self.fixed_s + steps * self.step_s


def probe(batch: Sequence) -> GroupCost:
    """Time the batch ``batch`` (TrainJobs of one shape group) at ``PROBE_STEPS`` steps."""
    from ntk_dist.engine.train import train_batch

    jobs = [dataclasses.replace(job, steps=PROBE_STEPS, record=None) for job in batch]
    times = []
    for _ in range(2):  # compile + run, then run
        start = time.perf_counter()
        train_batch(jobs)
        times.append(time.perf_counter() - start)
    first, second = times
    return GroupCost(max(first - second, 0.0), second / PROBE_STEPS)


def local_slots(resources) -> int:
    """Task slots of the default local Ray instance on this machine (its CPUs)."""
    return resources.slots({"CPU": float(os.cpu_count() or 1)})


def round_seconds(batch_seconds: Sequence[float], slots: int) -> float:
    """Wall time of one round: its batches over ``slots`` workers, at least the longest."""
    return max(sum(batch_seconds) / slots, max(batch_seconds, default=0.0))


def describe(seconds: float) -> str:
    """``"about 3 min 20 s"``: a wall time for people."""
    seconds = round(seconds)
    if seconds < 90:
        return f"about {seconds} s"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min" if hours else f"about {minutes} min {rest} s"
