"""`make bench-store`: the packed metric store against one-row-per-point, in one database.

Measures, in one run: ingest points/s through the worker's writer (MetricBuffer ->
queue.record_progress), full-history reads over HTTP (a real uvicorn on localhost) of 100k-
and 1M-step series, a 1,000-point downsampled read of the 1M-step series, the same operations
on a one-row-per-point table in the same database (served by the pre-#5 read code), and the
tracking overhead of a 100,000-step training run logging its five metrics every step.

`python -m bench.store [--database-url URL] [--skip-training]`; the default database is a
fresh SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import orjson
import torch
from fastapi import FastAPI
from sqlalchemy import Column, Double, Engine, Integer, MetaData, String, Table, insert, select

from core import lifecycle, metric_store
from core.db import make_engine, upgrade_schema
from core.models import Experiment
from core.settings import Settings
from core.spec import METRIC_NAMES, ExperimentSpec
from core.status import Status
from dirconv.client import Client
from service.api.deps import ReadSession
from service.main import create_app
from service.schemas import MetricsRead, Series
from worker import engine as training
from worker import queue
from worker.engine import MetricBlock
from worker.loop import Member, MetricBuffer

BLOCK_STEPS = 1024
"""Steps per synthetic metric block, as the engine hands them over at full speed."""
BASELINE_BATCH = 50_000
"""Rows per INSERT transaction for the one-row-per-point table (the worker's flush size)."""
TRAINING_STEPS = 100_000
TARGETS = {
    "ingest": ("points/s", 1_000_000, ">="),
    "read_100k": ("ms", 50, "<="),
    "read_1m": ("ms", 400, "<="),
    "downsampled_1m": ("ms", 20, "<="),
    "overhead": ("%", 5, "<="),
    "aggregate": ("ms", 1000, "<="),
    "arrow_1m": ("ms", 60, "<="),
    "arrow_speedup": ("x", 5, ">="),
    "arrow_compare": ("ms", 300, "<="),
}
AGGREGATE_RUNS = 1000
AGGREGATE_STEPS = 20_001
COMPARE_RUNS, COMPARE_POINTS = 500, 10_000
"""The compare read of the Arrow section: this many runs of this many points each."""

per_point = Table(
    "bench_metric_points",
    MetaData(),
    Column("experiment_id", Integer, primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("value", Double),
)


def create_bench_app() -> FastAPI:
    """The API plus the pre-#5 read path over the one-row-per-point table (for uvicorn)."""
    app = create_app()

    @app.get("/bench/per-point/{experiment_id}/metrics", response_model=MetricsRead)
    def read_per_point(
        session: ReadSession, experiment_id: int, names: str, max_points: int | None = None
    ) -> MetricsRead:
        series = {
            name: _per_point_series(session, experiment_id, name, max_points)
            for name in names.split(",")
        }
        return MetricsRead(experiment_id=experiment_id, series=series)

    return app


def _per_point_series(session, experiment_id: int, name: str, max_points: int | None) -> Series:
    """The read code of revision 0001, unchanged apart from the table."""
    query = select(per_point.c.step, per_point.c.value).where(
        per_point.c.experiment_id == experiment_id, per_point.c.name == name
    )
    rows = session.execute(query.order_by(per_point.c.step)).all()
    if max_points is not None and len(rows) > max_points:
        keep = np.unique(np.linspace(0, len(rows) - 1, max_points).round().astype(int))
        rows = [rows[i] for i in keep.tolist()]
    return Series(
        steps=[step for step, _ in rows],
        values=[float("nan") if value is None else value for _, value in rows],
    )


# Ingest


def _synthetic(steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(steps)
    return {name: np.cumsum(rng.normal(size=steps)) for name in METRIC_NAMES}


BENCH_WORKER = "bench"


def _new_experiment(db: Engine, steps: int) -> int:
    """A running experiment held by the bench's worker (attempt 1), as if claimed."""
    row = {"name": "bench", "status": Status.RUNNING, "spec": {}, "total_steps": steps,
           "worker_id": BENCH_WORKER, "attempts": 1}  # fmt: skip
    with db.begin() as connection:
        return connection.execute(insert(Experiment).returning(Experiment.id), row).scalar_one()


def _buffer(db: Engine, experiment_id: int, spec: ExperimentSpec) -> tuple[MetricBuffer, Member]:
    member = Member(lifecycle.Lease(experiment_id, BENCH_WORKER, 1), spec)
    return MetricBuffer(db, [member], Settings()), member


def ingest_packed(db: Engine, experiment_id: int, series: dict[str, np.ndarray]) -> float:
    """Seconds to push every point through MetricBuffer as the worker does (default flush
    settings: DIRCONV_FLUSH_POINTS, DIRCONV_FLUSH_SECONDS)."""
    steps = np.arange(len(next(iter(series.values()))), dtype=np.int64)
    buffer, member = _buffer(db, experiment_id, ExperimentSpec(steps=len(steps)))
    started = time.perf_counter()
    for start in range(0, len(steps), BLOCK_STEPS):
        part = slice(start, start + BLOCK_STEPS)
        end = min(start + BLOCK_STEPS, len(steps))
        member.add(MetricBlock(steps[part], {n: v[part] for n, v in series.items()}, end))
        if buffer.due():
            buffer.flush()
    buffer.flush_now()
    buffer.close()
    return time.perf_counter() - started


def ingest_per_point(db: Engine, experiment_id: int, values: np.ndarray) -> float:
    """Seconds to insert one metric as one row per point, in the worker's flush-sized batches."""
    started = time.perf_counter()
    for start in range(0, len(values), BASELINE_BATCH):
        rows = [
            {"experiment_id": experiment_id, "name": "directional_error", "step": s, "value": v}
            for s, v in enumerate(values[start : start + BASELINE_BATCH].tolist(), start)
        ]
        with db.begin() as connection:
            connection.execute(insert(per_point), rows)
    return time.perf_counter() - started


# Reads over HTTP


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(database_url: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    command = [
        sys.executable,
        *("-m", "uvicorn", "--factory", "bench.store:create_bench_app"),
        *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        "--no-access-log",
    ]
    env = {**os.environ, "DATABASE_URL": database_url}
    server = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[1])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server, base
        except httpx.TransportError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("uvicorn did not come up")


def timed_get(client: httpx.Client, url: str, params: dict, repeats: int) -> tuple[float, bytes]:
    """Median milliseconds from request to the last byte of the body, after one warm-up."""
    body = client.get(url, params=params).raise_for_status().content
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        body = client.get(url, params=params).raise_for_status().content
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), body


def _points(body: bytes) -> tuple[int, list]:
    series = orjson.loads(body)["series"]["directional_error"]
    return len(series["steps"]), series["values"]


# Tracking overhead


def training_overhead(db: Engine, rounds: int = 5) -> dict[str, float]:
    """The same 100k-step run, streaming its metrics through the worker's buffer or keeping
    them in memory and writing them once at the end, alternated `rounds` times; the fastest
    of each (wall and CPU time) is compared, as the machine's load only ever adds time."""
    torch.set_num_threads(1)
    spec = ExperimentSpec(steps=TRAINING_STEPS)
    streamed, at_end, in_writer = [], [], []
    for _ in range(rounds):
        at_end.append(_end_logged_run(db, spec))
        (wall, cpu), writer = _streamed_run(db, spec)
        streamed.append((wall, cpu))
        in_writer.append(100 * writer / wall)
    wall_a, wall_b = min(w for w, _ in streamed), min(w for w, _ in at_end)
    cpu_a, cpu_b = min(c for _, c in streamed), min(c for _, c in at_end)
    return {
        "streamed_s": wall_a,
        "at_end_s": wall_b,
        "wall_overhead": 100 * (wall_a - wall_b) / wall_b,
        "cpu_overhead": 100 * (cpu_a - cpu_b) / cpu_b,
        "writer_share": min(in_writer),
    }


def _streamed_run(db: Engine, spec: ExperimentSpec) -> tuple[tuple[float, float], float]:
    buffer, member = _buffer(db, _new_experiment(db, spec.steps), spec)
    in_writer = 0.0

    def on_block(block: MetricBlock) -> bool:
        nonlocal in_writer
        started = time.perf_counter()
        member.add(block)
        if buffer.due():
            buffer.flush()
        in_writer += time.perf_counter() - started
        return member.verdict == queue.RUNNING

    def finish() -> None:
        buffer.flush_now()
        buffer.close()

    return _timed(lambda: _run_then(spec, on_block, finish)), in_writer


def _end_logged_run(db: Engine, spec: ExperimentSpec) -> tuple[float, float]:
    experiment_id, blocks = _new_experiment(db, spec.steps), []

    def write_all() -> None:
        steps = np.concatenate([block.steps for block in blocks])
        series = {
            name: (steps, np.concatenate([block.values[name] for block in blocks]))
            for name in blocks[0].values
        }
        lease = lifecycle.Lease(experiment_id, BENCH_WORKER, 1)
        queue.record_progress(db, [queue.Progress(lease, series, spec.steps)])

    return _timed(lambda: _run_then(spec, lambda block: blocks.append(block) or True, write_all))


def _run_then(spec: ExperimentSpec, on_block: Callable, then: Callable) -> None:
    training.run(spec, on_block)
    then()


def _timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of `action`."""
    started, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - started, time.process_time() - cpu


# Report


def _verdict(key: str, value: float) -> str:
    unit, target, sense = TARGETS[key]
    ok = value >= target if sense == ">=" else value <= target
    return f"target {sense} {target:,} {unit}: {'PASS' if ok else 'MISS'}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--skip-training", action="store_true", help="skip the overhead run")
    parser.add_argument(
        "--only-aggregate", action="store_true", help="only the 1,000-run aggregate line"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        if args.only_aggregate:
            upgrade_schema(url)
            aggregate_only(url)
        else:
            run(url, not args.skip_training)


def run(database_url: str, with_training: bool) -> None:
    upgrade_schema(database_url)
    db = make_engine(database_url)
    per_point.create(db, checkfirst=True)
    print(f"# bench-store: {db.dialect.name}, {os.cpu_count()} CPUs, load {_load()}")
    print(f"# chunk rows of {4096} steps; every HTTP time is the median of repeats, warm\n")

    ids, per_point_ids = {}, {}
    print("## ingest")
    for steps, label in ((100_000, "100k"), (1_000_000, "1m")):
        series = _synthetic(steps)
        ids[label] = _new_experiment(db, steps)
        seconds = ingest_packed(db, ids[label], series)
        rate = 4 * steps / seconds
        line = f"packed, worker writer   {4 * steps:>9,} points (4 metrics x {label} steps)"
        print(f"{line}  {seconds:6.2f} s  {rate:12,.0f} points/s")
        per_point_ids[label] = ids[label]
        seconds_pp = ingest_per_point(db, ids[label], series["directional_error"])
        line = f"one row per point       {steps:>9,} points (1 metric x {label} steps)  "
        print(f"{line}  {seconds_pp:6.2f} s  {steps / seconds_pp:12,.0f} points/s")
    print(f"-> ingest {rate:,.0f} points/s; {_verdict('ingest', rate)}")
    print(f"   ratio packed / per-point: {rate / (steps / seconds_pp):.1f}x\n")

    aggregate_ids = _seed_runs(db)
    compare_ids = _compare_runs(db)
    server, base = start_server(database_url)
    try:
        _reads(base, ids, per_point_ids)
        _arrow_reads(base, ids["1m"], compare_ids)
        _aggregate(base, aggregate_ids)
    finally:
        server.terminate()
        server.wait(timeout=10)

    if with_training:
        print(f"\n## tracking overhead, {TRAINING_STEPS:,}-step run, its 5 metrics every step")
        result = training_overhead(db)
        print(
            f"streamed through MetricBuffer {result['streamed_s']:.2f} s, "
            f"logged only at the end {result['at_end_s']:.2f} s (fastest of 5 each, alternated)"
        )
        print(
            f"-> wall-time overhead {result['wall_overhead']:+.1f} %; "
            f"{_verdict('overhead', result['wall_overhead'])}"
        )
        print(
            f"   CPU-time overhead {result['cpu_overhead']:+.1f} %; time inside the writer "
            "(buffer + database, which the end-logged run spends too) "
            f"{result['writer_share']:.2f} %"
        )
    print(f"\n# load at the end {_load()}")
    db.dispose()


def _reads(base: str, ids: dict, per_point_ids: dict) -> None:
    print("## reads over HTTP (uvicorn on 127.0.0.1), names=directional_error")
    cases = [
        ("read_100k", "full history, 100k steps", "100k", {}, (9, 3)),
        ("read_1m", "full history, 1M steps", "1m", {}, (5, 2)),
        ("downsampled_1m", "1,000 points of 1M steps", "1m", {"max_points": 1000}, (21, 3)),
    ]
    with httpx.Client(base_url=base, timeout=120) as client:
        for key, label, size, extra, (repeats, repeats_pp) in cases:
            params = {"names": "directional_error", **extra}
            packed_ms, body = timed_get(
                client, f"/experiments/{ids[size]}/metrics", params, repeats
            )
            old_ms, old_body = timed_get(
                client, f"/bench/per-point/{per_point_ids[size]}/metrics", params, repeats_pp
            )
            count, values = _points(body)
            old_count, old_values = _points(old_body)
            if not extra:
                assert values == old_values, "the two layouts disagree"
            print(
                f"{label:28s} packed {packed_ms:8.1f} ms ({count:,} points, {len(body):,} B)"
                f"   per-point {old_ms:8.1f} ms ({old_count:,} points)"
                f"   ratio {old_ms / packed_ms:5.1f}x"
            )
            print(f"   -> {_verdict(key, packed_ms)}")


def aggregate_only(database_url: str) -> None:
    db = make_engine(database_url)
    print(f"# bench-store aggregate: {db.dialect.name}, {os.cpu_count()} CPUs, load {_load()}")
    aggregate_ids = _seed_runs(db)
    server, base = start_server(database_url)
    try:
        _aggregate(base, aggregate_ids)
    finally:
        server.terminate()
        server.wait(timeout=10)
    db.dispose()


def _seed_runs(db: Engine) -> list[int]:
    """AGGREGATE_RUNS runs of AGGREGATE_STEPS noisy directional_error points each."""
    rng = np.random.default_rng(0)
    steps = np.arange(AGGREGATE_STEPS)
    ids = [_new_experiment(db, AGGREGATE_STEPS) for _ in range(AGGREGATE_RUNS)]
    for experiment_id in ids:
        values = np.exp(rng.normal(-steps / 5000, 0.1))
        with db.begin() as connection:
            metric_store.write_points(
                connection, experiment_id, {"directional_error": (steps, values)}
            )
    return ids


def _compare_runs(db: Engine) -> list[int]:
    """COMPARE_RUNS experiments of COMPARE_POINTS directional_error points each."""
    steps = np.arange(COMPARE_POINTS, dtype=np.int64)
    ids = [_new_experiment(db, COMPARE_POINTS) for _ in range(COMPARE_RUNS)]
    with db.begin() as connection:
        for experiment_id in ids:
            values = np.exp(-steps / (experiment_id + 100.0))
            metric_store.write_points(
                connection, experiment_id, {"directional_error": (steps, values)}
            )
    return ids


def _aggregate(base: str, aggregate_ids: list[int]) -> None:
    print(f"\n## aggregate over HTTP: {AGGREGATE_RUNS:,} runs x {AGGREGATE_STEPS:,} steps")
    params = {
        "ids": ",".join(map(str, aggregate_ids)),
        "name": "directional_error",
        "max_points": 1000,
        "stats": "mean,std,min,max,median,q10,q25,q75,q90,gmean",
    }
    with httpx.Client(base_url=base, timeout=120) as client:
        elapsed_ms, body = timed_get(client, "/metrics/aggregate", params, 3)
    answer = orjson.loads(body)
    assert answer["n"][0] == AGGREGATE_RUNS, "every run must count at step 0"
    print(f"every stat, max_points=1000: {elapsed_ms:8.1f} ms ({len(answer['steps']):,} steps)")
    print(f"   -> {_verdict('aggregate', elapsed_ms)}")


# Arrow reads, to numpy arrays in the Python client


def _client_ms(action: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of `action` after one warm-up."""
    action()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _arrow_reads(base: str, run_1m: int, compare_ids: list[int]) -> None:
    print("\n## reads into numpy arrays in the Python client (dirconv.Client), Arrow vs JSON")
    arrow, js = Client(base, timeout=120, arrow=True), Client(base, timeout=120, arrow=False)
    with arrow, js:
        read = {c: (lambda c=c: c.metrics(run_1m, "directional_error")) for c in (arrow, js)}
        arrow_steps, arrow_values = read[arrow]()["directional_error"]
        json_steps, json_values = read[js]()["directional_error"]
        assert np.array_equal(arrow_steps, json_steps), "Arrow and JSON steps disagree"
        assert np.array_equal(arrow_values, json_values, equal_nan=True), "values disagree"
        arrow_ms, json_ms = _client_ms(read[arrow], 7), _client_ms(read[js], 3)
        print(f"1M-step series to numpy     Arrow {arrow_ms:8.1f} ms   JSON {json_ms:8.1f} ms"
              f"   ratio {json_ms / arrow_ms:5.1f}x  ({len(arrow_steps):,} points)")  # fmt: skip
        print(f"   -> {_verdict('arrow_1m', arrow_ms)}")
        print(f"   -> {_verdict('arrow_speedup', json_ms / arrow_ms)}")
        compared = arrow.compare(compare_ids)
        assert sum(len(steps) for steps, _ in compared.values()) == COMPARE_RUNS * COMPARE_POINTS
        compare_ms = _client_ms(lambda: arrow.compare(compare_ids), 5)
        print(f"compare {COMPARE_RUNS} runs x {COMPARE_POINTS:,} points   Arrow "
              f"{compare_ms:8.1f} ms")  # fmt: skip
        print(f"   -> {_verdict('arrow_compare', compare_ms)}")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
