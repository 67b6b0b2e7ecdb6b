"""`emostream models`: model store: pull, list, verify and locate model files (offline-first)."""

from __future__ import annotations

import argparse

from emostream.errors import NotLanded

HELP = "Model store: pull, list, verify and locate model files (offline-first)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    raise NotLanded("emostream models", "[models]")
