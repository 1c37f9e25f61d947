"""`make bench-gpu`: the paper's run at depth 4 (batch 1000) for K = 1, 64 and 1,024 members
on one CUDA device, each block of steps replayed as one CUDA graph
(worker/trainers/graphed.py), in float32 and float64: member-steps/s, microseconds per group
step, and the ratio to the hand-written PyTorch loop (reference/naive_sgd.py) run on the same
GPU in the same command. First it checks that its float64 metrics equal the numba kernels' to
1e-10 over the first 1,000 steps. Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import torch

from core.spec import ExperimentSpec
from worker import engine
from worker.trainers.graphed import GRAPH_METRICS, GraphedSweep

REPO = Path(__file__).resolve().parents[1]
NAIVE = Path(os.environ.get("DIRCONV_SHARED", REPO.parent / "shared")) / "reference/naive_sgd.py"
MEMBERS = (1, 64, 1024)
STEPS = 4096
CHECK_STEPS, CHECK_TOLERANCE = 1000, 1e-10
CHECK_BLOCK = 40
"""Steps per graph in the check (1,000 is a multiple of it)."""
TARGETS = {1: ("steps/s", 20_000), 1024: ("member-steps/s", 10_000_000)}
"""On an H100-class card."""


def paper_specs(members: int, dtype: str, device: str = "cuda") -> list[ExperimentSpec]:
    """`members` copies of the paper's depth-4 run, seeds 0, 1, ...: each has its own init
    and its own data stream."""
    return [ExperimentSpec(depth=4, seed=seed, dtype=dtype, device=device)
            for seed in range(members)]  # fmt: skip


def kernel_difference(
    device: torch.device, specs: list[ExperimentSpec] | None = None, steps: int = CHECK_STEPS
) -> float:
    """Largest absolute difference between the graphed path on `device` and the numba kernels,
    over every logged metric of the first `steps` steps of `specs` (default: 4 float64
    members of the paper's run)."""
    specs = [spec.model_copy(update={"steps": steps})
             for spec in specs or paper_specs(4, "float64")]  # fmt: skip
    members = len(specs)
    sweep = GraphedSweep(specs, device, block_steps=CHECK_BLOCK)
    sweep.capture()
    table = sweep.run(steps)
    cpu_specs = [spec.model_copy(update={"device": "cpu"}) for spec in specs]
    logged: list[dict[str, list[float]]] = [{} for _ in specs]

    def on_blocks(blocks):  # noqa: ANN001, ANN202
        for member, block in zip(logged, blocks, strict=True):
            for name, values in block.values.items() if block else ():
                member.setdefault(name, []).extend(values.tolist())
        return [True] * len(blocks)

    engine.run_group(cpu_specs, on_blocks)
    return max(
        float(np.abs(np.array(logged[m][name][:steps]) - table[:, m, column]).max())
        for m in range(members)
        for column, name in enumerate(GRAPH_METRICS)
    )


def naive_steps_per_second(device: torch.device, steps: int) -> float:
    """The reference loop (its own `build`, `end_to_end` and update), its tensors on `device`;
    it reads the directional error back every step, as it does on the CPU."""
    spec = importlib.util.spec_from_file_location("naive_sgd", NAIVE)
    naive = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(naive)
    torch.manual_seed(0)
    v = torch.tensor([0.0, 1.0], device=device)
    net = naive.build(4, 2).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step() -> float:
        x = torch.nn.functional.normalize(torch.randn(1000, 2, device=device), dim=1)
        y = torch.sign(x @ v)
        loss = torch.nn.functional.softplus(-(y * net(x).squeeze(1))).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            w = naive.end_to_end(net)
            return float(torch.linalg.norm(w / w.norm() - v))

    for _ in range(50):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - started)


def graphed_seconds(device: torch.device, members: int, dtype: str, steps: int) -> float:
    """Seconds for `steps` steps of `members` members, metrics on the host at the end."""
    sweep = GraphedSweep(paper_specs(members, dtype), device)
    sweep.capture()
    sweep.run(sweep.block_steps)  # the first replay uploads the graph
    torch.cuda.synchronize(device)
    started = time.perf_counter()
    sweep.run(steps)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS, help="a multiple of 32")
    steps = parser.parse_args().steps
    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device on this machine (torch.cuda.is_available() is False); "
              "nothing measured")  # fmt: skip
        return
    device = torch.device("cuda")
    print(f"dirconv bench-gpu: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"paper run at depth 4, batch 1000, {steps} steps, CUDA graphs of 32 steps")  # fmt: skip
    difference = kernel_difference(device)
    verdict = "PASS" if difference <= CHECK_TOLERANCE else "FAIL"
    print(
        f"float64 metrics vs the CPU kernels, first {CHECK_STEPS} steps, 4 members: "
        f"max |difference| {difference:.2e} (target <= {CHECK_TOLERANCE:g}: {verdict})"
    )
    naive = naive_steps_per_second(device, 2000)
    print(f"hand-written loop on this GPU:  {naive:12,.0f} steps/s")
    for dtype in ("float32", "float64"):
        for members in MEMBERS:
            seconds = graphed_seconds(device, members, dtype, steps)
            rate = members * steps / seconds
            per_step = seconds / steps * 1e6
            line = (f"{dtype} K = {members:5d}: {rate:14,.0f} member-steps/s  "
                    f"{per_step:8.1f} us per group step  ratio {rate / naive:8.1f}x")  # fmt: skip
            if members in TARGETS:
                unit, target = TARGETS[members]
                line += f"  (target >= {target:,} {unit}: {'PASS' if rate >= target else 'FAIL'})"
            print(line)


if __name__ == "__main__":
    main()
