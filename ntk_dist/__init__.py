"""ntk_dist: wide-network theory at cluster scale on Ray and JAX.

Conventions are those of the project's science notes (NTK parameterisation,
loss 1/(2m) sum ||f - y||^2, sharpness = top eigenvalue of Theta_hat(X, X) / m).
"""

from .activations import Activation, get_activation
from .empirical import empirical_ntk, ntk_matrix, ntk_vector_product, sharpness
from .kernels import Kernel, fc_kernel
from .networks import CatapultToy, FCNetwork, param_count
from .predict import (
    GaussianPrediction,
    Trajectory,
    critical_learning_rate,
    linearized_predict,
    max_learning_rate,
    nngp_posterior,
    ntk_gp,
)
from .runtime import ensure_ray

__version__ = "0.1.0"

__all__ = [
    "Activation",
    "CatapultToy",
    "FCNetwork",
    "GaussianPrediction",
    "Kernel",
    "Trajectory",
    "critical_learning_rate",
    "empirical_ntk",
    "ensure_ray",
    "fc_kernel",
    "get_activation",
    "linearized_predict",
    "max_learning_rate",
    "nngp_posterior",
    "ntk_gp",
    "ntk_matrix",
    "ntk_vector_product",
    "param_count",
    "sharpness",
]
