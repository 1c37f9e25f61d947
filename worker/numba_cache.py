"""Where numba keeps the kernels it compiled (worker/kernels.py, `cache=True`), so that only
the first worker on a machine pays for compiling them.

numba reads NUMBA_CACHE_DIR once, when it is first imported, and its default (`__pycache__`
beside the source) is read-only where the package is installed system-wide, as in the images.
So `worker/__init__.py` calls `use_numba_cache()` before any module imports numba."""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "NUMBA_CACHE_DIR"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/dirconv/numba`, or `~/.cache/dirconv/numba`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dirconv" / "numba"


def use_numba_cache() -> str:
    """Set NUMBA_CACHE_DIR to dirconv's cache directory unless it is set already; returns
    the directory numba will use. (numba falls back to its own default where it cannot
    write there.)"""
    path = os.environ.get(CACHE_ENV) or str(default_cache_dir())
    os.environ[CACHE_ENV] = path
    config = sys.modules.get("numba.core.config")
    if config is not None:  # numba came first: tell its config too
        config.CACHE_DIR = path
    return path
