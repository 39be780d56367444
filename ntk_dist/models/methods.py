"""Names of the algorithms the models layer offers, importable without jax, so that
specs and training jobs can validate a choice before any network is built.

- :data:`IMPLEMENTATIONS`: how :func:`ntk_dist.models.empirical.empirical_ntk` computes
  Theta_hat (``"auto"``, Jacobian contraction, NTK-vector products, or the structured
  dense-layer form).
- :data:`SHARPNESS_METHODS`: how a sharpness's top eigenvalue is found (``"auto"``,
  dense ``eigvalsh`` or matrix-free Lanczos).
- :data:`SHARPNESS_DEFINITIONS`: which sharpness (docs/theory.md §3, §7): ``"ntk"``, the
  top eigenvalue of Theta_hat(X, X) / m (:func:`ntk_dist.models.empirical.sharpness`), or
  ``"hessian"``, the largest algebraic eigenvalue of the Hessian of the training loss
  (:func:`ntk_dist.models.hessian.hessian_sharpness`).
"""

IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")
SHARPNESS_METHODS = ("auto", "dense", "lanczos")
SHARPNESS_DEFINITIONS = ("ntk", "hessian")
