"""`emostream train`: train and quantize emostream's models (needs the `train` extra)."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Train and quantize emostream's models (needs the `train` extra)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream train", "[erc]")
