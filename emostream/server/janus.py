"""Attach to a live Janus VideoRoom as a listener: one aiortc subscriber per publisher, its tracks into
the participant ingest (:func:`emostream.server.tracks.call_sink`, the same path WHIP sessions use).

The Janus WebSocket API (subprotocol ``janus-protocol``): ``create`` a session, ``attach`` handles to
``janus.plugin.videoroom``. One handle joins the room as a *publisher that never publishes*: it gets the
current publisher list and then an event for every new publisher (``publishers``) and every leave
(``unpublished`` / ``leaving``). Each publisher gets its own subscriber handle (``join`` with
``ptype: subscriber``; Janus sends an SDP offer, aiortc answers, ``start``). The participants keep their
call; the analyzer only receives. A ``keepalive`` goes out well inside Janus's session timeout; when
the socket drops, everything is torn down (open utterances flushed) and the join starts over with
backoff. Speaker = the publisher's display name.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from emostream.bus.base import Bus
from emostream.errors import UserError
from emostream.schema import RoomControl, encode, now
from emostream.server.receiver import tune_audio_receivers
from emostream.server.tracks import TrackPump

log = logging.getLogger("emostream.janus")

PLUGIN = "janus.plugin.videoroom"


class JanusError(Exception):
    """Janus answered a request with an error (code and reason from its reply)."""


@dataclass(frozen=True)
class JanusOptions:
    url: str
    room: int
    pin: str = ""
    """The room's join password (VideoRoom ``pin``)."""
    token: str = ""
    """Janus ``token_auth`` token, sent with every request."""
    api_secret: str = ""
    """Janus ``api_secret``, sent with every request."""
    display: str = "emostream-analyzer"
    keepalive_s: float = 25.0
    reconnect_s: float = 2.0
    reconnect_max_s: float = 30.0
    audio_jitter_packets: int = 1
    """``call.audio_jitter_packets`` (:mod:`emostream.server.receiver`)."""


@dataclass
class Feed:
    """One subscribed publisher."""

    id: int
    speaker: str
    handle: int
    pump: TrackPump
    pc: Any


def speaker_name(display: str, feed: int, taken: set[str]) -> str:
    """The publisher's display name as a speaker id (slug; unique in the room; ``feed-ID`` if none)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", display.strip()).strip("-") or f"feed-{feed}"
    return base if base not in taken else f"{base}-{feed}"


@dataclass
class JanusListener:
    """Follow one VideoRoom; ``run(stop)`` until ``stop`` is set (reconnecting on connection loss)."""

    options: JanusOptions
    bus: Bus
    analyzer_room: str
    sink: Callable[[str, str], TrackPump]
    on_status: Callable[[str], None] = lambda line: None
    feeds: dict[int, Feed] = field(default_factory=dict)
    connects: int = 0
    _janus: JanusSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        delay = self.options.reconnect_s
        while not stop.is_set():
            try:
                await self._connected(stop)
                delay = self.options.reconnect_s
            except (aiohttp.ClientError, OSError, JanusError, ConnectionError, TimeoutError) as exc:
                if self.connects == 0:  # never joined: a wrong URL, room or pin, not a dropped call
                    raise UserError(
                        f"janus {self.options.url} room {self.options.room}: {exc or type(exc).__name__};"
                        " check --url, --room and --room-secret"
                    ) from None
                self.on_status(f"janus connection lost ({exc}); reconnecting in {delay:g} s")
            finally:
                await self._teardown()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self.options.reconnect_max_s)

    async def _connected(self, stop: asyncio.Event) -> None:
        async with JanusSession.open(self.options) as janus:
            self._janus = janus
            try:
                await self._follow(janus, stop)
            finally:
                await self._teardown()
                self._janus = None

    async def _follow(self, janus: JanusSession, stop: asyncio.Event) -> None:
        """Join as a listener, subscribe to every publisher, then track joins and leaves."""
        handle = await janus.attach()
        joined = await janus.message(
            handle,
            {
                "request": "join",
                "ptype": "publisher",
                "room": self.options.room,
                "display": self.options.display,
            }
            | ({"pin": self.options.pin} if self.options.pin else {}),
        )
        data = _plugin_data(joined)
        if data.get("videoroom") != "joined":
            raise JanusError(_reason(data) or f"unexpected reply {data}")
        self.connects += 1
        pubs = data.get("publishers", [])
        self.on_status(f"joined janus room {self.options.room}: {len(pubs)} publisher(s)")
        for pub in pubs:
            await self._subscribe(pub)
        events = janus.events[handle]
        reader = janus.reader
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                nxt = asyncio.create_task(events.get())
                done, _ = await asyncio.wait({nxt, stopping, reader}, return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    if reader in done:
                        raise ConnectionError("websocket closed")
                    return
                await self._on_room_event(_plugin_data(nxt.result()))
        finally:
            stopping.cancel()

    async def _on_room_event(self, data: dict[str, Any]) -> None:
        for pub in data.get("publishers", []):
            await self._subscribe(pub)
        for key in ("unpublished", "leaving"):
            feed = data.get(key)
            if isinstance(feed, int) and feed in self.feeds:
                await self._unsubscribe(self.feeds.pop(feed))

    async def _subscribe(self, pub: dict[str, Any]) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        feed = int(pub["id"])
        if feed in self.feeds:
            return
        speaker = speaker_name(str(pub.get("display", "")), feed, {f.speaker for f in self.feeds.values()})
        janus = self._need()
        handle = await janus.attach(listen=False)
        reply = await janus.message(
            handle,
            {"request": "join", "ptype": "subscriber", "room": self.options.room, "streams": [{"feed": feed}]}
            | ({"pin": self.options.pin} if self.options.pin else {}),
        )
        jsep = reply.get("jsep")
        if not jsep:
            self.on_status(f"janus gave no offer for {speaker} ({_reason(_plugin_data(reply))}); skipped")
            await janus.detach(handle)
            return
        pump = self.sink(self.analyzer_room, speaker)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", pump.add_track)

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState == "failed":
                self.on_status(f"media from {speaker} failed (ICE/DTLS): check the network to Janus")

        await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type=jsep["type"]))
        tune_audio_receivers(pc, self.options.audio_jitter_packets)
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": pc.localDescription.type, "sdp": pc.localDescription.sdp}
        self.feeds[feed] = Feed(feed, speaker, handle, pump, pc)
        await janus.message(handle, {"request": "start", "room": self.options.room}, jsep=answer)
        await self.bus.publish(
            RoomControl.stream,
            encode(
                RoomControl(
                    room=self.analyzer_room,
                    action="join",
                    participant=speaker,
                    display_name=str(pub.get("display", "")),
                    at=now(),
                )
            ),
        )
        self.on_status(f"subscribed to {speaker} (feed {feed})")

    async def _unsubscribe(self, feed: Feed) -> None:
        await feed.pc.close()
        await feed.pump.close()
        await self.bus.publish(
            RoomControl.stream,
            encode(RoomControl(room=self.analyzer_room, action="leave", participant=feed.speaker, at=now())),
        )
        if self._janus is not None and not self._janus.closed:
            with contextlib.suppress(Exception):
                await self._janus.detach(feed.handle)
        self.on_status(f"{feed.speaker} left (feed {feed.id})")

    async def _teardown(self) -> None:
        """Every subscription ends (open utterances are flushed into the pipeline)."""
        for feed in list(self.feeds.values()):
            with contextlib.suppress(Exception):
                await self._unsubscribe(feed)
        self.feeds.clear()

    def _need(self) -> JanusSession:
        if self._janus is None or self._janus.closed:
            raise ConnectionError("websocket closed")
        return self._janus


@dataclass
class JanusSession:
    """One Janus session over one WebSocket: requests matched to replies by transaction, plugin events
    queued per handle, a keepalive inside the session timeout. ``JanusSession.open(options)``."""

    options: JanusOptions
    ws: aiohttp.ClientWebSocketResponse
    id: int = 0
    events: dict[int, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    reader: asyncio.Task[None] = field(init=False)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _ack_answers: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, options: JanusOptions) -> AsyncIterator[JanusSession]:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(options.url, protocols=("janus-protocol",), heartbeat=None) as ws,
        ):
            janus = cls(options, ws)
            janus.reader = asyncio.create_task(janus._read())
            keep: asyncio.Task[None] | None = None
            try:
                janus.id = int((await janus.request({"janus": "create"}))["data"]["id"])
                keep = asyncio.create_task(janus._keepalive())
                yield janus
            finally:
                if keep is not None:
                    keep.cancel()
                if not ws.closed and janus.id:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(janus.request({"janus": "destroy"}), 2)
                janus.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await janus.reader
                for fut in janus._pending.values():
                    if not fut.done():
                        fut.set_exception(ConnectionError("websocket closed"))

    @property
    def closed(self) -> bool:
        return self.ws.closed or self.reader.done()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.options.keepalive_s)
            await self.request({"janus": "keepalive"}, ack_is_answer=True)

    async def attach(self, listen: bool = True) -> int:
        """A VideoRoom handle; with ``listen`` its asynchronous plugin events are queued in ``events``."""
        handle = int((await self.request({"janus": "attach", "plugin": PLUGIN}))["data"]["id"])
        if listen:
            self.events[handle] = asyncio.Queue()
        return handle

    async def detach(self, handle: int) -> None:
        self.events.pop(handle, None)
        await asyncio.wait_for(self.request({"janus": "detach", "handle_id": handle}), 5)

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None, wait_s: float = 15
    ) -> dict[str, Any]:
        """A plugin request: Janus acks it, then answers with an ``event`` of the same transaction."""
        msg: dict[str, Any] = {"janus": "message", "handle_id": handle, "body": body}
        if jsep:
            msg["jsep"] = jsep
        return await self.request(msg, wait_s=wait_s)

    async def request(
        self, msg: dict[str, Any], wait_s: float = 15, ack_is_answer: bool = False
    ) -> dict[str, Any]:
        ws = self.ws
        if ws is None or ws.closed:
            raise ConnectionError("websocket closed")
        tx = f"{next(self._ids)}-{secrets.token_hex(4)}"
        msg = msg | {"transaction": tx}
        if self.id and "session_id" not in msg and msg["janus"] != "create":
            msg["session_id"] = self.id
        if self.options.token:
            msg["token"] = self.options.token
        if self.options.api_secret:
            msg["apisecret"] = self.options.api_secret
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[tx] = fut
        if ack_is_answer:
            self._ack_answers.add(tx)
        try:
            await ws.send_json(msg)
            reply = await asyncio.wait_for(fut, wait_s)
        finally:
            self._pending.pop(tx, None)
            self._ack_answers.discard(tx)
        if reply.get("janus") == "error":
            err = reply.get("error", {})
            raise JanusError(f"{err.get('reason', 'error')} (code {err.get('code')})")
        return reply

    async def _read(self) -> None:
        async for raw in self.ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = raw.json()
            kind, tx = msg.get("janus"), msg.get("transaction")
            if kind == "ack" and tx not in self._ack_answers:
                continue  # a plugin request's ack: its answer is the event with the same transaction
            fut = self._pending.get(tx) if tx else None
            if fut is not None and not fut.done():
                fut.set_result(msg)
            elif kind == "event" and msg.get("sender") in self.events:
                self.events[msg["sender"]].put_nowait(msg)
            elif kind in ("hangup", "detached", "timeout"):
                log.info("janus %s", kind, extra={"reply": str(msg)[:200]})
                if kind == "timeout":
                    return


def _plugin_data(msg: dict[str, Any]) -> dict[str, Any]:
    data = msg.get("plugindata", {}).get("data", {})
    return data if isinstance(data, dict) else {}


def _reason(data: dict[str, Any]) -> str:
    if "error" in data:
        return f"{data['error']} (code {data.get('error_code')})"
    return ""
