"""The dry run's wall-time estimate against the measured wall time of the same run.

For each spec: ``ntk-dist run SPEC --estimate`` (its "estimated wall time" line), then
``ntk-dist run SPEC`` into a fresh directory, timed, in a new process each, one after
the other; prints the estimate, the measurement and their ratio, with the load average.

    python bench/bench_estimate.py [SPEC ...]   # default: demo, a small fc sweep, an experiment
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = [
    "bench/specs/estimate_fc.yaml",
    "bench/specs/estimate_experiment.yaml",
    "sweeps/demo.yaml",
]


def _ntk(*args) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "ntk_dist", *args], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    return out.stdout, seconds


def _seconds(text: str) -> float:
    """Seconds of "about 3 min 20 s" (ntk_dist.study.estimate.describe)."""
    words = re.search(r"about ((?:\d+ (?:h|min|s) ?)+)", text).group(1)
    units = {"h": 3600, "min": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+) (h|min|s)", words))


def main(specs) -> None:
    print(f"load average before: {os.getloadavg()}")
    for spec in specs:
        plan, _ = _ntk("run", spec, "--estimate")
        line = next(x for x in plan.splitlines() if "estimated wall time" in x)
        estimate = _seconds(line.split(":", 1)[1])
        with tempfile.TemporaryDirectory() as tmp:
            _, measured = _ntk("run", spec, "--out", f"{tmp}/out", "--no-progress")
        print(
            f"{spec}: estimate {estimate:.0f} s, measured {measured:.0f} s, "
            f"measured/estimate {measured / estimate:.2f}; load {os.getloadavg()}"
        )
        print(f"  {line.strip()}")


if __name__ == "__main__":
    main(sys.argv[1:] or SPECS)
