"""The study layer: spec files turned into jobs, results directories, the Optuna
search, the sweep and experiment drivers, the report and the integrity check."""
