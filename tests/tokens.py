"""A real API process that asks for tokens (DIRCONV_AUTH=tokens), and tokens made for it the
way an admin makes them: `python -m service tokens create` on the same database."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.stack import REPO_ROOT, Stack, stopped_at_end


@contextmanager
def api_with_tokens(folder: Path, **settings: str) -> Iterator[Stack]:
    """The API alone (no worker: runs stay queued) on a SQLite file in `folder`, with auth on
    and any other `DIRCONV_*` settings given; stopped when the block ends."""
    stack = Stack(folder, f"sqlite:///{folder / 'dirconv.db'}")
    stack.env.update({"DIRCONV_AUTH": "tokens", **settings})
    with stopped_at_end(stack) as running:
        running.start_api()
        yield running


def tokens_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m service tokens ARGS` on the stack's database, as an admin runs it."""
    command = [sys.executable, "-m", "service", "tokens", *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=stack.env, capture_output=True, text=True, timeout=120
    )


def create_token(stack: Stack, user: str, role: str) -> str:
    """A new token from the command line; it is printed alone on the last line of stdout."""
    created = tokens_cli(stack, "create", "--user", user, "--role", role)
    created.check_returncode()
    return created.stdout.strip().splitlines()[-1]


def bearer(secret: str) -> dict[str, str]:
    """The header that presents a token."""
    return {"Authorization": f"Bearer {secret}"}
