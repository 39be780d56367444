"""The training engine: data sets, training jobs, many networks trained in one jitted,
vmapped program, the training record and the float32 check. Knows nothing of Ray."""
