"""Train depth 1-4 on the paper's problem and print how fast each converges in direction.

make run &                     # API and a worker on http://127.0.0.1:8000
.venv/bin/python examples/depth_sweep.py
"""

from __future__ import annotations

import numpy as np

from dirconv import Client

DEPTHS = (1, 2, 3, 4)
STEPS = 10_000
TARGET = 1e-2


def main() -> None:
    with Client() as client:  # DIRCONV_URL, or http://127.0.0.1:8000
        runs = [client.submit(depth=d, steps=STEPS, log_every=10, tags=["example"]) for d in DEPTHS]
        client.wait_all([run["id"] for run in runs], progress=True)
        for depth, run in zip(DEPTHS, runs, strict=True):
            steps, errors = client.metrics(run["id"], ["directional_error"])["directional_error"]
            print(report_line(depth, steps, errors))


def report_line(depth: int, steps: np.ndarray, errors: np.ndarray) -> str:
    """One depth's final error and the first step where the error is within TARGET."""
    if not len(errors):
        return f"depth {depth}: no points logged"
    hit = np.flatnonzero(errors <= TARGET)
    if len(hit):
        reached = f"error <= {TARGET:g} from step {steps[hit[0]]}"
    else:
        reached = f"error still above {TARGET:g} after {steps[-1]} steps"
    return f"depth {depth}: final error {errors[-1]:.3g}, {reached}"


if __name__ == "__main__":
    main()
