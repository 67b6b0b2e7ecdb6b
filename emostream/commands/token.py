"""`emostream token create`: mint an access token for ingest and subscription endpoints."""

from __future__ import annotations

import argparse

from emostream.config import ConfigError, load_settings
from emostream.errors import UserError

HELP = "Mint an access token (signed with api.secret / EMOSTREAM_API_SECRET) for a room and a role."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("create", help="print a new token on stdout")
    p.add_argument(
        "--room", required=True, metavar="R", help="room the token is for ('*' = every room, admin only)"
    )
    p.add_argument("--role", required=True, choices=("publish", "subscribe", "admin"))
    p.add_argument("--name", default="", metavar="N", help="participant or client name")
    p.add_argument(
        "--ttl", type=float, default=3600.0, metavar="S", help="seconds until it expires (default 3600)"
    )


def run(args: argparse.Namespace) -> int:
    from emostream.server import auth

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    secret = settings.api.secret
    if not secret:
        raise UserError(
            "no api.secret set: export EMOSTREAM_API_SECRET=$(openssl rand -hex 32) for both `token` and `serve`",
            exit_code=2,
        )
    if len(secret.encode()) < auth.MIN_SECRET_BYTES:
        raise UserError(f"api.secret is too short: use at least {auth.MIN_SECRET_BYTES} bytes", exit_code=2)
    if args.ttl <= 0:
        raise UserError("--ttl must be above 0 seconds", exit_code=2)
    try:
        print(auth.create(secret, args.room, args.role, name=args.name, ttl_s=args.ttl))
    except ValueError as exc:
        raise UserError(str(exc), exit_code=2) from None
    return 0
