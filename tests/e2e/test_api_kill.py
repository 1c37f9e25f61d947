"""The API SIGKILLed while clients create experiments: every acknowledged write survives a
restart, once; on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import signal
import threading

import httpx
from sqlalchemy import func, select

from core.models import Experiment
from tests.e2e.stack import Stack
from tests.waiting import wait_for

CLIENTS = 8
ACKS_BEFORE_KILL = 40


class Posters:
    """Client threads that create experiments with unique names until told to stop, keeping
    the spec of every creation the API acknowledged with a 201."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acknowledged: list[tuple[int, dict]] = []
        self.numbers = itertools.count()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._post_until_stopped) for _ in range(CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _post_until_stopped(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                number = next(self.numbers)
                spec = {"name": f"kill-{number}", "seed": number, "steps": 100 + number}
                try:
                    response = client.post("/experiments", json=spec)
                except httpx.HTTPError:
                    continue  # no answer: the write may or may not have happened
                if response.status_code == 201:
                    self.acknowledged.append((response.json()["id"], spec))


def test_sigkilled_api_keeps_every_acknowledged_creation_once(stack: Stack, db):
    api = stack.start_api()
    posters = Posters(stack.url)
    posters.start()
    try:
        wait_for(
            lambda: len(posters.acknowledged) >= ACKS_BEFORE_KILL,
            f"{ACKS_BEFORE_KILL} acknowledged creates",
        )
        api.send_signal(signal.SIGKILL)
        api.wait()
    finally:
        posters.join()
    stack.start_api()

    acknowledged = list(posters.acknowledged)
    ids = [experiment_id for experiment_id, _ in acknowledged]
    assert len(ids) >= ACKS_BEFORE_KILL
    assert len(set(ids)) == len(ids)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        for experiment_id, spec in acknowledged:
            stored = client.get(f"/experiments/{experiment_id}").json()
            assert stored["name"] == spec["name"]
            assert {key: stored["spec"][key] for key in spec} == spec
    doubled = select(Experiment.name).group_by(Experiment.name).having(func.count() > 1).limit(5)
    with db.connect() as connection:
        assert connection.scalars(doubled).all() == []


def _hold_write_lock(db):  # noqa: ANN001, ANN202
    """A driver connection in a transaction that keeps the API's writes out until commit."""
    raw = db.raw_connection()
    cursor = raw.cursor()
    if db.dialect.name == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")  # the engine set the driver to autocommit
    else:
        cursor.execute("LOCK TABLE experiments IN EXCLUSIVE MODE")
    return raw


def _healthz_status(url: str) -> int:
    return httpx.get(f"{url}/healthz", timeout=30).status_code


def test_requests_past_db_wait_seconds_get_503_with_retry_after(stack: Stack, db):
    stack.env.update({"DIRCONV_DB_CONCURRENCY": "1", "DIRCONV_DB_WAIT_SECONDS": "0.2"})
    stack.start_api()
    blocker = _hold_write_lock(db)
    try:
        with httpx.Client(base_url=stack.url, timeout=60) as client:
            # The POST takes the only slot, then waits for the lock held above.
            posted: list[httpx.Response] = []
            create = lambda: posted.append(client.post("/experiments", json={}))  # noqa: E731
            creation = threading.Thread(target=create)
            creation.start()
            wait_for(
                lambda: _healthz_status(stack.url) == 503, "/healthz to answer 503", timeout=30
            )
            queued = httpx.get(f"{stack.url}/healthz", timeout=30)
            blocker.commit()
            creation.join(timeout=60)
    finally:
        blocker.close()
    assert queued.status_code == 503
    assert queued.headers["Retry-After"] == "1"
    assert "database busy" in queued.json()["detail"]
    assert posted[0].status_code == 201
    assert _healthz_status(stack.url) == 200
