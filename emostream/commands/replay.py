"""`emostream replay`: replay MELD episodes through the live pipeline and write an evaluation report."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Replay MELD episodes through the live pipeline and write an evaluation report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream replay", "[replay]")
