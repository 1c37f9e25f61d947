"""dirconv's compute side: the engine (tensors) and the job loop (database)."""

from worker.numba_cache import use_numba_cache

use_numba_cache()
