"""`make bench`: steps/s of the hand-written PyTorch loop against dirconv's worker path.

Measured in one run on this machine:
  (a) the paper's run at depth 4, 20,000 steps, metrics every step;
  (b) a 16-member sweep (depth 1-4 x seed 0-3), in aggregate member-steps/s.
"Worker path" is what a real worker does: claim from a SQLite database, train, write every
metric point and the progress, summarise, finish, as a long-lived worker that has served a
run before (warm statement cache and thread pools). It runs as shipped, on every core the
process may use (DIRCONV_THREADS' default), and again on one thread. The baseline is the
hand-written loop at its best: the faster of torch on one thread and on every core. The
profile splits the worker's wall time into training (the engine alone, no database, same
threads) and tracking (the rest), and the floor is the cost of just drawing 1,000 fresh
points per step on one thread.
Then (c): sweeps of 16, 64 and 256 members (depth 1-4 x 4, 16, 64 seeds), worker path, on one
thread, two threads and every core the process may use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sqlalchemy import delete  # noqa: E402

from core import lifecycle  # noqa: E402
from core.db import make_engine, session_scope, upgrade_schema  # noqa: E402
from core.models import MetricChunk  # noqa: E402
from core.settings import Settings, usable_cores  # noqa: E402
from core.spec import ExperimentSpec  # noqa: E402
from service import sweep_store  # noqa: E402
from service.schemas import SweepCreate  # noqa: E402
from worker import engine, kernels  # noqa: E402
from worker.__main__ import configure_process  # noqa: E402
from worker.loop import Worker  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NAIVE = Path(os.environ.get("DIRCONV_SHARED", REPO.parent / "shared")) / "reference/naive_sgd.py"
STEPS = 20_000
SWEEP_GRID = {"depth": [1, 2, 3, 4], "seed": [0, 1, 2, 3]}
REPEATS = 5
"""(a) and (b) take the fastest of this many rounds: their runs last a second or two, and on a
shared machine the spread between rounds is 10-20 %."""
SCALING_REPEATS = 3
SCALING_STEPS = 10_000
SCALING_SEEDS = (4, 16, 64)
"""(c): sweeps of depth 1-4 x this many seeds, SCALING_STEPS steps each."""
TARGETS = {
    "single": ("x naive", 50, ">="),
    "sweep": ("x naive", 90, ">="),
    "sweep_tracking": ("% over training alone", 15, "<="),
    "two_threads_64": ("x one thread", 1.8, ">="),
    "large_sweep": ("x the 16-member rate", 1.0, ">="),
}


def naive_steps_per_second(steps: int, threads: int = 1) -> float:
    command = [sys.executable, str(NAIVE), "--depth", "4", "--steps", str(steps)]
    command += ["--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])["steps_per_second"]


class Workers:
    """One SQLite database and one worker per thread count, kept for the whole benchmark as a
    worker process serves run after run (its statement cache and thread pools stay warm).
    Each measure queues fresh runs, and their points are dropped after it, untimed."""

    def __init__(self, directory: Path) -> None:
        url = f"sqlite:///{directory / 'bench.db'}"
        upgrade_schema(url)
        self.db = make_engine(url)
        self._workers: dict[int, Worker] = {}

    def single(self, steps: int, threads: int) -> float:
        """Seconds for a worker to claim, run and record the paper's depth-4 run."""
        with session_scope(self.db, write=True) as session:
            lifecycle.create_experiment(session, ExperimentSpec(depth=4, steps=steps))
        return self._run_one(threads)

    def sweep(self, steps: int, grid: dict | None = None, threads: int = 1) -> float:
        """Seconds for one worker to claim, run and record a sweep (default: the 16 members)."""
        request = SweepCreate(base={"steps": steps}, grid=grid or SWEEP_GRID)
        with session_scope(self.db, write=True) as session:
            sweep_store.create_sweep(session, request, sweep_store.expand(request, Settings()))
        return self._run_one(threads)

    def _run_one(self, threads: int) -> float:
        worker = self._workers.get(threads) or Worker(self.db, Settings(threads=threads))
        self._workers[threads] = worker
        started = time.perf_counter()
        worker.run_one()
        seconds = time.perf_counter() - started
        with self.db.begin() as connection:
            connection.execute(delete(MetricChunk))
        return seconds


def scaling(
    workers: Workers, steps: int, threads: list[int], repeats: int
) -> dict[tuple[int | str, int], float]:
    """Worker member-steps/s of each (members, threads) sweep of (c), and training alone's
    for the 64-member sweep (key ("training", threads)), the fastest of `repeats` rounds."""
    seconds: dict[tuple[int | str, int], list[float]] = {}
    for _ in range(repeats):
        for seeds in SCALING_SEEDS:
            grid = {"depth": SWEEP_GRID["depth"], "seed": list(range(seeds))}
            for count in threads:
                taken = workers.sweep(steps, grid, count)
                seconds.setdefault((4 * seeds, count), []).append(taken)
        for count in threads:
            taken = engine_only(_members(steps, 16), count)
            seconds.setdefault(("training", count), []).append(taken)
    return {(members, count): 64 * steps / min(times) if members == "training"
            else members * steps / min(times)
            for (members, count), times in seconds.items()}  # fmt: skip


def _members(steps: int, seeds: int) -> list[ExperimentSpec]:
    return [ExperimentSpec(steps=steps, depth=d, seed=s) for d in SWEEP_GRID["depth"]
            for s in range(seeds)]  # fmt: skip


def fastest(measures: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """The fastest of `repeats` rounds of each measure, the measures alternated in each round:
    a loaded machine only ever adds time, and alternation spreads its bursts over all."""
    seconds: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(repeats):
        for name, measure in measures.items():
            seconds[name].append(measure())
    return {name: min(times) for name, times in seconds.items()}


def engine_only(specs: list[ExperimentSpec], threads: int = 1) -> float:
    started = time.perf_counter()
    engine.run_group(specs, lambda blocks: [True] * len(blocks), threads=threads)
    return time.perf_counter() - started


def sampling_floor(steps: int, batch: int = 1000) -> float:
    """Seconds to draw `steps` fresh batches of `batch` points on the circle, labels included."""
    x, y, teacher = np.empty((2, batch), np.float32), np.empty(batch, np.float32), np.eye(2)[1]
    kernels.fill_batch(x, y, teacher, np.uint64(1), 0, kernels.UNIFORM_SPHERE)
    started = time.perf_counter()
    _draw(x, y, teacher, steps)
    return time.perf_counter() - started


def _draw(x, y, teacher, steps):  # noqa: ANN001, ANN202
    for step in range(steps):
        kernels.fill_batch(x, y, teacher, np.uint64(1), step, kernels.UNIFORM_SPHERE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="(a), (b): fastest of")
    parser.add_argument("--scaling-repeats", type=int, default=SCALING_REPEATS, help="(c)")
    args = parser.parse_args()
    steps, repeats, cores = args.steps, args.repeats, usable_cores()
    configure_process(Settings(torch_threads=1))  # as `python -m worker` does
    threads = sorted({1, 2, cores})
    members = _members(steps, len(SWEEP_GRID["seed"]))
    paper = [ExperimentSpec(depth=4, steps=steps)]
    engine_only([ExperimentSpec(depth=4, steps=50)], cores)  # compile the kernels, untimed
    with tempfile.TemporaryDirectory() as directory:
        workers = Workers(Path(directory))
        for count in threads:  # a worker's first run, untimed, as in a long-lived worker
            workers.single(50, count)
        measures = {
            "naive": lambda: steps / naive_steps_per_second(steps),
            "naive_cores": lambda: steps / naive_steps_per_second(steps, cores),
            "single": lambda: workers.single(steps, cores),
            "single_one": lambda: workers.single(steps, 1),
            "single_engine": lambda: engine_only(paper, cores),
            "sweep": lambda: workers.sweep(steps, threads=cores),
            "sweep_one": lambda: workers.sweep(steps, threads=1),
            "sweep_engine": lambda: engine_only(members, cores),
            "sweep_engine_one": lambda: engine_only(members, 1),
        }
        if cores == 1:
            del measures["naive_cores"]
        best = fastest(measures, repeats)
        rates = {name: steps / seconds for name, seconds in best.items()}
        _report(steps, rates, best, cores, size=len(members), repeats=repeats)
        scaling_steps = max(1, steps * SCALING_STEPS // STEPS)
        rates = scaling(workers, scaling_steps, threads, args.scaling_repeats)
        _report_scaling(rates, threads, scaling_steps, args.scaling_repeats)


def _verdict(key: str, value: float) -> str:
    unit, target, sense = TARGETS[key]
    ok = value >= target if sense == ">=" else value <= target
    return f"(target {sense} {target:g} {unit}: {'PASS' if ok else 'FAIL'})"


def _report(
    steps: int,
    rates: dict[str, float],
    seconds: dict[str, float],
    cores: int,
    size: int,
    repeats: int,
) -> None:
    naive = max(rates["naive"], rates.get("naive_cores", 0.0))
    single, single_one = rates["single"], rates["single_one"]
    sweep, sweep_one = size * rates["sweep"], size * rates["sweep_one"]
    tracking = 100 * (seconds["sweep"] - seconds["sweep_engine"]) / seconds["sweep_engine"]
    engine_one = seconds["sweep_engine_one"]
    tracking_one = 100 * (seconds["sweep_one"] - engine_one) / engine_one
    floor = sampling_floor(steps)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    naive_cores = f", {rates['naive_cores']:.0f} on {cores} threads" if cores > 1 else ""
    lines = [
        f"dirconv bench: {steps} steps, batch 1000, worker on {cores} thread(s) (the default) "
        f"and on 1, torch {torch.__version__}, fastest of {repeats} alternated rounds each, "
        f"load {load}",
        f"naive reference loop (depth 4): {rates['naive']:.0f} steps/s on 1 thread"
        f"{naive_cores}; baseline {naive:.0f}",
        f"(a) worker, paper run at depth 4:    {single:10.0f} steps/s   "
        f"ratio {single / naive:5.1f}x  {_verdict('single', single / naive)}",
        f"    on one thread:                   {single_one:10.0f} steps/s   "
        f"ratio {single_one / naive:5.1f}x",
        f"(b) worker, {size}-member sweep:       {sweep:10.0f} member-steps/s   "
        f"ratio {sweep / naive:5.1f}x  {_verdict('sweep', sweep / naive)}",
        f"    on one thread:                   {sweep_one:10.0f} member-steps/s   "
        f"ratio {sweep_one / naive:5.1f}x",
        f"(b) worker wall over training alone: {tracking:+.1f} %  "
        f"{_verdict('sweep_tracking', tracking)}",
        f"    on one thread (the writer has a core to itself): {tracking_one:+.1f} %  "
        f"{_verdict('sweep_tracking', tracking_one)}",
        _profile("(a)", seconds["single_engine"], seconds["single"]),
        _profile("(b)", seconds["sweep_engine"], seconds["sweep"])
        + f"; 4 data streams shared by {size} members",
        f"floor: drawing 1000 fresh points per step alone: {steps / floor:.0f} steps/s "
        f"({floor / steps * 1e6:.1f} us/step on one thread)",
    ]
    print("\n".join(lines))


def _profile(label: str, training: float, worker: float) -> str:
    return (
        f"profile {label}: training {training:.3f} s, tracking (metric writes, progress, "
        f"summary) {worker - training:.3f} s of {worker:.3f} s"
    )


def _report_scaling(
    rates: dict[tuple[int | str, int], float], threads: list[int], steps: int, repeats: int
) -> None:
    print(f"(c) worker, sweeps of depth 1-4 x seeds, {steps} steps, member-steps/s by threads "
          f"(fastest of {repeats}):")  # fmt: skip
    for members in sorted({m for m, _ in rates if isinstance(m, int)}):
        cells = "  ".join(f"{t} thread(s) {rates[members, t]:9.0f}" for t in threads)
        print(f"    {members:4d} members: {cells}")
    if 2 in threads and (64, 2) in rates:
        speedup = rates[64, 2] / rates[64, 1]
        print(f"    64 members, 2 threads over 1: {speedup:.2f}x  "
              f"{_verdict('two_threads_64', speedup)}")  # fmt: skip
        alone = rates["training", 2] / rates["training", 1]
        print(f"    the same, training alone (no worker, no writes): {alone:.2f}x")
    most = threads[-1]
    ratio = rates[256, most] / rates[16, most]
    print(f"    256 members over 16, {most} thread(s): {ratio:.2f}x  "
          f"{_verdict('large_sweep', ratio)}")  # fmt: skip


if __name__ == "__main__":
    main()
