"""numba's cache directory, and the warm-up that compiles every kernel variant a run needs."""

from __future__ import annotations

from pathlib import Path

import numba.core.config
import pytest

from worker import kernels, warmup
from worker.numba_cache import CACHE_ENV, use_numba_cache
from worker.warmup import warm_specs, warm_up


@pytest.fixture
def numba_config(monkeypatch: pytest.MonkeyPatch):
    """numba's CACHE_DIR and the environment, restored after the test."""
    monkeypatch.setattr(numba.core.config, "CACHE_DIR", numba.core.config.CACHE_DIR)
    return monkeypatch


def test_cache_defaults_to_dirconvs_directory(numba_config, tmp_path: Path):
    numba_config.delenv(CACHE_ENV, raising=False)
    numba_config.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = str(tmp_path / "dirconv" / "numba")
    assert use_numba_cache() == expected
    assert expected == numba.core.config.CACHE_DIR


def test_a_numba_cache_dir_set_by_the_user_is_kept(numba_config, tmp_path: Path):
    numba_config.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert use_numba_cache() == str(tmp_path / "mine")


def test_worker_processes_cache_where_the_worker_package_says():
    assert kernels.train_block.stats.cache_path.startswith(numba.core.config.CACHE_DIR)


def test_warm_up_compiles_both_dtypes_and_both_data_recipes():
    specs = warm_specs(cuda=False)
    assert {(spec.dtype, spec.optimizer, spec.device) for spec in specs} == {
        (dtype, optimizer, "cpu") for dtype in ("float32", "float64") for optimizer in ("sgd", "gd")
    }
    assert warm_specs(cuda=True)[-1].device == "cuda"
    warm_up()
    compiled = {signature[0].dtype.name for signature in kernels.fill_batch.signatures}
    assert compiled == {"float32", "float64"}
    assert len(kernels.train_block.signatures) == 2
    assert {signature[0].dtype.name for signature in kernels.draw_block.signatures} == {
        "float32",
        "float64",
    }


def test_a_worker_stopped_while_warming_up_stops_compiling(monkeypatch: pytest.MonkeyPatch):
    ran = []
    monkeypatch.setattr(warmup.engine, "run_group", lambda specs, *_, **__: ran.extend(specs))
    warm_up(stopping=lambda: len(ran) == 1)
    assert len(ran) == 1
