"""`emostream serve`: run the whole pipeline in one process on the embedded bus (or a Redis URL)."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Run the whole pipeline in one process on the embedded bus (or a Redis URL)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream serve", "[ingest]")
