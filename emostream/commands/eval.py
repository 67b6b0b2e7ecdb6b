"""`emostream eval`: evaluate the runtime emotion model on a MELD-format CSV."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Evaluate the runtime emotion model on a MELD-format CSV."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream eval", "[erc]")
