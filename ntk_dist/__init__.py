"""ntk_dist: wide-network theory at cluster scale on Ray and JAX.

The package is layered, each layer importing only from those below it (the contract
in ``pyproject.toml``, checked by import-linter in CI):

- ``ntk_dist.core``: validation, atomic files, tiling, provenance.
- ``ntk_dist.theory``: infinite-width kernels, predictions, kernel regression (JAX/NumPy).
- ``ntk_dist.models``: finite networks and their empirical NTK.
- ``ntk_dist.engine``: data sets, training jobs and the batched training loop, records.
- ``ntk_dist.distributed``: Ray runtime, batch execution, Gram matrices in tiles.
- ``ntk_dist.analysis``: phase labels, boundaries, statistics and figures of run tables.
- ``ntk_dist.study``: spec files, results directories, search, sweep and experiment
  drivers, report and check.
- ``ntk_dist.cli``: the ``ntk-dist`` command.

The names in ``__all__`` are the public API; they load on first use (PEP 562), so
``import ntk_dist`` imports none of jax, ray, optuna or matplotlib. Conventions (NTK
parameterisation, loss 1/(2m) sum ||f - y||^2, sharpness = top eigenvalue of
Theta_hat(X, X) / m) are those of ``docs/theory.md``.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_PUBLIC = {
    "ntk_dist.theory.activations": ("Activation", "get_activation"),
    "ntk_dist.theory.architecture": ("FC",),
    "ntk_dist.theory.kernels": ("Kernel", "fc_kernel"),
    "ntk_dist.theory.numerics": ("NumericalWarning",),
    "ntk_dist.theory.predict": (
        "Trajectory",
        "critical_learning_rate",
        "linearized_predict",
        "max_learning_rate",
    ),
    "ntk_dist.theory.gp": ("GaussianPrediction", "nngp_gp", "nngp_posterior", "ntk_gp"),
    "ntk_dist.theory.solve": ("kernel_regression",),
    "ntk_dist.models.networks": ("CatapultToy", "FCNetwork", "param_count"),
    "ntk_dist.models.empirical": ("empirical_ntk", "ntk_matrix", "ntk_vector_product", "sharpness"),
    "ntk_dist.models.hessian": ("hessian_sharpness",),
    "ntk_dist.models.monte_carlo": ("MonteCarloKernel", "monte_carlo_kernel"),
    "ntk_dist.engine.data": ("DataSpec", "Dataset", "load"),
    "ntk_dist.engine.records": ("RECORD_SCHEMA",),
    "ntk_dist.engine.jobs": ("TrainJob", "record_schedule"),
    "ntk_dist.engine.train": ("initial_params", "train", "train_batch"),
    "ntk_dist.engine.precision": ("float32_check",),
    "ntk_dist.distributed.runtime": ("ensure_ray",),
    "ntk_dist.distributed.resources": ("Resources",),
    "ntk_dist.distributed.execute": ("plan_batches", "run_jobs", "submit_jobs"),
    "ntk_dist.distributed.gram": ("GramResult", "empirical_gram", "gram"),
    "ntk_dist.analysis.phases": ("PHASES", "classify_runs", "label_runs"),
    "ntk_dist.analysis.boundaries": ("estimate_boundaries",),
    "ntk_dist.analysis.stats": (
        "GPComparison",
        "PowerLaw",
        "WidthScaling",
        "compare_to_gp",
        "ensemble_stats",
        "fit_power_law",
        "group_stats",
        "width_scaling",
    ),
    "ntk_dist.analysis.phase_plots": ("plot_catapult", "plot_critical", "plot_phase_diagram"),
    "ntk_dist.study.spec": ("ExperimentSpec", "SweepSpec", "load_spec", "parse_spec"),
    "ntk_dist.study.results": ("RUN_SCHEMA", "append_runs", "read_runs"),
    "ntk_dist.study.search": ("grid_points",),
    "ntk_dist.study.samplers": ("BoundarySampler", "make_sampler"),
    "ntk_dist.study.sweep": ("SweepResult", "run_sweep"),
    "ntk_dist.study.experiments": ("run_experiment",),
    "ntk_dist.study.check": ("CheckReport", "check_results"),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'ntk_dist' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
