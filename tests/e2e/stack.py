"""Real `python -m service` and `python -m worker` processes on one database, logging to files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 120.0
"""How long the API may take to answer: imports alone take a minute on a starved machine."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """The API and any number of workers, sharing one database, logging to files."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DIRCONV_POLL_SECONDS": "0.1",
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[subprocess.Popen] = []
        self.log_files: list = []
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{args[0]}-{len(self.processes)}.log", "w")  # noqa: SIM115
        self.log_files.append(log)
        command = [sys.executable, "-m", *args]
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=log)
        self.processes.append(process)
        return process

    def start_api(self, host: str = "127.0.0.1") -> subprocess.Popen:
        process = self.start("service", "--host", host, "--port", str(self.port))
        wait_for(lambda: self._healthy(process), "the API to answer /healthz", STARTUP_SECONDS)
        return process

    def _healthy(self, process: subprocess.Popen) -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the API exited with {process.returncode} before answering")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return "\n".join(p.name + ":\n" + p.read_text() for p in self.tmp_path.glob("*.log"))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self.log_files:
            log.close()


@contextmanager
def stopped_at_end(stack: Stack) -> Iterator[Stack]:
    """Yield `stack`; then stop its processes, printing their logs if the block failed."""
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop_all()


@contextmanager
def api_and_worker(folder: Path) -> Iterator[Stack]:
    """An API and one worker on a SQLite file in `folder`, stopped when the block ends: for
    fixtures shared by a module's tests."""
    with stopped_at_end(Stack(folder, f"sqlite:///{folder / 'dirconv.db'}")) as running:
        running.start_api()
        running.start("worker")
        yield running
