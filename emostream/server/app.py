"""The aiohttp application of ``emostream serve``: event subscription (SSE, WebSocket, JSON catch-up),
event publishing, room summary and list, health, readiness and metrics.

Every ``/v1`` endpoint checks a token (``Authorization: Bearer T`` or ``?token=T``; browsers' EventSource
and WebSocket cannot set headers). Slow subscribers never slow the pipeline: each connection has a
bounded buffer and is cut off with a final ``lagged`` message (its last id, to resume from) when full.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

from emostream import schema
from emostream.bus.base import Bus, Entry
from emostream.config import Settings
from emostream.server import auth
from emostream.server.feed import FeedOptions, Lagged, feed
from emostream.server.rooms import (
    PREFIX,
    Chunk,
    Filter,
    RoomHub,
    decode_entry,
    read_range,
    room_error,
    room_stream,
    valid_id,
)
from emostream.server.summary import summarize

SUBSCRIBERS = Gauge("emostream_api_subscribers", "Live event subscriptions", ["transport"])
DELIVERED = Counter("emostream_api_delivered", "Events written to subscribers", ["transport"])
LAGGED = Counter("emostream_api_lagged", "Subscribers cut off because their buffer overflowed", ["transport"])
PUBLISHED = Counter("emostream_api_published", "Events accepted by POST /v1/rooms/{room}/events")

_EVENTS_DECODER = msgspec.json.Decoder(list[schema.EmotionEvent] | schema.EmotionEvent)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ServerState:
    """What the handlers share; ``ready`` is set once models are loaded and the bus answered."""

    settings: Settings
    bus: Bus
    secret: str
    hub: RoomHub
    opts: FeedOptions
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    rooms: Callable[[], Awaitable[list[str]]] | None = None


STATE = web.AppKey("state", ServerState)


def build_app(state: ServerState) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/rooms", rooms)
    app.router.add_get("/v1/rooms/{room}/events", events)
    app.router.add_post("/v1/rooms/{room}/events", publish)
    app.router.add_get("/v1/rooms/{room}/events/ws", events_ws)
    app.router.add_get("/v1/rooms/{room}/summary", summary)
    return app


def _json_error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except auth.AuthError as exc:
        resp = _json_error(exc.status, exc.reason)
        if exc.status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="emostream"'
        return resp
    except ValueError as exc:  # bad query values: one line saying which
        return _json_error(400, str(exc))


def _token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("token")


def _authorize(request: web.Request, roles: tuple[str, ...], room: str | None) -> auth.Claims:
    if room is not None and (why := room_error(room)):
        raise ValueError(why)
    return auth.check(request.app[STATE].secret, _token(request), room, roles)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.stop.is_set():
        return _json_error(503, "draining")
    if not state.ready.is_set():
        return _json_error(503, "starting: loading models")
    try:
        await asyncio.wait_for(state.bus.ping(), timeout=2)
    except Exception as exc:
        return _json_error(503, f"bus unreachable: {exc}")
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def rooms(request: web.Request) -> web.Response:
    state = request.app[STATE]
    _authorize(request, ("admin",), None)
    names = await state.rooms() if state.rooms is not None else []
    out = []
    for room in sorted(names):
        stream = room_stream(room)
        out.append(
            {
                "room": room,
                "events": await state.bus.length(stream),
                "last_id": await state.bus.last_id(stream),
            }
        )
    return web.json_response({"rooms": out})


def _since(request: web.Request) -> str | None:
    since = request.query.get("since") or request.headers.get("Last-Event-ID") or None
    if since is not None and not valid_id(since):
        raise ValueError(f"since={since!r} is not a stream id like 1700000000000-0")
    return since


async def events(request: web.Request) -> web.StreamResponse:
    room = request.match_info["room"]
    _authorize(request, ("subscribe",), room)
    filt = Filter.parse(dict(request.query))
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _sse(request, room, filt)
    return await _catch_up(request, room, filt)


async def _catch_up(request: web.Request, room: str, filt: Filter) -> web.Response:
    state = request.app[STATE]
    since = _since(request) or "0-0"
    raw = request.query.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
        raise ValueError(f"limit={raw!r}: use a whole number from 1 to 1000")
    limit = int(raw)
    out: list[bytes] = []
    dropped: list[bytes] = []
    last = since
    more = True
    while len(out) + len(dropped) < limit and more:
        want = limit - len(out) - len(dropped)
        entries = await read_range(state.bus, room, last, want)
        more = bool(entries) and len(entries) == want
        for entry in entries:
            last = entry.id
            record = decode_entry(entry)
            if record is None or not filt.accepts(record):
                continue
            if isinstance(record, schema.Dropped):
                dropped.append(b'{"id":"%s","dropped":%s}' % (entry.id.encode(), schema.to_json(record)))
            else:
                out.append(_item(entry.id, record))
        if not entries:
            break
    body = b'{"room":%s,"events":[%s],"dropped":[%s],"last_id":"%s","more":%s}' % (
        msgspec.json.encode(room),
        b",".join(out),
        b",".join(dropped),
        last.encode(),
        b"true" if more else b"false",
    )
    return web.Response(body=body, content_type="application/json")


def _item(entry_id: str, event: schema.EmotionEvent) -> bytes:
    return b'{"id":"%s","event":%s}' % (entry_id.encode(), schema.to_json(event))


async def _write(resp: web.StreamResponse, request: web.Request, data: bytes, limit_s: float) -> None:
    """Write; only a write that has to wait for the socket gets a deadline (a task per write is too
    costly at 50,000 writes/s)."""
    transport = request.transport
    if transport is not None and transport.get_write_buffer_size() == 0:
        await resp.write(data)
    else:
        await asyncio.wait_for(resp.write(data), limit_s)


Record = schema.EmotionEvent | schema.Dropped
_FRAMES: OrderedDict[tuple[str, str], tuple[Record | None, bytes]] = OrderedDict()
_FRAMES_MAX = 8192


def _kind(record: Record) -> bytes:
    """The SSE event type (and WebSocket ``type``) of a room-stream record."""
    return b"dropped" if isinstance(record, schema.Dropped) else b"emotion"


def _decoded(entry: Entry) -> tuple[Record | None, bytes]:
    """An entry's record and SSE frame, decoded and encoded once for all the subscribers of a room:
    ``event: emotion`` for an EmotionEvent, ``event: dropped`` for a dropped utterance."""
    key = (entry.stream, entry.id)
    hit = _FRAMES.get(key)
    if hit is None:
        event = decode_entry(entry)
        frame = b""
        if event is not None:
            frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (
                entry.id.encode(),
                _kind(event),
                schema.to_json(event),
            )
        hit = _FRAMES[key] = (event, frame)
        if len(_FRAMES) > _FRAMES_MAX:
            _FRAMES.popitem(last=False)
    return hit


def _chunk_frames(chunk: Chunk) -> tuple[bytes, int]:
    """The SSE frames of a live chunk and how many events they hold, made once for every unfiltered
    subscriber of the room (a merged chunk joins its parts' frames)."""
    if chunk.sse is None:
        if chunk.parts:
            parts = [_chunk_frames(p) for p in chunk.parts]
            chunk.sse, chunk.events = b"".join(d for d, _ in parts), sum(n for _, n in parts)
        else:
            frames = [f for f in (_decoded(e)[1] for e in chunk) if f]
            chunk.sse, chunk.events = b"".join(frames), len(frames)
    return chunk.sse, chunk.events


async def _sse(request: web.Request, room: str, filt: Filter) -> web.StreamResponse:
    state = request.app[STATE]
    since = _since(request)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    _bound_socket(request)
    start = since or await state.bus.last_id(room_stream(room))
    await resp.write(b"retry: 1000\n\n" + _control("ready", start, "following the room"))
    gauge = SUBSCRIBERS.labels("sse")
    delivered = DELIVERED.labels("sse")
    gauge.inc()
    last = start
    timeout = state.opts.heartbeat_s * 2
    everything = filt == Filter()
    try:
        async for batch in feed(state.bus, state.hub, room, start, state.opts, state.stop):
            if not batch:
                await asyncio.wait_for(resp.write(b": heartbeat\n\n"), timeout)
                continue
            if everything and isinstance(batch, Chunk):
                data, n = _chunk_frames(batch)
            else:
                frames = []
                for entry in batch:
                    event, frame = _decoded(entry)
                    if event is not None and filt.accepts(event):
                        frames.append(frame)
                data, n = b"".join(frames), len(frames)
            if n:
                await _write(resp, request, data, timeout)
                delivered.inc(n)
            last = batch[-1].id  # filtered-out entries move the cursor too
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(resp.write(_control("shutdown", last, "server draining: reconnect")), 2)
    except Lagged as exc:
        LAGGED.labels("sse").inc()
        resp.force_close()  # disconnected, not just the response ended (keep-alive)
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(resp.write(_control("lagged", exc.last_id, _LAG_REASON)), 2)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        gauge.dec()
    return resp


SOCKET_BUFFER = 64 * 1024
"""Kernel send buffer of a subscription socket: without a fixed size Linux grows it to megabytes, which
would hide a stalled reader from the per-connection event buffer for a long time."""


def _bound_socket(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    transport.set_write_buffer_limits(high=16 * 1024)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)


_LAG_REASON = "subscriber fell behind its buffer: reconnect with since=last_id"


def _control(kind: str, last_id: str, reason: str) -> bytes:
    data = msgspec.json.encode({"type": kind, "last_id": last_id, "reason": reason})
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), data)


async def events_ws(request: web.Request) -> web.StreamResponse:
    room = request.match_info["room"]
    _authorize(request, ("subscribe",), room)
    filt = Filter.parse(dict(request.query))
    state = request.app[STATE]
    since = _since(request)
    ws = web.WebSocketResponse(heartbeat=state.opts.heartbeat_s, max_msg_size=64 * 1024)
    await ws.prepare(request)
    _bound_socket(request)
    gauge = SUBSCRIBERS.labels("ws")
    delivered = DELIVERED.labels("ws")
    gauge.inc()
    reader = asyncio.create_task(_drain_incoming(ws))
    start = since or await state.bus.last_id(room_stream(room))
    last = start
    timeout = state.opts.heartbeat_s * 2
    try:
        await _ws_control(ws, "ready", start, "following the room")
        async for batch in feed(state.bus, state.hub, room, start, state.opts, state.stop):
            if reader.done():
                break
            for entry in batch:
                event = decode_entry(entry)
                if event is not None and filt.accepts(event):
                    if isinstance(event, schema.Dropped):
                        msg = b'{"type":"dropped","id":"%s","dropped":%s}' % (
                            entry.id.encode(),
                            schema.to_json(event),
                        )
                    else:
                        msg = b'{"type":"event","id":"%s","event":%s}' % (
                            entry.id.encode(),
                            schema.to_json(event),
                        )
                    await _send(ws, request, msg.decode(), timeout)
                    delivered.inc()
            if batch:
                last = batch[-1].id
        if not reader.done():
            await _ws_control(ws, "shutdown", last, "server draining: reconnect")
    except Lagged as exc:
        LAGGED.labels("ws").inc()
        await _ws_control(ws, "lagged", exc.last_id, _LAG_REASON)
    except (ConnectionError, TimeoutError):
        pass
    finally:
        gauge.dec()
        reader.cancel()
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


async def _send(ws: web.WebSocketResponse, request: web.Request, text: str, limit_s: float) -> None:
    """Send a frame; only one that has to wait for the socket gets a deadline (as ``_write``)."""
    transport = request.transport
    if transport is not None and transport.get_write_buffer_size() == 0:
        await ws.send_str(text)
    else:
        await asyncio.wait_for(ws.send_str(text), limit_s)


async def _ws_control(ws: web.WebSocketResponse, kind: str, last_id: str, reason: str) -> None:
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(ws.send_json({"type": kind, "last_id": last_id, "reason": reason}), 2)


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Subscribers send nothing; reading keeps pings answered and notices a close."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


async def publish(request: web.Request) -> web.Response:
    """POST one EmotionEvent (JSON) or a JSON array of them into the room (producers outside the
    pipeline, and tests); they take the same path as the pipeline's events."""
    room = request.match_info["room"]
    _authorize(request, ("publish",), room)
    body = await request.read()
    try:
        decoded: Any = _EVENTS_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return _json_error(400, f"body is not an EmotionEvent or a list of them: {exc}")
    items: list[schema.EmotionEvent] = decoded if isinstance(decoded, list) else [decoded]
    wrong = [e.room for e in items if e.room != room]
    if wrong:
        return _json_error(400, f"event for room {wrong[0]!r} posted to room {room!r}")
    newer = [e.v for e in items if e.v > schema.SCHEMA_VERSION]
    if newer:  # the fan-out would dead-letter it after a 200: refuse it here instead
        return _json_error(
            400,
            f"event schema version {newer[0]}; this server reads up to {schema.SCHEMA_VERSION}: upgrade it first",
        )
    ids = await request.app[STATE].bus.publish_many(
        schema.EmotionEvent.stream, [schema.encode(e) for e in items]
    )
    PUBLISHED.inc(len(items))
    return web.json_response({"accepted": len(ids)})


async def summary(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    _authorize(request, ("subscribe",), room)
    raw = request.query.get("minutes", "10")
    try:
        minutes = float(raw)
    except ValueError:
        minutes = -1.0
    if not 0 < minutes <= 7 * 24 * 60:
        raise ValueError(f"minutes={raw!r}: use a number of minutes above 0 (at most a week)")
    return web.json_response(await summarize(request.app[STATE].bus, room, minutes))


def rooms_of(streams: list[str]) -> list[str]:
    return [s[len(PREFIX) :] for s in streams if s.startswith(PREFIX) and not s.endswith(":dead")]
