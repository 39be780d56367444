"""Tile-size sweep of the Ray Gram, warm: is the automatic tile within 10% of the best?

Usage: python bench/bench_gram_tiles.py N ROUNDS TILE [TILE ...]
One process, one 2-CPU local Ray, symmetric NTK, relu depth 2, d = 32, float32. First
every tile size runs once untimed on the first min(N, 4 B) inputs (10 tiles, so both
workers compile both tile shapes; ragged tiles are padded to the tile shape, so there are
no others), and the in-process ``fc_kernel`` runs once. Then ROUNDS rounds, each timing
the in-process kernel, the automatic tile and every TILE in turn (interleaved, so a burst
of load on the shared machine hits all sizes alike). Prints one JSON line per timing and
a summary line with each size's best time and the automatic tile's ratio to the best.
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
    n, rounds = int(sys.argv[1]), int(sys.argv[2])
    tiles = [int(t) for t in sys.argv[3:]]
    x = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
    ensure_ray(num_cpus=2)
    workers, memory = cluster_shape(Resources())
    auto = auto_tile(n, n, square=True, workers=workers, worker_memory=memory)
    print(json.dumps(dict(n=n, workers=workers, auto=auto)), flush=True)
    for tile in sorted({auto, *tiles}):
        gram(x[: min(n, 4 * tile)], tile=tile, **CFG)
    ref = np.asarray(fc_kernel(x, **CFG).ntk)
    times: dict = {}
    for r in range(rounds):
        for label, tile in [("in-process", 0), ("auto", None), *[(str(t), t) for t in tiles]]:
            t = time.perf_counter()
            k = np.asarray(fc_kernel(x, **CFG).ntk) if tile == 0 else gram(x, tile=tile, **CFG).ntk
            s = time.perf_counter() - t
            err = float(np.max(np.abs(k - ref)) / np.max(np.abs(ref)))
            times.setdefault(label, []).append(s)
            print(json.dumps(dict(round=r, label=label, seconds=s, max_rel_err=err)), flush=True)
    best = {k: min(v) for k, v in times.items()}
    fastest = min(v for k, v in best.items() if k != "in-process")
    summary = dict(
        n=n,
        auto_tile=auto,
        best_seconds=best,
        auto_over_best_ray=best["auto"] / fastest,
        ray_over_in_process={k: v / best["in-process"] for k, v in best.items()},
    )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
