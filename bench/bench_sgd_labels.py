"""Phase labels of SGD and full-batch GD runs side by side (docs/theory.md §7).

Depth-2 ReLU FCNetwork, width 64, ``gaussian`` data (m = 16, d = 4), 64 steps, 2 seeds,
eta * lambda0 in (0.25, 0.5, 1, 1.5, 2.5, 3.5); SGD with minibatches of 2 against GD.
Prints, per run, the label, the full-batch loss rise max_t L_t / L_0 - 1, the tolerance
it was held to (scaled by the noise at the group's smallest eta * lambda0 for SGD) and
the sharpness-catapult flag.

    PYTHONPATH=. python bench/bench_sgd_labels.py
"""

from __future__ import annotations

import time

from ntk_dist.analysis.phases import classify_runs
from ntk_dist.distributed.execute import run_jobs
from ntk_dist.engine.data import DataSpec
from ntk_dist.engine.jobs import TrainJob
from ntk_dist.models.networks import FCNetwork
from ntk_dist.theory.architecture import FC

ETAS = (0.25, 0.5, 1.0, 1.5, 2.5, 3.5)


def main() -> None:
    start = time.perf_counter()
    data = DataSpec(name="gaussian", n_train=16, dim=4)
    net = FCNetwork.from_arch(FC(2, "relu"), 64)
    jobs = [
        TrainJob(net, data, c, steps=64, seed=s, lr_units="lambda0", optimizer=o, batch_size=b)
        for o, b in (("sgd", 2), ("gd", None))
        for c in ETAS
        for s in range(2)
    ]
    runs = run_jobs(jobs)
    labels = classify_runs(runs).to_pylist()
    print(f"{'optimizer':<9} {'c':>5} {'seed':>4} {'phase':<20} {'rise':>10} {'tol':>7} sharp")
    for r, lab in zip(runs.to_pylist(), labels, strict=True):
        print(
            f"{r['optimizer']:<9} {r['eta_lambda0']:>5.2f} {r['seed']:>4} {lab['phase']:<20} "
            f"{lab['loss_rise']:>10.4g} {lab['rise_tol']:>7.3g} {lab['sharpness_catapult']}"
        )
    print(f"wall {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
