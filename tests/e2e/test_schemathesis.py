"""Schemathesis against a real `python -m service` over HTTP, on each backend: no answer is a
5xx, and every answer is one the OpenAPI schema documents (status, content type, body).

Runs Schemathesis's own engine (its examples, coverage and fuzzing phases, as its CLI does):
its pytest plugin does not run under pytest 9 (it sets `request.node._nodeid`)."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from sqlalchemy import update

from core.db import make_engine, session_scope
from core.models import Token
from service import tokens
from service.tokens import Role
from tests.e2e.stack import Stack
from tests.tokens import bearer

MAX_EXAMPLES = 25
"""Cases the fuzzing phase draws per operation; the examples and coverage phases add more."""
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]
SEEDED = [
    {"name": "flow", "optimizer": "flow", "dtype": "float64", "steps": 100},
    {"init": "balanced", "init_scale": 0.5, "steps": 100},
]
"""Runs that exist before fuzzing, so small generated ids find something to read."""
FUZZER_TOKEN_ID = 1_999_999_937


def _config(base_url: str, headers: dict[str, str]) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20_260_101,
            "base-url": base_url,
            "headers": headers,
            "request-timeout": 30,
            "cache": {"enabled": False},
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "allow-x00": True,
                "no-shrink": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    )


def _run(stack: Stack, headers: dict[str, str]) -> tuple[Counter[str], list[str]]:
    """Cases run per operation, and a line for each failed check or engine error."""
    config = _config(stack.url, headers)
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json", config=config)
    cases, problems = Counter(), []
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases[event.recorder.label] += len(event.recorder.cases)
            problems += [
                f"{event.recorder.label}: {check.name}: {check.failure_info.failure.title}"
                f"\n{check.failure_info.code_sample}"
                for checks in event.recorder.checks.values()
                for check in checks
                if check.status == Status.FAILURE and check.failure_info is not None
            ]
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"engine error: {event!r}")
    return cases, problems


def _admin_headers(database_url: str) -> dict[str, str]:
    """An admin token's header; the token's id is out of reach of generated ids, so fuzzing
    `DELETE /tokens/{id}` cannot revoke it."""
    engine = make_engine(database_url)
    with session_scope(engine, write=True) as session:
        token, secret = tokens.create(session, "fuzzer", Role.ADMIN)
        session.execute(update(Token).where(Token.id == token.id).values(id=FUZZER_TOKEN_ID))
    engine.dispose()
    return bearer(secret)


@pytest.mark.slow
@pytest.mark.parametrize("auth", ["off", "tokens"])
def test_every_answer_is_documented_and_none_is_a_server_error(
    stack: Stack, database_url: str, auth: str
) -> None:
    # Small caps keep what generated POSTs store small; with no worker nothing trains.
    # Event streams of runs that never finish close after a moment (the client reconnects).
    stack.env.update(
        {
            "DIRCONV_MAX_BODY_BYTES": "65536",
            "DIRCONV_MAX_SWEEP_SIZE": "8",
            "DIRCONV_EVENTS_MAX_SECONDS": "0.2",
        }
    )
    stack.env.update(
        {"DIRCONV_AUTH": auth, "DIRCONV_RATE_LIMIT": "1e6", "DIRCONV_RATE_BURST": "1000000"}
    )
    headers = {"Content-Type": "application/json"}
    if auth == "tokens":
        headers.update(_admin_headers(database_url))
    stack.start_api()
    for spec in SEEDED:
        httpx.post(f"{stack.url}/experiments", json=spec, headers=headers).raise_for_status()
    sweep = {"grid": {"seed": [1, 2]}}
    httpx.post(f"{stack.url}/sweeps", json=sweep, headers=headers).raise_for_status()

    cases, problems = _run(stack, headers)

    print(f"schemathesis: {sum(cases.values())} cases")
    for label, count in sorted(cases.items()):
        print(f"  {count:5d}  {label}")
    paths = httpx.get(f"{stack.url}/openapi.json", headers=headers).json()["paths"]
    operations = {f"{method.upper()} {path}" for path, ops in paths.items() for method in ops}
    assert not problems, "\n".join(problems[:20])
    assert all(cases[label] > 0 for label in operations), cases
