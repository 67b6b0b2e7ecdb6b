"""`emostream token`: mint an access token for ingest and subscription endpoints."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Mint an access token for ingest and subscription endpoints."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream token", "[api]")
