"""dirconv's compute side: the engine (tensors) and the job loop (database)."""
