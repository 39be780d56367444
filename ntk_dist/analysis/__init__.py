"""Analysis of run tables: phase labels and boundaries (docs/theory.md §5, §7),
ensemble statistics and power-law fits, figures. Functions of Arrow tables; no Ray."""
