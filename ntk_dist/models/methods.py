"""Names of the algorithms the models layer offers, importable without jax, so that
specs and training jobs can validate a choice before any network is built.

- :data:`IMPLEMENTATIONS`: how :func:`ntk_dist.models.empirical.empirical_ntk` computes
  Theta_hat (``"auto"``, Jacobian contraction, NTK-vector products, or the structured
  dense-layer form).
- :data:`SHARPNESS_METHODS`: how :func:`ntk_dist.models.empirical.sharpness` finds the
  top eigenvalue (``"auto"``, dense ``eigvalsh`` or matrix-free Lanczos).
"""

IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")
SHARPNESS_METHODS = ("auto", "dense", "lanczos")
