"""`emostream config show`: the effective settings (defaults < TOML file < EMOSTREAM_* env)."""

from __future__ import annotations

import argparse

from emostream.config import ConfigError, load_settings, settings_toml
from emostream.errors import UserError

HELP = "Show the effective configuration (defaults, TOML file, EMOSTREAM_* variables)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("show", help="print the effective settings as TOML (secrets redacted)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    print(settings_toml(settings, redact=True))
    return 0
