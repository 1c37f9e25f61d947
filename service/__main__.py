"""`python -m service [--host H --port P]`: upgrade the schema, then serve the API.
`python -m service tokens create|list|revoke`: manage API tokens (the first admin comes
from here; there is never a default credential)."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from datetime import datetime

import uvicorn
from sqlalchemy.orm import Session

from core.db import make_engine, session_scope, upgrade_schema
from core.settings import get_settings
from service import tokens
from service.main import create_app
from service.tokens import Role

TOKEN_COLUMNS = ("id", "user", "role", "created_at", "expires_at", "revoked_at")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tokens":
        return _tokens(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    upgrade_schema()
    app = create_app(listen_host=args.host)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    commands = parser.add_subparsers(dest="command")
    token_parser = commands.add_parser("tokens", help="create, list or revoke API tokens")
    actions = token_parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="print a new token, once, on the last line")
    create.add_argument("--user", required=True, type=_user)
    create.add_argument("--role", required=True, choices=[role.value for role in Role])
    create.add_argument("--expires-days", type=_expires_days)
    actions.add_parser("list", help="list tokens (never their secrets)")
    revoke = actions.add_parser("revoke", help="revoke one token by id, or a user's tokens")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int)
    which.add_argument("--user", type=_user)
    return parser


def _user(value: str) -> str:
    if not re.fullmatch(tokens.USER_PATTERN, value):
        raise argparse.ArgumentTypeError("1-100 characters of A-Z a-z 0-9 . _ @ + -")
    return value


def _expires_days(value: str) -> int:
    days = int(value) if value.isascii() and value.isdigit() else 0
    limit = get_settings().max_token_days
    if not 1 <= days <= limit:
        message = f"a whole number of days from 1 to {limit:,} (DIRCONV_MAX_TOKEN_DAYS)"
        raise argparse.ArgumentTypeError(message)
    return days


def _tokens(args: argparse.Namespace) -> int:
    upgrade_schema()
    engine = make_engine()
    try:
        with session_scope(engine, write=args.action != "list") as session:
            return _TOKEN_ACTIONS[args.action](session, args)
    finally:
        engine.dispose()


def _create(session: Session, args: argparse.Namespace) -> int:
    token, secret = tokens.create(session, args.user, Role(args.role), args.expires_days)
    expires = token.expires_at.isoformat() if token.expires_at else "never"
    print(f"token {token.id} for {token.user} ({token.role}), expires {expires}.")
    print("Keep it now: it is shown only this once.")
    print(secret)
    return 0


def _list(session: Session, _args: argparse.Namespace) -> int:
    print("\t".join(TOKEN_COLUMNS))
    for token in tokens.list_tokens(session):
        print("\t".join(_cell(getattr(token, column)) for column in TOKEN_COLUMNS))
    return 0


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else str(value)


def _revoke(session: Session, args: argparse.Namespace) -> int:
    count = tokens.revoke(session, token_id=args.id, user=args.user)
    if count == 0:
        print("no live token matched; nothing revoked", file=sys.stderr)
        return 1
    print(f"revoked {count} token(s)")
    return 0


_TOKEN_ACTIONS = {"create": _create, "list": _list, "revoke": _revoke}


if __name__ == "__main__":
    sys.exit(main())
