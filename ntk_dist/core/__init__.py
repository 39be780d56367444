"""The bottom layer: input validation, crash-safe files, tiling and provenance.

Imports nothing from the rest of ntk_dist, and none of jax, ray or optuna.
"""
