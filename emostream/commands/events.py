"""`emostream events`: follow the emotion event stream and print events as JSON lines."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Follow the emotion event stream and print events as JSON lines."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream events", "[spine]")
