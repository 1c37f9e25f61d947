"""`dirconv` against a real API process that asks for tokens: --token, DIRCONV_TOKEN,
`dirconv login` (a 0600 file, used afterwards) and one-line 401/403/429 errors."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from dirconv.cli import main
from dirconv.credentials import credentials_path
from tests.e2e.stack import REPO_ROOT


def _run(secured_api, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["--url", secured_api.url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _command(secured_api, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """`dirconv` as its own process: what a user sees, tracebacks included. Its config
    folder is the test's and it has no DIRCONV_TOKEN unless `env` gives one."""
    private = {"XDG_CONFIG_HOME": os.environ["XDG_CONFIG_HOME"], **env}
    inherited = {k: v for k, v in secured_api.stack.env.items() if k != "DIRCONV_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "dirconv.cli", "--url", secured_api.url, *args],
        cwd=REPO_ROOT,
        env={**inherited, **private},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_token_flag_and_environment_are_used(secured_api, capsys, monkeypatch):
    code, out, _ = _run(secured_api, capsys, "--token", secured_api.member, "whoami")
    assert (code, out.strip()) == (0, f"alice (member) at {secured_api.url}")
    monkeypatch.setenv("DIRCONV_TOKEN", secured_api.reader)
    code, out, _ = _run(secured_api, capsys, "whoami")
    assert (code, out.strip()) == (0, f"rita (reader) at {secured_api.url}")


def test_login_keeps_a_private_token_used_until_logout(secured_api, capsys):
    code, out, err = _run(secured_api, capsys, "--token", secured_api.member, "login")
    assert code == 0, err
    path = credentials_path()
    assert f"signed in to {secured_api.url} as alice (member)" in out and str(path) in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secured_api.member not in out + err
    code, out, _ = _run(secured_api, capsys, "submit", "--steps", "10", "--name", "logged-in")
    assert code == 0 and "submitted experiment" in out
    assert _run(secured_api, capsys, "logout")[1].strip() == f"signed out of {secured_api.url}"
    code, _, err = _run(secured_api, capsys, "whoami")
    assert code == 1 and err.startswith("error: not signed in (401)")


def test_login_reads_the_token_from_stdin_in_its_own_process(secured_api):
    done = _command(secured_api, "login", stdin=secured_api.reader + "\n")
    assert done.returncode == 0, done.stderr
    assert "as rita (reader)" in done.stdout and secured_api.reader not in done.stdout
    assert secured_api.reader in credentials_path().read_text()


def test_login_with_a_refused_token_keeps_nothing(secured_api, capsys):
    code, out, err = _run(secured_api, capsys, "--token", "made-up", "login")
    assert code == 1 and out == ""
    assert err.startswith("error: not signed in (401)") and err.count("\n") == 1
    assert not credentials_path().exists()


def test_401_403_and_429_are_one_line_and_exit_1(secured_api):
    cases = [
        ((), "error: not signed in (401): "),
        (("--token", secured_api.reader), "error: forbidden (403): "),
        (("--token", secured_api.crowded), "error: too many requests (429): "),
    ]
    # carol's quota is one active run: her first submission (queued, no worker) fills it.
    assert _command(secured_api, "--token", secured_api.crowded, "submit").returncode == 0
    for flags, start in cases:
        done = _command(secured_api, *flags, "submit", "--steps", "10")
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith(start) and done.stderr.count("\n") == 1, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
    assert "retry after" in done.stderr
