"""`emostream events`: follow the emotion event stream and print events as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import sys

from emostream import schema
from emostream.config import ConfigError, load_settings
from emostream.errors import UserError

HELP = "Follow the emotion event stream and print events as JSON lines."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", help="bus URL (default: bus.url setting)")
    parser.add_argument("--room", metavar="R", help="only events of this room")
    parser.add_argument("--from-start", action="store_true", help="print the retained history first")
    parser.add_argument(
        "--count", type=int, metavar="N", help="exit after N events (default: follow forever)"
    )
    parser.add_argument("--stream", default=schema.EmotionEvent.stream, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    url = args.redis or settings.bus.url
    if url.startswith("memory"):
        raise UserError("events needs a shared bus: pass --redis redis://HOST:PORT", exit_code=2)
    return asyncio.run(_follow(url, args))


async def _follow(url: str, args: argparse.Namespace) -> int:
    """Tail the stream with the runtime's Follower (no consumer group) until ``--count`` events."""
    from emostream.bus import open_bus
    from emostream.runtime.follow import Follower

    done = asyncio.Event()
    printed = 0

    def show(event: schema.EmotionEvent) -> None:
        nonlocal printed
        if done.is_set() or (args.room and event.room != args.room):
            return
        sys.stdout.write(schema.to_json(event).decode() + "\n")
        sys.stdout.flush()
        printed += 1
        if args.count is not None and printed >= args.count:
            done.set()

    def skipped(entry_id: str, exc: schema.SchemaError) -> None:
        print(f"emostream events: skipped {entry_id}: {exc}", file=sys.stderr)

    bus = open_bus(url)
    follower = Follower(
        schema.EmotionEvent,
        show,
        from_start=args.from_start,
        block_ms=1000,
        on_skip=skipped,
        stream=args.stream,
    )
    try:
        await bus.ping()
        follower.start(bus)
        await done.wait()
    finally:
        await follower.stop()
        await bus.close()
    return 0
