"""Infinite-width theory (docs/theory.md §2, §4): NNGP/NTK kernels, NTK-GP and NNGP
predictions, kernel regression and the numerical rules of kernel solves.

Pure JAX/NumPy: no Ray, Optuna or files.
"""
