"""Chaos during a sweep: Ray workers and the driver SIGKILLed at random moments on a
three-node loopback cluster; the resumed sweep equals an undisturbed one, each run once.

The cluster (a head and two one-CPU worker nodes, all on 127.0.0.1) needs its own Ray, so
this file is also the script that runs it: ``python tests/test_chaos.py TMP SEED`` starts
the cluster, runs the undisturbed reference sweep in-process, then runs ``ntk-dist run``
as driver subprocesses joined to the cluster, injecting the faults, and prints what it
injected as JSON. The test checks the two datasets.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "chaos",
    "model": {"kind": "toy", "widths": [32, 64]},  # two Ray tasks per round
    "training": {"seeds": 2, "steps": 128},
    "search": {"eta_lambda0": [1.0, 5.0], "n_trials": 16, "parallel": 4},  # 4 rounds, 32 runs
}
#: Sessions 0-4 end with a driver SIGKILL, alternately while a batch trains (at the latest
#: when it is stored) and just after one is stored; sessions 1, 3 and 5 (the last, which
#: must finish) SIGKILL a task worker while it trains.
DRIVER_KILLS, WORKER_KILL_SESSIONS = 5, (1, 3, 5)


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _ours(pid: int) -> bool:
    """A descendant of this process: a worker of our cluster, never another user's."""
    while pid > 1:
        pid = _parent(pid)
        if pid == os.getpid():
            return True
    return False


def _task_workers() -> list[int]:
    """pids of our Ray workers executing a training batch (Ray titles them by task)."""
    pids = []
    for p in Path("/proc").iterdir():
        try:
            title = (p / "cmdline").read_bytes() if p.name.isdigit() else b""
            if title.startswith(b"ray::_batch_task") and _ours(int(p.name)):
                pids.append(int(p.name))
        except (OSError, ValueError, IndexError):  # the process ended while we looked
            pass
    return pids


def _wait_for(cond, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := cond():
            return value
        time.sleep(0.02)
    return None


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else -1


def _parts(out: Path) -> int:
    return len(list((out / "runs").glob("part-*.parquet"))) if (out / "runs").exists() else 0


def _chaos(tmp: Path, seed: int) -> dict:
    import ray
    import yaml
    from ray.cluster_utils import Cluster

    from ntk_dist.distributed.runtime import ensure_ray
    from ntk_dist.study import sweep
    from ntk_dist.study.spec import parse_spec

    rng = random.Random(seed)
    t0 = time.monotonic()
    node = dict(node_ip_address="127.0.0.1", include_dashboard=False)
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=0, **node))
    for _ in range(2):
        cluster.add_node(num_cpus=1, **node)
    cluster.wait_for_nodes()
    ensure_ray(address=cluster.address)
    drawn, sweep._figures = sweep._figures, lambda *a: None  # the reference's are not compared
    sweep.run_sweep(parse_spec(SPEC), tmp / "reference", progress=False)
    sweep._figures = drawn
    t_ref = time.monotonic()

    spec_path, out = tmp / "spec.yaml", tmp / "chaos"
    spec_path.write_text(yaml.safe_dump(SPEC))
    cmd = [sys.executable, "-m", "ntk_dist", "run", str(spec_path), "--out", str(out)]
    cmd += ["--no-progress", "--address", cluster.address]
    faults = []
    for session in range(DRIVER_KILLS + 1):
        journal = _size(out / "study.journal")
        driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        started = time.monotonic()
        # The driver is at work once it writes to the study (recovery or its first ask).
        at_work = lambda j=journal: _size(out / "study.journal") != j
        assert _wait_for(at_work, 60), "driver stalled"
        stored = _parts(out)
        if session in WORKER_KILL_SESSIONS:
            assert _wait_for(_task_workers, 60), "no training task to kill"
            time.sleep(rng.uniform(0.0, 0.5))
            victims = _task_workers()
            assert victims, "the task finished before its worker could be killed"
            pid = rng.choice(victims)
            os.kill(pid, signal.SIGKILL)
            faults.append(
                dict(fault="worker SIGKILL", session=session, parts_stored=_parts(out),
                     after_s=round(time.monotonic() - started, 2))
            )  # fmt: skip
        if session == DRIVER_KILLS:
            err = driver.communicate(timeout=240)[1].decode()
            assert driver.returncode == 0, err[-3000:]
            break
        # At most a batch or two stored per session, so all five kills land before the end.
        if session % 2 == 0:
            moment = "while a batch trains"
            assert _wait_for(_task_workers, 60), "no training task while the driver ran"
            now = _parts(out)
            _wait_for(lambda n=now: _parts(out) > n, rng.uniform(0.0, 2.0))
        else:
            moment = "just after a batch was stored"
            assert _wait_for(lambda n=stored: _parts(out) > n, 120), "no batch stored"
            time.sleep(rng.uniform(0.0, 0.3))
        assert driver.poll() is None, "the sweep finished before the driver could be killed"
        driver.kill()
        driver.wait()
        faults.append(
            dict(fault="driver SIGKILL", session=session, moment=moment,
                 parts_stored=_parts(out), after_s=round(time.monotonic() - started, 2))
        )  # fmt: skip
        # Ray ends a dead driver's tasks; let it, so they do not slow the next session.
        _wait_for(lambda: not _task_workers(), 20)
    ray.shutdown()
    cluster.shutdown()
    return dict(
        faults=faults,
        cluster_and_reference_s=round(t_ref - t0, 1),
        chaos_s=round(time.monotonic() - t_ref, 1),
    )


@pytest.mark.slow
def test_worker_and_driver_sigkills_lose_and_duplicate_nothing(tmp_path):
    from ntk_dist.study.results import read_runs

    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    proc = subprocess.Popen(
        [sys.executable, __file__, str(tmp_path), "0"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None or proc.returncode != 0:
            try:  # the cluster's processes, should the script have died before shutting it down
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode == 0, stderr[-4000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))
    kinds = [f["fault"] for f in report["faults"]]
    assert kinds.count("driver SIGKILL") == 5 and kinds.count("worker SIGKILL") == 3

    reference, chaos = read_runs(tmp_path / "reference"), read_runs(tmp_path / "chaos")
    keys = chaos.column("run_key").to_pylist()
    assert len(keys) == len(set(keys)) == 16 * 2
    assert keys == reference.column("run_key").to_pylist()  # both sorted by run_key
    for col in ("phase", "eta_lambda0", "loss_peak", "loss_final"):
        np.testing.assert_array_equal(chaos[col].to_numpy(), reference[col].to_numpy())
    ours = pq.read_table(tmp_path / "chaos" / "boundaries.parquet").to_pandas()
    ref = pq.read_table(tmp_path / "reference" / "boundaries.parquet").to_pandas()
    for col in ("width", "boundary", "eta_lambda0", "ci_low", "ci_high", "n_runs"):
        np.testing.assert_array_equal(ours[col].to_numpy(), ref[col].to_numpy())


if __name__ == "__main__":
    print(json.dumps(_chaos(Path(sys.argv[1]), int(sys.argv[2]))))
