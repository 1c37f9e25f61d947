"""Safe retries across processes: racing requests with one Idempotency-Key against a real API
create one run; the Python client sends the same key again when an answer is lost."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from dirconv import Client

RACERS = 8


def test_racing_requests_with_one_key_create_one_run(stack):
    stack.start_api()
    body = {"depth": 3, "steps": 10, "tags": ["race"]}
    headers = {"Idempotency-Key": "one-key-many-racers"}
    start = threading.Barrier(RACERS)

    def post(_: int) -> httpx.Response:
        start.wait()
        return httpx.post(f"{stack.url}/experiments", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(post, range(RACERS)))
    assert {answer.status_code for answer in answers} == {201}
    assert len({answer.json()["id"] for answer in answers}) == 1
    listed = httpx.get(f"{stack.url}/experiments?tag=race", timeout=30).json()
    assert listed["count"] == 1


class _LosesFirstAnswer(BaseHTTPRequestHandler):
    """Answers 503 to the first POST and 201 to the next, recording each key it saw."""

    keys: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server hook)
        self.rfile.read(int(self.headers["Content-Length"]))
        self.keys.append(self.headers["Idempotency-Key"])
        status, body = (503, {"detail": "busy"}) if len(self.keys) == 1 else (201, {"id": 7})
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def flaky_server():
    _LosesFirstAnswer.keys = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LosesFirstAnswer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize("submission", ["submit", "sweep"])
def test_the_client_retries_a_submission_with_the_same_key(flaky_server, submission):
    with Client(flaky_server) as client:
        if submission == "submit":
            created = client.submit(depth=2)
        else:
            created = client.sweep(grid={"depth": [1, 2]})
    assert created == {"id": 7}
    first, second = _LosesFirstAnswer.keys
    assert first == second and len(first) >= 32
