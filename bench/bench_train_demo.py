"""Benchmark (c): ``ntk-dist run sweeps/demo.yaml`` end to end, counting XLA compiles.

Runs the CLI in a fresh process into a fresh output directory, with
``JAX_LOG_COMPILES=1`` and a private Ray temp directory, then counts the
"Finished XLA compilation" lines of the training program in the Ray workers' logs
(and their seconds). Passes: ``cold`` (empty compilation cache), ``warm`` (the cache
the cold pass filled, a new output directory), ``rerun`` (the warm pass's directory
again: nothing to train). Also prints the sum of the batches' own wall times
(compile included), from the records' ``wall_time_s``.

    PYTHONPATH=. python bench/bench_train_demo.py [--code DIR]   # DIR: checkout to time
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMPILE = re.compile(r"Finished XLA compilation of jit\((_run_\w+)\) in ([0-9.]+) sec")
HIT = re.compile(r"Persistent compilation cache hit for 'jit__run_")


def run(code: Path, spec: Path, out: Path, cache: Path, ray_tmp: Path) -> float:
    env = dict(
        os.environ,
        PYTHONPATH=str(code),
        JAX_LOG_COMPILES="1",
        NTK_DIST_CACHE_DIR=str(cache),
        RAY_TMPDIR=str(ray_tmp),
    )
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "ntk_dist", "run", str(spec), "--out", str(out), "--no-progress"],
        check=True,
        env=env,
        cwd=code,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def compiles(ray_tmp: Path) -> tuple[int, int, float]:
    """(programs obtained, of which persistent-cache hits, their seconds) in the workers."""
    logs = [f.read_text(errors="replace") for f in ray_tmp.rglob("worker-*") if f.is_file()]
    found = [float(m.group(2)) for text in logs for m in COMPILE.finditer(text)]
    hits = sum(len(HIT.findall(text)) for text in logs)
    return len(found), hits, sum(found)


def batch_seconds(out: Path) -> float:
    import pyarrow.parquet as pq

    table = pq.read_table(out / "runs")
    return float(sum(table.column("wall_time_s").to_pylist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=Path.cwd())
    args = parser.parse_args()
    code = args.code.resolve()
    spec = code / "sweeps" / "demo.yaml"
    print(f"code={code} load={os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        for name, out in (("cold", "a"), ("warm", "b"), ("rerun", "b")):
            ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: socket paths
            wall = run(code, spec, tmp / out, cache, ray_tmp)
            n, hits, secs = compiles(ray_tmp)
            train = batch_seconds(tmp / out)
            shutil.rmtree(ray_tmp, ignore_errors=True)
            print(
                f"{name:5s} wall {wall:6.1f} s, {n} training programs obtained, {hits} of "
                f"them from the persistent cache ({secs:.1f} s), batches' wall sum "
                f"{train:.1f} s (whole directory), "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
