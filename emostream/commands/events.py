"""`emostream events`: follow the emotion event stream and print events as JSON lines."""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec

from emostream import schema
from emostream.bus.base import Entry
from emostream.config import ConfigError, Settings, load_settings
from emostream.errors import UserError

HELP = (
    "Follow a room's emotion events from a server (--url) or the bus (--redis): a live table or JSON lines."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", metavar="URL", help="emostream serve address, e.g. http://127.0.0.1:8765")
    parser.add_argument("--token", metavar="T", help="subscribe token for --room (`emostream token create`)")
    parser.add_argument(
        "--since", metavar="ID", help="with --url: resume after this stream id (0-0 = retained history)"
    )
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        help="table (default in a terminal) or json lines (default when piped)",
    )
    parser.add_argument("--redis", metavar="URL", help="bus URL (default: bus.url setting)")
    parser.add_argument("--room", metavar="R", help="only events of this room")
    parser.add_argument("--from-start", action="store_true", help="print the retained history first")
    parser.add_argument(
        "--count", type=int, metavar="N", help="exit after N events (default: follow forever)"
    )
    parser.add_argument("--stream", default=schema.EmotionEvent.stream, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.url:
        from emostream.commands.events_url import follow_url

        return follow_url(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    url = args.redis or settings.bus.url
    if url.startswith("memory"):
        raise UserError("events needs a shared bus: pass --redis redis://HOST:PORT", exit_code=2)
    return asyncio.run(_follow(url, args, settings))


async def _follow(url: str, args: argparse.Namespace, settings: Settings) -> int:
    """Print events; also say on stderr which utterances were dropped (dead-lettered) and why. A lost
    Redis is waited for with backoff; undecodable entries are skipped with one line each."""
    from emostream.bus import open_bus
    from emostream.runtime.follow import resume_point

    bus = open_bus(url, msgspec.structs.replace(settings.bus, url=url))
    printed = 0
    dropped = schema.Dropped.stream
    try:
        await bus.ping()
        from emostream.config import redact_url

        where = f"room {args.room}" if args.room else "every room"
        when = "the retained history, then new ones" if args.from_start else "new ones"
        print(
            f"emostream events: following {args.stream} on {redact_url(url)} ({where}, {when}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        last = {
            args.stream: "0-0" if args.from_start else await bus.last_id(args.stream),
            dropped: await bus.last_id(dropped),
        }
        pause = 0.2
        while args.count is None or printed < args.count:
            try:
                entries = await bus.tail(last, count=100, block_ms=1000)
                pause = 0.2
            except UserError as exc:  # Redis went away: wait for it, then carry on where we were
                print(f"emostream events: {exc}; retrying in {pause:g} s", file=sys.stderr, flush=True)
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
                for stream in last:
                    last[stream] = await resume_point(bus, stream, last[stream])
                continue
            for entry in entries:
                last[entry.stream] = entry.id
                if entry.stream == dropped:
                    _say_dropped(entry, args.room)
                    continue
                try:
                    if entry.error:
                        raise schema.SchemaError(entry.error)
                    event = schema.decode_checked(entry.data, schema.EmotionEvent)
                except schema.SchemaError as exc:
                    print(f"emostream events: skipped {entry.id}: {exc}", file=sys.stderr, flush=True)
                    continue
                if args.room and event.room != args.room:
                    continue
                sys.stdout.write(schema.to_json(event).decode() + "\n")
                sys.stdout.flush()
                printed += 1
                if args.count is not None and printed >= args.count:
                    break
    finally:
        await bus.close()
    return 0


def _say_dropped(entry: Entry, room: str | None) -> None:
    try:
        d = schema.decode(entry.data, schema.Dropped)
    except schema.SchemaError:
        return
    if room and d.room != room:
        return
    print(dropped_line(d), file=sys.stderr, flush=True)


def dropped_line(d: schema.Dropped) -> str:
    """How `emostream events` reports an utterance that will have no event (on stderr)."""
    return f"emostream events: dropped {d.key} (from {d.source}): {d.reason} [{d.dead_stream} {d.dead_id}]"
