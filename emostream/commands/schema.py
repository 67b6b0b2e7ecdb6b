"""`emostream schema`: print message contracts as JSON Schema for subscribers."""

from __future__ import annotations

import argparse
import json

import msgspec

from emostream import schema

HELP = "Print the JSON Schema of stream messages (default: EmotionEvent, for subscribers)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "which",
        nargs="?",
        default="events",
        choices=sorted(schema.STREAM_TYPES),
        help="stream whose message schema to print (default: events)",
    )


def run(args: argparse.Namespace) -> int:
    kind = schema.STREAM_TYPES[args.which]
    print(json.dumps(msgspec.json.schema(kind), indent=2, sort_keys=True))
    return 0
