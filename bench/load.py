"""`make bench-load`: many concurrent clients against a real API while one real worker trains.

Starts `python -m service` (uvicorn on 127.0.0.1) and one `python -m worker` on a fresh
database, queues one long training run, measures the worker's unloaded speed (steps/s of that
run), then runs the client mix for a bounded time and request count: a share of the clients'
requests POST /experiments with small valid specs, the rest read metrics
(`GET /experiments/{id}/metrics?max_points=1000`) or list experiments (`GET /experiments`),
half and half. Metric reads pick one of SEEDED_RUNS finished runs of the default spec (20,000
steps, five metrics every step) or the live long run, uniformly.
It prints requests/s, failed and timed-out requests, latency percentiles and the worker's
loaded/unloaded speed ratio, each against its target, then stops all it started.

`python -m bench.load [--seconds 60] [--clients 50] [--backend sqlite|postgresql|both]`;
SQLite is a fresh file in a temporary directory, PostgreSQL a fresh database on
`--postgres-url`'s server (created and dropped; skipped under `both` when unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psycopg
from sqlalchemy import Engine, make_url, select

from core.db import make_engine, upgrade_schema
from core.models import Experiment

REPO_ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LONG_RUN_STEPS = 100_000_000
"""Steps of the run the worker trains throughout (never finishes within the bench)."""
SEEDED_RUNS = 10
"""Finished default-spec runs trained before the load, for the metric reads."""
SMALL_SPEC = {"depth": 2, "steps": 1000, "tags": ["bench-load"]}
REQUEST_TIMEOUT_SECONDS = 10.0
"""A request without a response after this long counts as timed out."""
TARGETS = {
    "failed": ("requests", 0, "<="),
    "timed_out": ("requests", 0, "<="),
    "p99": ("s", 2.0, "<="),
    "worker_ratio": ("x", 0.5, ">="),
}


@dataclass
class Outcomes:
    """What the clients saw: one latency per answered request, counts of the rest."""

    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    timed_out: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def total(self) -> int:
        return len(self.latencies) + self.timed_out


# Processes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_stack(database_url: str, folder: Path) -> Iterator[tuple[str, list]]:
    """An API and one worker on `database_url`, logging into `folder`; yields the API's URL
    and the two processes."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        # The long run's size, allowed for the bench only.
        "DIRCONV_MAX_STEPS": str(LONG_RUN_STEPS),
        "DIRCONV_MAX_RUN_POINTS": str(6 * LONG_RUN_STEPS),
    }
    processes = []
    try:
        api = ("service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning")
        processes.append(_start(api, env, folder / "api.log"))
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, processes[0])
        processes.append(_start(("worker",), env, folder / "worker.log"))
        yield base, processes
    finally:
        _stop(processes)


def _start(args: tuple[str, ...], env: dict, log_path: Path) -> subprocess.Popen:
    with open(log_path, "w") as log:
        command = [sys.executable, "-m", *args]
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)


def _wait_healthy(base: str, api: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and api.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API did not come up")


def sqlite_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of an API and workers sharing a new, migrated SQLite file in
    `folder`."""
    database_url = f"sqlite:///{folder / 'dirconv.db'}"
    upgrade_schema(database_url)
    return {**os.environ, "DATABASE_URL": database_url, **extra}


def start_api(folder: Path, env: dict, processes: list[subprocess.Popen], timeout: float) -> str:
    """Start an API on a free port (its log in `folder`), add it to `processes` and wait until
    it answers; returns its base URL."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    api = ("service", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning")
    processes.append(_start(api, env, folder / "api.log"))
    _wait_healthy(base, processes[-1], timeout=timeout)
    return base


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    """A new, empty database on `server_url`'s server, dropped at the end."""
    url = make_url(server_url)
    name = f"dirconv_bench_{uuid.uuid4().hex[:12]}"
    with _admin(url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin(url) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(url) -> psycopg.Connection:  # noqa: ANN001
    return psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password,
        dbname=url.database, autocommit=True, connect_timeout=5,
    )  # fmt: skip


def postgres_reachable(server_url: str) -> bool:
    try:
        _admin(make_url(server_url)).close()
    except psycopg.OperationalError:
        return False
    return True


# The worker's speed


def _progress(db: Engine, experiment_id: int) -> tuple[float, int]:
    with db.connect() as connection:
        step = connection.scalar(
            select(Experiment.progress_step).where(Experiment.id == experiment_id)
        )
    return time.monotonic(), step or 0


def _wait_progress(db: Engine, experiment_id: int, above: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while _progress(db, experiment_id)[1] <= above:
        if time.monotonic() > deadline:
            raise RuntimeError(f"experiment {experiment_id} made no progress past step {above}")
        time.sleep(0.05)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_use(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process (Linux /proc; zeros elsewhere)."""
    try:
        return {name: _cpu_seconds(pid) for name, pid in pids.items()}
    except OSError:
        return dict.fromkeys(pids, 0.0)


def _create(base: str, spec: dict) -> int:
    response = httpx.post(f"{base}/experiments", json=spec, timeout=30)
    if response.status_code != 201:
        raise RuntimeError(f"POST /experiments: {response.status_code} {response.text[:300]}")
    return response.json()["id"]


def _seed(base: str, db: Engine, timeout: float = 300.0) -> list[int]:
    """SEEDED_RUNS default-spec runs, trained to the end by the worker."""
    ids = [_create(base, {}) for _ in range(SEEDED_RUNS)]
    done = select(Experiment.status).where(Experiment.id.in_(ids))
    deadline = time.monotonic() + timeout
    while True:
        with db.connect() as connection:
            statuses = set(connection.scalars(done))
        if statuses == {"succeeded"}:
            return ids
        if statuses & {"failed", "canceled"} or time.monotonic() > deadline:
            raise RuntimeError(f"seed runs ended {statuses}")
        time.sleep(0.1)


def steps_per_second(before: tuple[float, int], after: tuple[float, int]) -> float:
    return (after[1] - before[1]) / (after[0] - before[0])


# The clients


async def _client(
    http: httpx.AsyncClient, read_ids: list[int], post_share: float, stop: dict, out: Outcomes
) -> None:
    chance = random.Random()
    while time.monotonic() < stop["at"] and out.total() < stop["requests"]:
        kind = _pick(chance, post_share)
        started = time.monotonic()
        try:
            response = await _request(http, kind, chance.choice(read_ids))
        except httpx.TimeoutException:
            out.timed_out += 1
            continue
        except httpx.HTTPError as exc:
            response = None
            _count(out.errors, type(exc).__name__)
        out.latencies.append(time.monotonic() - started)
        _count(out.by_kind, kind)
        if response is None or response.status_code >= 400:
            out.failed += 1
            if response is not None:
                _count(out.errors, f"HTTP {response.status_code}")


def _pick(chance: random.Random, post_share: float) -> str:
    if chance.random() < post_share:
        return "post"
    return chance.choice(("metrics", "list"))


async def _request(http: httpx.AsyncClient, kind: str, read_id: int) -> httpx.Response:
    if kind == "post":
        return await http.post("/experiments", json=SMALL_SPEC)
    if kind == "metrics":
        return await http.get(f"/experiments/{read_id}/metrics", params={"max_points": 1000})
    return await http.get("/experiments")


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


async def _load(base: str, read_ids: list[int], args: argparse.Namespace) -> tuple[Outcomes, float]:
    out = Outcomes()
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as http:
        started = time.monotonic()
        stop = {"at": started + args.seconds, "requests": args.max_requests}
        clients = [_client(http, read_ids, args.post_share, stop, out) for _ in range(args.clients)]
        await asyncio.gather(*clients)
    return out, time.monotonic() - started


# Report


def _verdict(key: str, value: float) -> str:
    unit, target, sense = TARGETS[key]
    ok = value >= target if sense == ">=" else value <= target
    return f"target {sense} {target:,} {unit}: {'PASS' if ok else 'FAIL'}"


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _report(out: Outcomes, seconds: float, unloaded: float, loaded: float) -> bool:
    latencies = np.array(out.latencies or [float("nan")])
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    ratio = loaded / unloaded
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(out.by_kind.items()))
    print(f"requests      {out.total():8d} in {seconds:.1f} s  ({kinds})")
    print(f"requests/s    {out.total() / seconds:8.1f}")
    print(f"failed        {out.failed:8d}  {_verdict('failed', out.failed)}  {out.errors or ''}")
    print(f"timed out     {out.timed_out:8d}  {_verdict('timed_out', out.timed_out)}")
    print(f"latency p50   {p50:8.3f} s")
    print(f"latency p95   {p95:8.3f} s")
    print(f"latency p99   {p99:8.3f} s  {_verdict('p99', p99)}")
    print(f"worker        {unloaded:8,.0f} steps/s unloaded, {loaded:,.0f} loaded")
    print(f"worker ratio  {ratio:8.2f}  {_verdict('worker_ratio', ratio)}")
    verdicts = [
        ("failed", out.failed), ("timed_out", out.timed_out), ("p99", p99),
        ("worker_ratio", ratio),
    ]  # fmt: skip
    return all(_verdict(key, value).endswith("PASS") for key, value in verdicts)


def run(database_url: str, args: argparse.Namespace) -> bool:
    """One bench on `database_url` (an empty database); True when every target passes."""
    upgrade_schema(database_url)
    db = make_engine(database_url)
    mix = f"{args.clients} clients, {args.post_share:.0%} POST"
    bound = f"{args.seconds:g} s or {args.max_requests:,} requests"
    print(f"\n## {db.dialect.name}: {mix}, {bound}; load {_load_average()}")
    folder = tempfile.TemporaryDirectory()
    with folder as logs, running_stack(database_url, Path(logs)) as (base, processes):
        pids = {"api": processes[0].pid, "worker": processes[1].pid, "clients": os.getpid()}
        read_ids = _seed(base, db)
        spec = {"depth": 2, "steps": LONG_RUN_STEPS, "log_every": 1, "tags": ["bench-long"]}
        long_run = _create(base, spec)
        _wait_progress(db, long_run, above=0)
        read_ids.append(long_run)
        before_quiet = _progress(db, long_run)
        time.sleep(args.unloaded_seconds)  # the measured span itself, not a wait for an event
        before_load, cpu_before = _progress(db, long_run), _cpu_use(pids)
        out, seconds = asyncio.run(_load(base, read_ids, args))
        cpu = {k: v - cpu_before[k] for k, v in _cpu_use(pids).items()}
        unloaded = steps_per_second(before_quiet, before_load)
        loaded = steps_per_second(before_load, _progress(db, long_run))
        passed = _report(out, seconds, unloaded, loaded)
        shares = ", ".join(f"{name} {used / seconds:.0%}" for name, used in cpu.items())
        print(f"CPU under load (of one core): {shares}")
        _show_log_warnings(Path(logs))
    db.dispose()
    print(f"# load at the end {_load_average()}")
    return passed


def _show_log_warnings(folder: Path) -> None:
    for log in sorted(folder.glob("*.log")):
        lines = [line for line in log.read_text().splitlines() if "failed" in line or "locked"
                 in line or "unavailable" in line or "Traceback" in line]  # fmt: skip
        print(f"{log.stem} log: {len(lines)} warning lines" + "".join(
            f"\n    {line[:160]}" for line in lines[:5]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="a database on the server")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after these")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--post-share", type=float, default=0.2)
    parser.add_argument("--unloaded-seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"# bench-load: {os.cpu_count()} CPUs, load {_load_average()}")
    passed = True
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            passed &= run(f"sqlite:///{tmp}/bench.db", args)
    if args.backend == "postgresql" or (
        args.backend == "both" and postgres_reachable(args.postgres_url)
    ):
        with fresh_postgres(args.postgres_url) as url:
            passed &= run(url, args)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
