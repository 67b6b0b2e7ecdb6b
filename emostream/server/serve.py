"""Run ``emostream serve``: bus, stages, room fan-out and the HTTP API in one process, drained on SIGTERM.

Embedded (``memory://``): the pipeline stages run here, in-process. With ``--redis`` only the API and
the room fan-out run here and the stages run as ``emostream worker`` processes anywhere. Either way the
fan-out is one more stage on the existing runtime, so several serve processes share its work.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from emostream.bus import open_bus
from emostream.config import Settings
from emostream.errors import UserError
from emostream.runtime import looplag
from emostream.runtime.pipeline import Pipeline, default_consumer, install_stop_signals, warn_if_open
from emostream.runtime.stage import Stage
from emostream.runtime.topology import ensure_readers
from emostream.server import auth
from emostream.server.app import ServerState, build_app, rooms_of
from emostream.server.feed import FeedOptions
from emostream.server.rooms import PREFIX, RoomHub, fan_out
from emostream.server.whip import mount_call

log = logging.getLogger("emostream.server")


class _BadRequests(logging.Filter):
    """aiohttp logs a malformed request (a request line over 8 KiB, a broken header) at ERROR with a
    traceback; it is the client's fault and answered 400, so log one warning line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            reason = str(exc.message or type(exc).__name__).replace("\n", " ")
            record.msg, record.args = "bad HTTP request: %s (answered %s)", (reason, exc.code)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_BAD_REQUESTS = _BadRequests()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_secret(settings: Settings, host: str) -> tuple[str, bool]:
    """The signing secret and whether it was made up for this process (no ``api.secret`` set)."""
    secret = settings.api.secret
    if secret:
        if len(secret.encode()) < auth.MIN_SECRET_BYTES:
            raise UserError(f"api.secret is too short: use at least {auth.MIN_SECRET_BYTES} bytes")
        return secret, False
    if not is_loopback(host):
        raise UserError(
            f"binding {host} needs a configured secret: set EMOSTREAM_API_SECRET (or [api] secret) so "
            "tokens survive restarts and `emostream token create` can mint them"
        )
    return secrets.token_urlsafe(32), True


@dataclass
class Server:
    """A started server; ``url`` is where it listens."""

    state: ServerState
    runner: web.AppRunner
    tasks: list[asyncio.Task[object]]
    url: str
    pipeline_stop: asyncio.Event

    async def close(self, drain_s: float) -> None:
        """Graceful drain: not ready, subscribers told ``shutdown``, stages drain, then close."""
        state = self.state
        state.stop.set()
        await asyncio.sleep(0)
        deadline = asyncio.get_running_loop().time() + drain_s
        while state.hub.subscribers and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 - a count, not an event
            await asyncio.sleep(0.05)
        await self.runner.cleanup()
        self.pipeline_stop.set()
        grace = state.settings.stage.shutdown_grace_s + 5
        done, pending = await asyncio.wait(self.tasks, timeout=grace)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.error("stage failed", extra={"error": str(t.exception())})
        await state.hub.close()
        await state.bus.close()


async def start(settings: Settings, host: str, port: int, stages: list[Stage], secret: str) -> Server:
    """Connect the bus, start the stages and the fan-out, and listen on ``host:port``."""
    bus = open_bus(settings.bus.url, settings.bus)
    await bus.ping()
    await warn_if_open(bus)  # as every worker does: serve reads the same transcripts and events
    await ensure_readers(bus, settings)  # the workers' groups exist before the first utterance
    api = settings.api
    state = ServerState(
        settings=settings,
        bus=bus,
        secret=secret,
        hub=RoomHub(bus, block_ms=settings.bus.block_ms),
        opts=FeedOptions(buffer=max(1, api.buffer), heartbeat_s=api.heartbeat_s),
    )

    async def list_rooms() -> list[str]:
        return rooms_of(await bus.streams(PREFIX))

    state.rooms = list_rooms
    pipeline_stop = asyncio.Event()
    fan_ready, stages_ready = asyncio.Event(), asyncio.Event()
    tasks: list[asyncio.Task[object]] = [
        asyncio.create_task(
            fan_out(
                bus,
                default_consumer("rooms"),
                pipeline_stop,
                fan_ready,
                settings.bus.block_ms,
            )
        ),
        asyncio.create_task(looplag.monitor(pipeline_stop)),
    ]
    if stages:
        pipeline = Pipeline(bus, settings)
        for stage in stages:
            pipeline.add(stage)
        tasks.append(asyncio.create_task(pipeline.run(pipeline_stop, stages_ready)))
    else:
        stages_ready.set()

    async def mark_ready() -> None:
        await fan_ready.wait()
        await stages_ready.wait()
        state.ready.set()
        log.info("ready", extra={"stages": ",".join(s.name for s in stages) or "none"})

    tasks.append(asyncio.create_task(mark_ready()))
    app = build_app(state)
    logging.getLogger("aiohttp.server").addFilter(_BAD_REQUESTS)  # once: filters are a set
    # WHIP ingest and the room page; the WHIP sessions close (open utterances flushed) on the
    # runner's cleanup in Server.close, before the stages are told to stop.
    mount_call(app, settings, bus, auth.check, secret)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=api.drain_s)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        pipeline_stop.set()
        for t in tasks:
            t.cancel()
        await bus.close()
        raise UserError(f"cannot listen on {host}:{port} ({exc.strerror}): pick a free --port") from None
    bound = runner.addresses[0][1] if runner.addresses else port
    return Server(state, runner, tasks, f"http://{_url_host(host)}:{bound}", pipeline_stop)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve_forever(
    settings: Settings,
    host: str,
    port: int,
    stages_factory: Callable[[], list[Stage]],
    secret: str,
    made_up: bool,
    out: Callable[[str], None] | None = None,
) -> int:
    """``emostream serve`` proper: start, announce, wait for SIGTERM/SIGINT, drain."""
    say = out or (lambda line: print(line, file=sys.stderr, flush=True))
    stages = stages_factory()
    server = await start(settings, host, port, stages, secret)
    stop = server.state.stop
    remove = install_stop_signals(stop)
    say(f"emostream serve: listening on {server.url} (bus {settings.bus.url.split('@')[-1]})")
    if made_up:
        admin = auth.create(secret, auth.ANY_ROOM, "admin", name="serve", ttl_s=12 * 3600)
        sub = auth.create(secret, "demo", "subscribe", name="viewer", ttl_s=12 * 3600)
        say("emostream serve: no api.secret set, so tokens are signed with a secret made for this process:")
        say(f"  rooms (admin):   curl -s '{server.url}/v1/rooms?token={admin}'")
        say(
            f"  room demo (SSE): curl -sN -H 'Accept: text/event-stream' '{server.url}/v1/rooms/demo/events?token={sub}'"
        )
        you = auth.create(secret, "demo", "publish", name="you", ttl_s=12 * 3600)
        say(f"  room page demo:  {server.url}/rooms/demo?token={you}&watch={sub}")
        say("  set EMOSTREAM_API_SECRET to mint more with `emostream token create`")
    else:
        say(
            f"emostream serve: room page {server.url}/rooms/ROOM?token=PUBLISH&watch=SUBSCRIBE "
            "(tokens from `emostream token create --room ROOM --role publish|subscribe`)"
        )
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
    say("emostream serve: draining")
    remove()
    await server.close(settings.api.drain_s)
    say("emostream serve: stopped")
    return 0
