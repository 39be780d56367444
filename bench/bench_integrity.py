"""Cost of page CRCs and the sha256 manifest on part files (bench/RESULTS.md).

Writes one part file (the runs of ``OUT/runs`` repeated 50 times) 20 times with and
without checksums, alternating, then reads it 100 times with and without page-CRC
verification, alternating. Usage: ``python bench/bench_integrity.py OUT/runs``.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ntk_dist.core.files import write_atomic, write_table_atomic
from ntk_dist.core.integrity import sha256_file


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(runs_dir: str) -> None:
    parts = sorted(Path(runs_dir).glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p) for p in parts] * 50)
    root = Path(tempfile.mkdtemp())

    def plain_write(fh):
        pq.write_table(table, fh)

    plain, checked = [], []
    for _ in range(20):
        plain.append(_timed(lambda: write_atomic(root / "a.parquet", plain_write)))
        checked.append(
            _timed(lambda: write_table_atomic(table, root / "b.parquet", checksums=root))
        )
    path = root / "b.parquet"
    verified, unverified = [], []
    for _ in range(100):
        verified.append(_timed(lambda: pq.read_table(path, page_checksum_verification=True)))
        unverified.append(_timed(lambda: pq.read_table(path)))
    med = statistics.median
    print(f"{table.num_rows} rows, {path.stat().st_size} bytes")
    print(f"write: checked / plain = {med(checked) / med(plain):.2f}")
    print(f"read: verified / unverified = {med(verified) / med(unverified):.2f}")
    print(f"sha256 of the file: {_timed(lambda: sha256_file(path)) * 1e3:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
