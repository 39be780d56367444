"""Ray-tiled symmetric NTK Gram vs the in-process kernel, and a tile-size sweep.

Usage: python bench/bench_gram.py N [TILE ...]
Same run, same inputs (d = 32, relu, depth 2, float32): in-process ``fc_kernel``,
then ``ntk_dist.distributed.gram`` on a 2-CPU local Ray with the automatic tile, then each TILE,
each twice (cold, then warm).
Prints JSON lines with wall seconds and the ratio to the in-process time.
"""

import json
import sys
import time

import numpy as np

from ntk_dist import fc_kernel, gram
from ntk_dist.distributed.gram import auto_tile, cluster_shape
from ntk_dist.distributed.resources import Resources
from ntk_dist.distributed.runtime import ensure_ray

CFG = dict(depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1, get=("ntk",))


def main():
    n = int(sys.argv[1])
    tiles = [int(t) for t in sys.argv[2:]]
    x = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
    ensure_ray(num_cpus=2)
    gram(x[:600], tile=256, **CFG)  # warm the workers' imports
    fc_kernel(x[:600], **CFG).ntk.block_until_ready()
    t = time.perf_counter()
    ref = np.asarray(fc_kernel(x, **CFG).ntk)
    base = time.perf_counter() - t
    print(json.dumps(dict(n=n, mode="in-process", seconds=base)), flush=True)
    workers, memory = cluster_shape(Resources())
    auto = auto_tile(n, n, square=True, workers=workers, worker_memory=memory)
    # Each tile twice: the first run includes the workers' JIT compiles of its tile shapes.
    for tile in [t for t in [None, *tiles] for _ in range(2)]:
        t = time.perf_counter()
        res = gram(x, tile=tile, **CFG)
        s = time.perf_counter() - t
        err = float(np.max(np.abs(res.ntk - ref)) / np.max(np.abs(ref)))
        print(json.dumps(dict(n=n, mode="ray", tile=tile or f"auto={auto}", seconds=s,
                              ratio=s / base, max_rel_err=err)), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
