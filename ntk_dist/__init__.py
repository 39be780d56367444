"""ntk_dist: wide-network theory at cluster scale on Ray and JAX.

Conventions are those of the project's science notes (NTK parameterisation,
loss 1/(2m) sum ||f - y||^2, sharpness = top eigenvalue of Theta_hat(X, X) / m).
"""

from .activations import Activation, get_activation
from .analysis import (
    GPComparison,
    PowerLaw,
    WidthScaling,
    compare_to_gp,
    ensemble_stats,
    fit_power_law,
    group_stats,
    width_scaling,
)
from .boundaries import estimate_boundaries
from .check import CheckReport, check_results
from .data import Dataset, DataSpec, load
from .empirical import empirical_ntk, ntk_matrix, ntk_vector_product, sharpness
from .execute import Resources, plan_batches, run_jobs, submit_jobs
from .experiments import ExperimentSpec, run_experiment
from .gram import GramResult, TileResources, empirical_gram, gram
from .kernels import Kernel, fc_kernel
from .networks import CatapultToy, FCNetwork, param_count
from .numerics import NumericalWarning, float32_check
from .phases import PHASES, label_runs
from .plots import plot_catapult, plot_phase_diagram
from .predict import (
    GaussianPrediction,
    Trajectory,
    critical_learning_rate,
    linearized_predict,
    max_learning_rate,
    nngp_posterior,
    ntk_gp,
)
from .records import RECORD_SCHEMA
from .runtime import ensure_ray
from .search import BoundarySampler, grid_points, make_sampler
from .solve import kernel_regression
from .spec import SweepSpec, load_spec, parse_spec
from .store import RUN_SCHEMA, append_runs, read_runs
from .sweep import SweepResult, run_sweep
from .train import TrainJob, initial_params, record_schedule, train, train_batch

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "BoundarySampler",
    "CatapultToy",
    "CheckReport",
    "DataSpec",
    "Dataset",
    "ExperimentSpec",
    "FCNetwork",
    "GPComparison",
    "GaussianPrediction",
    "GramResult",
    "Kernel",
    "NumericalWarning",
    "PHASES",
    "PowerLaw",
    "RECORD_SCHEMA",
    "RUN_SCHEMA",
    "Resources",
    "SweepResult",
    "SweepSpec",
    "TileResources",
    "TrainJob",
    "Trajectory",
    "WidthScaling",
    "append_runs",
    "compare_to_gp",
    "check_results",
    "critical_learning_rate",
    "empirical_gram",
    "empirical_ntk",
    "ensemble_stats",
    "ensure_ray",
    "estimate_boundaries",
    "fc_kernel",
    "fit_power_law",
    "float32_check",
    "get_activation",
    "gram",
    "grid_points",
    "group_stats",
    "initial_params",
    "kernel_regression",
    "label_runs",
    "linearized_predict",
    "load",
    "load_spec",
    "make_sampler",
    "max_learning_rate",
    "nngp_posterior",
    "ntk_gp",
    "ntk_matrix",
    "ntk_vector_product",
    "param_count",
    "parse_spec",
    "plan_batches",
    "plot_catapult",
    "plot_phase_diagram",
    "read_runs",
    "record_schedule",
    "run_experiment",
    "run_jobs",
    "run_sweep",
    "sharpness",
    "submit_jobs",
    "train",
    "train_batch",
    "width_scaling",
]
