"""The graphed path of `make bench-gpu` (worker/trainers/graphed.py), run on the CPU: the same
tensor operations a CUDA graph captures, held to the numba kernels."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from bench import gpu
from core.spec import ExperimentSpec
from worker.trainers.graphed import GraphedSweep


@pytest.fixture(autouse=True)
def one_torch_thread():  # noqa: ANN201 - tiny tensors: threads only add waiting on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_graphed_steps_equal_the_kernels_for_four_paper_runs():
    assert gpu.kernel_difference(torch.device("cpu")) <= gpu.CHECK_TOLERANCE


def test_graphed_members_sharing_streams_with_their_own_lr_and_loss_equal_the_kernels():
    specs = [
        ExperimentSpec(depth=3, seed=seed, lr=lr, loss=loss, dtype="float64")
        for seed, lr, loss in (
            (0, 1e-3, "logistic"),
            (0, 1e-2, "exponential"),
            (5, 3e-3, "logistic"),
        )
    ]
    assert gpu.kernel_difference(torch.device("cpu"), specs, steps=200) <= 1e-12


def test_graphed_refuses_members_it_cannot_step_together():
    with pytest.raises(ValueError, match="one depth"):
        GraphedSweep([ExperimentSpec(depth=2), ExperimentSpec(depth=3)], torch.device("cpu"))
    with pytest.raises(ValueError, match="circle"):
        GraphedSweep([ExperimentSpec(dim=3)], torch.device("cpu"))


def test_bench_gpu_without_cuda_says_so_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "bench.gpu"], capture_output=True, text=True,
                            env=env, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout
