"""Splitting a numba group's members over threads: each part is a set of members, with the data
streams they read, that one thread steps through a block on its own. The kernels release the
GIL, so parts run in parallel; a member's arithmetic is the same in any part, so its metrics
are bit for bit those of one thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

SAMPLING_COST_MEMBERS = 2
"""Drawing a stream's batch costs about as much as this many members' steps on it."""


def split(stream_of: np.ndarray, parts: int) -> list[np.ndarray]:
    """Member indices in at most `parts` groups of about equal cost, keeping the members of a
    stream together unless there are fewer streams than parts (then a stream's members are
    split, and each part draws that stream's batches itself)."""
    units = [np.flatnonzero(stream_of == s) for s in np.unique(stream_of)]
    while len(units) < parts and max(len(unit) for unit in units) > 1:
        units.sort(key=len)
        largest = units.pop()
        units += [largest[: len(largest) // 2], largest[len(largest) // 2 :]]
    loads, assigned = [0] * min(parts, len(units)), [[] for _ in range(min(parts, len(units)))]
    for unit in sorted(units, key=len, reverse=True):  # longest first, to the lightest part
        lightest = loads.index(min(loads))
        assigned[lightest].append(unit)
        loads[lightest] += len(unit) + SAMPLING_COST_MEMBERS
    return [np.sort(np.concatenate(members)) for members in assigned]


@lru_cache
def pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, shared by every group of the process."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dirconv-train")
