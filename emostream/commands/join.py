"""`emostream join janus`: attach the analyzer to a live Janus VideoRoom and print each event.

The stages run in this process on the embedded bus, or, with ``--redis``, as `emostream worker`
processes of a Redis topology (the same choice as `emostream analyze`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING

from emostream import schema
from emostream.commands import settings_of
from emostream.config import Settings
from emostream.errors import UserError

if TYPE_CHECKING:
    from emostream.bus.base import Bus

HELP = "Join a live call as a listener (Janus VideoRoom) and print each speaker's emotion events."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="system", metavar="SYSTEM", required=True)
    p = sub.add_parser("janus", help="a Janus VideoRoom over its WebSocket API")
    p.add_argument("--url", required=True, metavar="WS", help="Janus WebSocket, e.g. ws://127.0.0.1:8188")
    p.add_argument("--room", required=True, type=int, metavar="N", help="VideoRoom id")
    p.add_argument("--room-secret", default="", metavar="S", help="the room's join pin, if it has one")
    p.add_argument("--token", default="", metavar="T", help="Janus token_auth token")
    p.add_argument("--api-secret", default="", metavar="S", help="Janus api_secret")
    p.add_argument("--analyzer-room", required=True, metavar="R", help="emostream room id of the events")
    p.add_argument("--display", default="emostream-analyzer", help="the analyzer's name in the room")
    p.add_argument("--redis", metavar="URL", help="feed a Redis topology (stages run as `emostream worker`)")
    p.add_argument("--json", action="store_true", help="one JSON line per event")
    p.add_argument(
        "--drain",
        type=float,
        default=5.0,
        metavar="S",
        help="wait for the last events on leaving (default 5)",
    )
    p.add_argument(
        "--duration", type=float, default=0.0, metavar="S", help="leave after S seconds (0: never)"
    )


async def follow(args: argparse.Namespace, settings: Settings) -> int:
    from emostream.bus import open_bus
    from emostream.runtime.pipeline import Pipeline
    from emostream.runtime.topology import build, ensure_readers
    from emostream.server.janus import JanusListener, JanusOptions
    from emostream.server.tracks import call_sink

    bus = open_bus(settings.bus.url, settings.bus)
    await bus.ping()
    await ensure_readers(bus, settings)  # the workers' groups exist before the first utterance
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[object]] = []
    pipe_stop = asyncio.Event()
    try:
        if settings.bus.url.startswith("memory"):
            pipeline = Pipeline(bus, settings)
            for stage in build(settings):
                pipeline.add(stage, consumer=f"join-{stage.name}")
            ready = asyncio.Event()
            tasks.append(asyncio.create_task(pipeline.run(pipe_stop, ready)))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({tasks[0], waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if tasks[0].done():
                tasks[0].result()
                raise UserError("the pipeline stopped while starting")
        status = lambda line: print(f"emostream join: {line}", file=sys.stderr, flush=True)  # noqa: E731
        options = JanusOptions(
            args.url, args.room, args.room_secret, args.token, args.api_secret, args.display,
            audio_jitter_packets=settings.call.audio_jitter_packets,
        )  # fmt: skip
        listener = JanusListener(options, bus, args.analyzer_room, call_sink(bus, settings), status)
        start = await bus.last_id(schema.EmotionEvent.stream)
        tasks.append(asyncio.create_task(_print_events(bus, start, args)))
        if args.duration > 0:
            loop.call_later(args.duration, stop.set)
        await listener.run(stop)
        await asyncio.sleep(args.drain)  # the flushed utterances' events
    finally:
        pipe_stop.set()
        for t in tasks[1:]:
            t.cancel()
        if tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(tasks[0], 30)
        await bus.close()
    return 0


async def _print_events(bus: Bus, last: str, args: argparse.Namespace) -> None:
    while True:
        for entry in await bus.tail({schema.EmotionEvent.stream: last}, count=100, block_ms=200):
            last = entry.id
            try:
                e = schema.decode_checked(entry.data, schema.EmotionEvent)
            except schema.SchemaError:
                continue
            if e.room != args.analyzer_room:
                continue
            if args.json:
                print(schema.to_json(e).decode(), flush=True)
            else:
                print(f"{e.speaker:<12} {e.label:<8} {e.confidence:.2f}  {e.transcript.strip()}", flush=True)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if not args.url.startswith(("ws://", "wss://")):
        raise UserError(f"--url {args.url}: expected a Janus WebSocket URL (ws://HOST:8188)", exit_code=2)
    from emostream.server.rooms import room_error

    if why := room_error(args.analyzer_room):
        raise UserError(f"--analyzer-room: {why}", exit_code=2)
    from emostream.log import setup_logging

    setup_logging("warning", settings.stage.log_format)
    return asyncio.run(follow(args, settings))
