"""Out-of-core symmetric NTK Gram to disk: wall time and the driver's peak RSS.

Usage: python bench/bench_gram_disk.py N OUT_DIR [TILE]
(float32, d = 32, relu, depth 2, 2-CPU local Ray). The driver holds only the
in-flight tiles; the matrix lives in OUT_DIR/ntk.npy (4 N^2 bytes).
"""

import json
import resource
import sys
import time

import numpy as np

from ntk_dist import gram
from ntk_dist.distributed.runtime import ensure_ray


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    tile = int(sys.argv[3]) if len(sys.argv) > 3 else None
    x = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
    ensure_ray(num_cpus=2)
    t = time.perf_counter()
    res = gram(x, depth=2, activation="relu", sigma_w=1.5, sigma_b=0.1, get=("ntk",), tile=tile,
               out=out, overwrite=True)  # fmt: skip
    s = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(n=n, seconds=s, tiles=res.tiles_total, matrix_gib=4 * n * n / 2**30,
                          driver_peak_rss_gib=rss / 2**30)))  # fmt: skip


if __name__ == "__main__":
    main()
