"""ntk_dist: wide-network theory at cluster scale on Ray and JAX.

Conventions are those of the project's science notes (NTK parameterisation,
loss 1/(2m) sum ||f - y||^2, sharpness = top eigenvalue of Theta_hat(X, X) / m).
"""

from .activations import Activation, get_activation
from .boundaries import estimate_boundaries
from .data import Dataset, DataSpec, load
from .empirical import empirical_ntk, ntk_matrix, ntk_vector_product, sharpness
from .execute import Resources, plan_batches, run_jobs, submit_jobs
from .networks import CatapultToy, FCNetwork, param_count
from .phases import PHASES, label_runs
from .plots import plot_catapult, plot_phase_diagram
from .records import RECORD_SCHEMA
from .runtime import ensure_ray
from .search import BoundarySampler, grid_points, make_sampler
from .train import TrainJob, initial_params, record_schedule, train, train_batch

__version__ = "0.1.0"

__all__ = [
    "PHASES",
    "RECORD_SCHEMA",
    "Activation",
    "BoundarySampler",
    "CatapultToy",
    "DataSpec",
    "Dataset",
    "FCNetwork",
    "Resources",
    "TrainJob",
    "empirical_ntk",
    "ensure_ray",
    "estimate_boundaries",
    "get_activation",
    "grid_points",
    "label_runs",
    "make_sampler",
    "initial_params",
    "load",
    "ntk_matrix",
    "ntk_vector_product",
    "param_count",
    "plot_catapult",
    "plot_phase_diagram",
    "plan_batches",
    "record_schedule",
    "run_jobs",
    "sharpness",
    "submit_jobs",
    "train",
    "train_batch",
]
