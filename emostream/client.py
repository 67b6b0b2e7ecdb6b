"""Python client of the event API: ``async for event in subscribe(url, room, token): ...``.

It follows a room over Server-Sent Events and reconnects by itself (dropped connection, server restart
or drain, a ``lagged`` cut-off), resuming after the last entry it handed out, so the events it yields
have no gap and no repeat while the server retains them. Events are the typed
:class:`emostream.schema.EmotionEvent`. An utterance that will have no event (its message was
dead-lettered: expired media, too big, failed too often) arrives as a :class:`emostream.schema.Dropped`
record (reason, utterance, speaker): always counted in ``Subscription.dropped`` and handed to
``on_dropped``, and yielded among the events with ``dropped=True``. Scripts without asyncio use
:func:`iter_events`.

    from emostream.client import iter_events
    for event in iter_events("http://127.0.0.1:8765", "demo", token):
        print(event.speaker, event.label, event.confidence)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, Literal, TypeVar, overload
from urllib.parse import quote

import aiohttp
import msgspec

from emostream.schema import Dropped, EmotionEvent, check_version

__all__ = ["ClientError", "Dropped", "EmotionEvent", "Subscription", "iter_events", "subscribe"]

_DECODER = msgspec.json.Decoder(EmotionEvent)
_DROPPED = msgspec.json.Decoder(Dropped)
R = TypeVar("R", EmotionEvent, EmotionEvent | Dropped)
_CONTROL = msgspec.json.Decoder(dict[str, Any])


class ClientError(Exception):
    """The server refused the subscription (bad token, wrong room or role, bad filter): not retried."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class Subscription(Generic[R]):
    """An async iterator of a room's events (and, with ``dropped=True``, its Dropped records);
    ``last_id`` is the stream id of the last record read."""

    def __init__(
        self,
        url: str,
        room: str,
        token: str,
        since: str | None = None,
        *,
        speaker: str | None = None,
        min_confidence: float | None = None,
        labels: list[str] | None = None,
        reconnect: bool = True,
        retry_s: float = 0.5,
        max_retry_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        dropped: bool = False,
        on_dropped: Callable[[Dropped], object] | None = None,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/v1/rooms/{quote(room, safe='')}/events"
        self.token = token
        self.last_id = since
        self.params: dict[str, str] = {}
        if speaker:
            self.params["speaker"] = speaker
        if min_confidence is not None:
            self.params["min_confidence"] = str(min_confidence)
        if labels:
            self.params["labels"] = ",".join(labels)
        self.reconnect = reconnect
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.reconnects = 0
        """Connections made after the first (dropped, drained or lagged)."""
        self.lagged = 0
        """Times the server cut this subscriber off for falling behind."""
        self.dropped = 0
        """Dropped records received: utterances of the room that will have no event."""
        self.yield_dropped = dropped
        self.on_dropped = on_dropped
        self._session = session

    def __aiter__(self) -> AsyncIterator[R]:
        return self._events()  # type: ignore[return-value]

    async def _events(self) -> AsyncIterator[EmotionEvent | Dropped]:
        session = self._session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
        )
        delay = self.retry_s
        first = True
        try:
            while True:
                if not first:
                    self.reconnects += 1
                first = False
                got = False
                try:
                    async for event in self._once(session):
                        got = True
                        yield event
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError, OSError):
                    pass
                if not self.reconnect:
                    return
                delay = self.retry_s if got else min(self.max_retry_s, delay * 2)
                await asyncio.sleep(delay if not got else 0)
        finally:
            if self._session is None:
                await session.close()

    async def _once(self, session: aiohttp.ClientSession) -> AsyncIterator[EmotionEvent | Dropped]:
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {self.token}"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        async with session.get(self.endpoint, params=self.params, headers=headers) as resp:
            if resp.status in (400, 401, 403, 404):
                raise ClientError(resp.status, await _reason(resp))
            resp.raise_for_status()
            kind, entry_id, data = "message", None, b""
            async for raw in resp.content:
                line = raw.rstrip(b"\r\n")
                if line:
                    field, _, value = line.partition(b":")
                    value = value[1:] if value.startswith(b" ") else value
                    if field == b"id":
                        entry_id = value.decode()
                    elif field == b"event":
                        kind = value.decode()
                    elif field == b"data":
                        data = value if not data else data + b"\n" + value
                    continue
                if data:
                    if kind == "emotion":
                        event = _DECODER.decode(data)
                        check_version(event)
                        self.last_id = entry_id
                        yield event
                    elif kind == "dropped":
                        record = _DROPPED.decode(data)
                        self.last_id = entry_id
                        self.dropped += 1
                        if self.on_dropped is not None:
                            self.on_dropped(record)
                        if self.yield_dropped:
                            yield record
                    elif kind == "ready":
                        if self.last_id is None:
                            self.last_id = _CONTROL.decode(data).get("last_id") or None
                    elif kind in ("lagged", "shutdown"):
                        if kind == "lagged":
                            self.lagged += 1
                        last = _CONTROL.decode(data).get("last_id")
                        if last:
                            self.last_id = last
                        return
                kind, entry_id, data = "message", None, b""


async def _reason(resp: aiohttp.ClientResponse) -> str:
    with contextlib.suppress(Exception):
        return str((await resp.json()).get("error", resp.reason))
    return str(resp.reason)


@overload
def subscribe(
    url: str,
    room: str,
    token: str,
    since: str | None = None,
    *,
    dropped: Literal[False] = False,
    **options: Any,
) -> Subscription[EmotionEvent]: ...
@overload
def subscribe(
    url: str, room: str, token: str, since: str | None = None, *, dropped: Literal[True], **options: Any
) -> Subscription[EmotionEvent | Dropped]: ...
def subscribe(
    url: str, room: str, token: str, since: str | None = None, *, dropped: bool = False, **options: Any
) -> Subscription[Any]:
    """Follow ``room`` on the server at ``url`` from after ``since`` (None: only new events).
    ``dropped=True``: also yield the room's :class:`Dropped` records, in stream order."""
    return Subscription(url, room, token, since, dropped=dropped, **options)


def iter_events(url: str, room: str, token: str, since: str | None = None, **options: Any) -> Iterator[Any]:
    """Blocking version of :func:`subscribe` for scripts (runs its own event loop); EmotionEvents, and
    Dropped records too with ``dropped=True``."""
    loop = asyncio.new_event_loop()
    events = subscribe(url, room, token, since, **options).__aiter__()
    try:
        while True:
            try:
                yield loop.run_until_complete(events.__anext__())
            except StopAsyncIteration:
                return
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(events.aclose())  # type: ignore[attr-defined]
        loop.close()
