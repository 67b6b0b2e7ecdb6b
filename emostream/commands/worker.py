"""`emostream worker`: run one pipeline stage as its own process: asr, fec, vlm, context, fusion."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Run one pipeline stage as its own process: asr, fec, vlm, context, fusion."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream worker", "[spine]")
