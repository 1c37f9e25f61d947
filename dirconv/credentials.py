"""Tokens stored by `dirconv login`, one per API address, readable by the user alone.

The file is `<user config dir>/dirconv/credentials.json` (`$XDG_CONFIG_HOME/dirconv/` or
`~/.config/dirconv/` on Linux), mode 0600 in a 0700 folder. A token is kept under the address
it was checked against, so it is never sent to another server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from platformdirs import user_config_path

FILE_NAME = "credentials.json"
FILE_MODE = 0o600
FOLDER_MODE = 0o700


def credentials_path() -> Path:
    return user_config_path("dirconv") / FILE_NAME


def stored_token(url: str) -> str | None:
    """The token `dirconv login` stored for `url`, if any."""
    return _read().get(_key(url))


def store_token(url: str, token: str) -> Path:
    """Keep `token` for `url` (replacing an older one); returns the file written."""
    tokens = _read()
    tokens[_key(url)] = token
    return _write(tokens)


def forget_token(url: str) -> bool:
    """Drop the token stored for `url`; False when there was none."""
    tokens = _read()
    if tokens.pop(_key(url), None) is None:
        return False
    _write(tokens)
    return True


def _key(url: str) -> str:
    return url.rstrip("/")


def _read() -> dict[str, str]:
    try:
        tokens = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(tokens, dict):
        return {}
    return {str(url): str(token) for url, token in tokens.items()}


def _write(tokens: dict[str, str]) -> Path:
    """Write to a private temporary file, then rename it over the old one: the secret is
    never readable by others, not even for a moment, and a crash leaves the old file whole."""
    path = credentials_path()
    path.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    temporary = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    os.fchmod(descriptor, FILE_MODE)  # O_CREAT's mode does not apply to a leftover file
    with os.fdopen(descriptor, "w") as stream:
        json.dump(tokens, stream, indent=2)
    os.replace(temporary, path)
    return path
