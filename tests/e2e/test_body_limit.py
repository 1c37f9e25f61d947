"""DIRCONV_MAX_BODY_BYTES against a real uvicorn: 413 before the body is parsed, whether its
size is declared (Content-Length) or only counted as it arrives (chunked)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import Stack, stopped_at_end

MIB = 1_048_576
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder: Path = tmp_path_factory.mktemp("body-limit")
    with stopped_at_end(Stack(folder, f"sqlite:///{folder / 'dirconv.db'}")) as stack:
        stack.start_api()
        yield stack


def _chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    yield b'{"name": "'
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)
    yield b'"}'


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:200]
    detail = response.json()["detail"]
    assert str(MIB) in detail and "DIRCONV_MAX_BODY_BYTES" in detail
    assert len(response.content) < 200


@pytest.mark.slow
def test_declared_body_over_the_default_limit_gets_413(api: Stack) -> None:
    body = b"".join(_chunks(10 * MIB))
    _assert_too_large(httpx.post(f"{api.url}/experiments", content=body, headers=JSON, timeout=30))


@pytest.mark.slow
def test_chunked_body_over_the_limit_gets_413(api: Stack) -> None:
    response = httpx.post(f"{api.url}/sweeps", content=_chunks(2 * MIB), headers=JSON, timeout=30)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    _assert_too_large(response)


@pytest.mark.slow
def test_chunked_body_within_the_limit_is_parsed(api: Stack) -> None:
    response = httpx.post(
        f"{api.url}/experiments", content=_chunks(MIB - 100), headers=JSON, timeout=30
    )
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]
    body = b'{"name": "chunked"}'
    created = httpx.post(f"{api.url}/experiments", content=iter([body[:5], body[5:]]), headers=JSON)
    assert created.status_code == 201 and created.json()["name"] == "chunked"
