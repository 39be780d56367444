"""Finite networks (docs/theory.md §1) and their empirical NTK and sharpness."""
