"""`python -m bench.first_run`: how soon a fresh worker's first run steps after its claim.

A new user's first hour: `make run`, then the README's paper run. This starts a real API and
one real `python -m worker` on a fresh SQLite file, with the paper's run (depth 4, 20,000
steps) queued before the worker starts, and watches it over HTTP every POLL_SECONDS. It does
that twice on one numba cache directory: first empty (a fresh machine: the worker compiles its
kernels before it claims), then filled (every later start). For each it prints the worker's
warm-up (its `event=kernels_ready` line), the time from the claim to the first step the API
reports, against TARGET_SECONDS, and the run's length and speed.

The first step shows only once the worker flushes it (DIRCONV_FLUSH_SECONDS, 0.25 s), so the
claim-to-step figure is an upper bound. `--cache-dir DIR` uses (and keeps) DIR instead of a
temporary directory.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.load import _start, _stop, sqlite_env, start_api

PAPER_RUN = {"depth": 4, "tags": ["paper"]}
POLL_SECONDS = 0.01
TARGET_SECONDS = 1.0
"""Longest a fresh worker's first run may wait between its claim and its first step."""
TIMEOUT_SECONDS = 600.0


@dataclass
class FirstRun:
    warm_up: str  # the worker's kernels_ready fields, or "none logged"
    claim_to_step: float
    claim_to_end: float
    steps: int
    status: str


def measure(folder: Path, cache_dir: Path) -> FirstRun:
    """Queue the paper's run, start a worker, and time its first run from claim to end."""
    env = sqlite_env(folder, NUMBA_CACHE_DIR=str(cache_dir))
    processes: list = []
    try:
        base = start_api(folder, env, processes, TIMEOUT_SECONDS)
        experiment_id = httpx.post(f"{base}/experiments", json=PAPER_RUN).json()["id"]
        processes.append(_start(("worker",), env, folder / "worker.log"))
        run = _watch(f"{base}/experiments/{experiment_id}")
    finally:
        _stop(processes)
    log = (folder / "worker.log").read_text()
    ready = re.search(r"event=kernels_ready (seconds=\S+ compiled=\d+ loaded=\d+)", log)
    return FirstRun(
        warm_up=ready.group(1) if ready else "none logged",
        claim_to_step=run["stepping"] - run["claimed"],
        claim_to_end=run["ended"] - run["claimed"],
        steps=run["step"],
        status=run["status"],
    )


def _watch(url: str) -> dict:
    """Poll until the run ends; when it was first seen claimed, stepping and ended."""
    seen: dict = {}
    deadline = time.monotonic() + TIMEOUT_SECONDS
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline:
            run = client.get(url).json()
            now = time.monotonic()
            if run["status"] != "queued":
                seen.setdefault("claimed", now)
            if run["progress"]["step"] > 0:
                seen.setdefault("stepping", now)
            if run["status"] in ("succeeded", "failed", "canceled"):
                return {**seen, "ended": now, "step": run["progress"]["step"], **run}
            time.sleep(POLL_SECONDS)
    raise TimeoutError(f"{url} did not end within {TIMEOUT_SECONDS:g} s")


def _report(label: str, run: FirstRun) -> None:
    verdict = "ok" if run.claim_to_step <= TARGET_SECONDS else "OVER"
    speed = run.steps / run.claim_to_end
    print(
        f"{label}: warm-up {run.warm_up}; claim -> first step {run.claim_to_step:.2f} s "
        f"(target <= {TARGET_SECONDS:g} s: {verdict}); claim -> {run.status} "
        f"{run.claim_to_end:.2f} s ({run.steps} steps, {speed:,.0f} steps/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, help="numba cache directory to use and keep")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp) / "numba"
        for label in ("empty numba cache", "filled numba cache"):
            folder = Path(tmp) / label.replace(" ", "-")
            folder.mkdir()
            _report(label, measure(folder, cache_dir))


if __name__ == "__main__":
    main()
