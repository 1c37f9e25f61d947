"""`python -m bench.cancel`: how soon a running run is canceled after POST .../cancel.

The README promises a running run canceled by its worker "within a second"; the tests only
check that a cancel stops the run long before its end (with a bound ten times the promise,
so that a loaded CI machine does not fail them). This measures the promise itself: a real API
and one real `python -m worker` on a fresh SQLite file, default settings; ROUNDS times it
queues a long run, waits for its first progress, cancels it and polls every POLL_SECONDS
until the API reports it canceled. It prints each latency and the median and worst against
TARGET_SECONDS. Run it on a quiet machine: the figure is what a user waits.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.load import _start, _stop, sqlite_env, start_api

ROUNDS = 10
LONG_RUN = {"steps": 1_000_000, "tags": ["bench-cancel"]}
POLL_SECONDS = 0.01
TARGET_SECONDS = 1.0
"""Longest a running run may take to show as canceled after its cancel (the README's promise)."""
TIMEOUT_SECONDS = 120.0


def measure(folder: Path) -> list[float]:
    """Seconds from each POST .../cancel to the run read back as canceled."""
    env = sqlite_env(folder)
    processes: list = []
    try:
        base = start_api(folder, env, processes, TIMEOUT_SECONDS)
        processes.append(_start(("worker",), env, folder / "worker.log"))
        with httpx.Client(base_url=base, timeout=30) as client:
            return [_one_cancel(client) for _ in range(ROUNDS)]
    finally:
        _stop(processes)


def _one_cancel(client: httpx.Client) -> float:
    experiment_id = client.post("/experiments", json=LONG_RUN).json()["id"]
    _poll(client, experiment_id, lambda run: run["progress"]["step"] > 0)
    asked = time.monotonic()
    client.post(f"/experiments/{experiment_id}/cancel", json={}).raise_for_status()
    _poll(client, experiment_id, lambda run: run["status"] == "canceled")
    return time.monotonic() - asked


def _poll(client: httpx.Client, experiment_id: int, done) -> None:  # noqa: ANN001
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if done(client.get(f"/experiments/{experiment_id}").json()):
            return
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"run {experiment_id}: no change within {TIMEOUT_SECONDS:g} s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        latencies = measure(Path(tmp))
    worst = max(latencies)
    verdict = "ok" if worst <= TARGET_SECONDS else "OVER"
    print("cancel latencies: " + ", ".join(f"{seconds:.2f}" for seconds in latencies) + " s")
    print(
        f"median {statistics.median(latencies):.2f} s, worst {worst:.2f} s "
        f"(target <= {TARGET_SECONDS:g} s: {verdict})"
    )


if __name__ == "__main__":
    main()
