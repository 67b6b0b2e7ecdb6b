"""WHIP ingest (RFC 9725): a publisher POSTs an SDP offer, gets the answer and a session URL to DELETE.

``add_whip_routes`` mounts, on any aiohttp application (``emostream serve``'s, or a test's):

- ``POST /whip/{room}``: ``application/sdp`` offer + a publish token -> ``201 Created``, the answer
  (``application/sdp``), ``Location: /whip/{room}/{session}``, an ``ETag``, and one
  ``Link: <url>; rel="ice-server"`` per configured STUN/TURN server.
- ``DELETE /whip/{room}/{session}`` (same token): ends the session; the open utterance is flushed.
- ``PATCH`` on a session: this server does neither trickle ICE nor ICE restarts (aiortc answers with
  every candidate gathered), so, as RFC 9725 section 4.3.1 requires, ``405`` with ``Allow``.
- ``OPTIONS`` on both: CORS preflight (``Accept-Post: application/sdp``); every response carries the
  CORS headers a browser needs to read ``Location``/``ETag``/``Link``.

The participant id is the token's subject. Refusals are one JSON line ``{"error": ...}`` with a 4xx:
401/403 (token), 404 (no such session), 409 (participant already publishing), 413 (offer too large),
415 (not ``application/sdp``), 400 (not an SDP offer), 422 (no Opus audio, or no VP8/H.264 for video),
429 (room or server full; ``Retry-After``). Each is counted in ``emostream_whip_refused``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import Counter, Gauge

from emostream.config import CallSettings
from emostream.server.receiver import tune_audio_receivers
from emostream.server.rooms import ROOM_PATTERN, room_error

log = logging.getLogger("emostream.whip")

SESSIONS = Gauge("emostream_whip_sessions", "Open WHIP sessions")
REFUSED = Counter("emostream_whip_refused", "WHIP requests refused, by HTTP status", ["status"])

AUDIO_CODECS = ("opus",)
VIDEO_CODECS = ("vp8", "h264")
_ROOM = ROOM_PATTERN
_CORS_HEADERS = "Authorization, Content-Type, If-Match"
_EXPOSE = "Location, ETag, Link, Accept-Post"


class Refused(Exception):
    """A request answered with a 4xx and one line saying what is wrong and what to do."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


Verifier = Callable[[str | None, str], str]
"""``(token, room) -> participant id``; raises :class:`Refused` (401/403) or any exception with
``status`` and ``reason`` attributes (``emostream.server.auth.AuthError``)."""


class MediaSink(Protocol):
    """Where a session's received tracks go (``tracks.TrackPump`` over the participant ingest)."""

    def add_track(self, track: Any) -> None: ...

    async def close(self) -> None: ...


SinkFactory = Callable[[str, str], MediaSink]
"""``(room, participant) -> sink``, called once per accepted session."""


@dataclass
class Offer:
    """What the endpoint checks in an offer before handing it to aiortc."""

    media: dict[str, list[str]] = field(default_factory=dict)
    """kind -> lower-case codec names of the sending m-sections of that kind."""
    kinds: list[str] = field(default_factory=list)
    """Kind of every m-section, in order."""


def parse_offer(sdp: str) -> Offer:
    """The sending m-sections and their codecs; ValueError with the reason if this is no SDP offer."""
    lines = [ln.strip() for ln in sdp.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or lines[0] != "v=0":
        raise ValueError("body is not an SDP session description (must start with v=0)")
    offer = Offer()
    sections: list[tuple[str, list[str], str]] = []
    for ln in lines:
        if ln.startswith("m="):
            parts = ln[2:].split()
            if len(parts) < 4:
                raise ValueError(f"malformed media line {ln!r}")
            sections.append((parts[0], [], "sendrecv"))
        elif sections and (m := re.match(r"a=rtpmap:\d+ ([^/\s]+)/", ln)):
            sections[-1][1].append(m.group(1).lower())
        elif sections and ln[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and ln.startswith("a="):
            kind, codecs, _ = sections[-1]
            sections[-1] = (kind, codecs, ln[2:])
    if not sections:
        raise ValueError("SDP offer has no media (m=) lines")
    offer.kinds = [kind for kind, _, _ in sections]
    for kind, codecs, direction in sections:
        if direction in ("sendrecv", "sendonly"):
            offer.media.setdefault(kind, []).extend(codecs)
    return offer


def check_offer(offer: Offer, require_video: bool) -> None:
    """422 unless there is Opus audio (and, for a video m-section, VP8 or H.264)."""
    audio = offer.media.get("audio")
    if audio is None:
        raise Refused(422, "the offer sends no audio: publish a microphone track (Opus)")
    if not any(c in AUDIO_CODECS for c in audio):
        raise Refused(422, f"audio codecs {sorted(set(audio))} offered; this server needs Opus")
    video = offer.media.get("video")
    if video is None and require_video:
        raise Refused(422, "the offer sends no video: this server is configured to require a camera")
    if video is not None and not any(c in VIDEO_CODECS for c in video):
        raise Refused(422, f"video codecs {sorted(set(video))} offered; use VP8 or H.264")


def link_headers(options: CallSettings) -> list[str]:
    """RFC 9725 section 4.6: one ``Link`` per ICE server, TURN ones with their credentials."""
    out = []
    for url in (u.strip() for u in options.ice_servers.split(",")):
        if not url:
            continue
        value = f'<{url}>; rel="ice-server"'
        if url.startswith(("turn:", "turns:")) and options.turn_username:
            value += (
                f'; username="{options.turn_username}"; credential="{options.turn_credential}"'
                '; credential-type="password"'
            )
        out.append(value)
    return out


@dataclass
class Session:
    id: str
    room: str
    participant: str
    etag: str
    pc: Any
    sink: MediaSink
    created: float = field(default_factory=time.monotonic)
    closed: bool = False


class WhipEndpoint:
    """The sessions of one server and the handlers of its WHIP routes."""

    def __init__(self, options: CallSettings, verify: Verifier, sink: SinkFactory) -> None:
        self.options, self.verify, self.sink = options, verify, sink
        self.sessions: dict[str, Session] = {}
        self._pending = 0
        self._watchers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------------------- handlers
    async def post(self, request: web.Request) -> web.Response:
        room = request.match_info["room"]
        if why := room_error(room):
            raise Refused(400, why)
        participant = self._participant(request, room)
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            raise Refused(415, f"Content-Type {ctype or '(none)'!r}: send the SDP offer as application/sdp")
        sdp = await self._body(request)
        try:
            offer = parse_offer(sdp)
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        check_offer(offer, self.options.require_video)
        self._check_capacity(room, participant)
        self._pending += 1
        try:
            session = await self._open(room, participant, sdp, offer)
        finally:
            self._pending -= 1
        headers = CIMultiDict(
            {
                "Location": f"/whip/{room}/{session.id}",
                "ETag": session.etag,
                "Content-Type": "application/sdp",
            }
        )
        for link in link_headers(self.options):
            headers.add("Link", link)
        return web.Response(status=201, body=session.pc.localDescription.sdp.encode(), headers=headers)

    async def delete(self, request: web.Request) -> web.Response:
        session = self._session(request)
        await self.close(session)
        return web.Response(status=200)

    async def patch(self, request: web.Request) -> web.Response:
        self._session(request)
        raise Refused(
            405,
            "this server supports neither trickle ICE nor ICE restarts: the answer carries every "
            "candidate; to reconnect, DELETE the session and POST a new offer",
            {"Allow": "DELETE, OPTIONS"},
        )

    async def options_endpoint(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={"Allow": "POST, OPTIONS", "Accept-Post": "application/sdp", **_preflight(request)},
        )

    async def options_session(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Allow": "DELETE, PATCH, OPTIONS", **_preflight(request)})

    # -------------------------------------------------------------------------------- helpers
    def _participant(self, request: web.Request, room: str) -> str:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.query.get("token")
        try:
            participant = self.verify(token, room)
        except Refused:
            raise
        except Exception as exc:
            status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
            if isinstance(status, int) and isinstance(reason, str):
                raise Refused(status, reason) from None
            raise
        if not participant:
            raise Refused(403, "the token names no participant: mint it with a name (the speaker id)")
        return participant

    async def _body(self, request: web.Request) -> str:
        limit = self.options.max_sdp_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            raise Refused(
                413, f"SDP offer of {declared} bytes is over the limit of {limit} (call.max_sdp_bytes)"
            )
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise Refused(413, f"SDP offer is over the limit of {limit} bytes (call.max_sdp_bytes)")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(400, "SDP offer is not UTF-8 text") from None

    def _check_capacity(self, room: str, participant: str) -> None:
        live = [s for s in self.sessions.values() if not s.closed]
        if any(s.room == room and s.participant == participant for s in live):
            raise Refused(
                409, f"{participant!r} is already publishing in room {room!r}: DELETE that session first"
            )
        if len(live) + self._pending >= self.options.max_participants_server:
            raise Refused(
                429,
                f"server full: {self.options.max_participants_server} publishers (call.max_participants_server)",
                {"Retry-After": "10"},
            )
        if sum(1 for s in live if s.room == room) >= self.options.max_participants_room:
            raise Refused(
                429,
                f"room {room!r} is full: {self.options.max_participants_room} publishers "
                "(call.max_participants_room)",
                {"Retry-After": "10"},
            )

    def _session(self, request: web.Request) -> Session:
        room, sid = request.match_info["room"], request.match_info["session"]
        participant = self._participant(request, room)
        session = self.sessions.get(sid)
        if session is None or session.room != room or session.closed:
            raise Refused(404, f"no WHIP session {sid!r} in room {room!r} (ended, or never created)")
        if session.participant != participant:
            raise Refused(403, f"session {sid!r} belongs to another participant")
        return session

    async def _open(self, room: str, participant: str, sdp: str, offer: Offer) -> Session:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

        servers = [
            RTCIceServer(
                urls=url,
                username=self.options.turn_username or None,
                credential=self.options.turn_credential or None,
            )
            for url in (u.strip() for u in self.options.ice_servers.split(","))
            if url
        ]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        sink = self.sink(room, participant)
        pc.on("track", sink.add_track)
        try:
            _receivers(pc, offer.kinds)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            tune_audio_receivers(pc, self.options.audio_jitter_packets)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc's reasons are short; the offer is the client's
            await pc.close()
            await sink.close()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Refused(400, f"SDP offer rejected: {reason}") from None
        session = Session(secrets.token_urlsafe(12), room, participant, f'"{secrets.token_hex(8)}"', pc, sink)
        self.sessions[session.id] = session
        SESSIONS.inc()

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session)

        watcher = asyncio.create_task(self._watch(session))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        log.info("whip session", extra={"room": room, "participant": participant, "session": session.id})
        return session

    async def _watch(self, session: Session) -> None:
        """Close a session that never connects (the publisher vanished between offer and ICE)."""
        await asyncio.sleep(self.options.session_idle_s)
        if not session.closed and session.pc.connectionState != "connected":
            log.warning("whip session never connected", extra={"session": session.id})
            await self.close(session)

    async def close(self, session: Session) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        SESSIONS.dec()
        with contextlib.suppress(Exception):
            await session.pc.close()
        await session.sink.close()
        log.info("whip session ended", extra={"room": session.room, "participant": session.participant})

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await self.close(session)
        for task in list(self._watchers):
            task.cancel()


def _receivers(pc: Any, kinds: list[str]) -> None:
    """One receive-only transceiver per offered m-section, made before the offer is applied so the
    answer keeps Opus for audio and VP8/H.264 for video only (no PCMU/G.722 fallback)."""
    from aiortc import RTCRtpReceiver

    for kind in kinds:
        if kind not in ("audio", "video"):
            continue
        wanted = AUDIO_CODECS if kind == "audio" else VIDEO_CODECS
        tr = pc.addTransceiver(kind, direction="recvonly")
        caps = RTCRtpReceiver.getCapabilities(kind)
        codecs = caps.codecs if caps is not None else []
        tr.setCodecPreferences([c for c in codecs if c.mimeType.split("/")[1].lower() in (*wanted, "rtx")])


def _preflight(request: web.Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", _CORS_HEADERS),
        "Access-Control-Max-Age": "600",
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guard(handler: Handler) -> Handler:
    """CORS headers on every response; a Refused becomes its one-line JSON 4xx."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except Refused as exc:
            REFUSED.labels(str(exc.status)).inc()
            resp = web.json_response({"error": exc.reason}, status=exc.status, headers=exc.headers)
            if exc.status == 401:
                resp.headers["WWW-Authenticate"] = 'Bearer realm="emostream"'
        resp.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "*")
        resp.headers["Access-Control-Expose-Headers"] = _EXPOSE
        resp.headers["Vary"] = "Origin"
        return resp

    return wrapped


def add_whip_routes(
    app: web.Application, options: CallSettings, verify: Verifier, sink: SinkFactory
) -> WhipEndpoint:
    """Mount the WHIP endpoint on ``app``; its sessions are closed on the app's cleanup."""
    ep = WhipEndpoint(options, verify, sink)
    endpoint, session = f"/whip/{{room:{_ROOM}}}", f"/whip/{{room:{_ROOM}}}/{{session:[A-Za-z0-9_-]+}}"
    app.router.add_route("POST", endpoint, _guard(ep.post))
    app.router.add_route("OPTIONS", endpoint, _guard(ep.options_endpoint))
    app.router.add_route("DELETE", session, _guard(ep.delete))
    app.router.add_route("PATCH", session, _guard(ep.patch))
    app.router.add_route("OPTIONS", session, _guard(ep.options_session))

    async def _cleanup(_: web.Application) -> None:
        await ep.close_all()

    app.on_cleanup.append(_cleanup)
    return ep


def mount_call(
    app: web.Application, settings: Any, bus: Any, check: Callable[..., Any], secret: str
) -> WhipEndpoint:
    """What ``emostream serve`` adds for live calls: WHIP over the participant ingest, and the room page.

    ``check`` is ``emostream.server.auth.check`` (``(secret, token, room, roles) -> Claims``).
    """
    from emostream.server.page import add_room_page
    from emostream.server.tracks import call_sink

    def verify(token: str | None, room: str) -> str:
        return str(check(secret, token, room, ("publish",)).name)

    add_room_page(app)
    return add_whip_routes(app, settings.call, verify, call_sink(bus, settings))
