"""Events per room: the fan-out stage that files each EmotionEvent into its room's bounded stream, the
subscriber filters, and the per-room hub that reads a room stream once for all its live subscribers.

A room stream is ``events:<room>``, capped like every stream at ``bus.maxlen`` entries (the retention);
its entry ids are the SSE ``id:`` values and the ``since=`` cursors. It holds the ``events``
stream's order for that room, each event once (see :func:`fan_out`). Besides EmotionEvents it holds the
room's :class:`~emostream.schema.Dropped` records (an utterance that was dead-lettered and will have no
event), filed from the ``dropped`` stream the same way, so a subscriber learns of a lost utterance
instead of by its silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from emostream.bus.base import Bus, Delivery, Entry
from emostream.runtime import metrics
from emostream.runtime.errors import GroupMissing
from emostream.schema import EMOTIONS, Dropped, EmotionEvent, SchemaError, decode_checked

log = logging.getLogger("emostream.server")

PREFIX = "events:"


ROOM_PATTERN = r"[A-Za-z0-9._-]{1,64}"
"""What a room id may be: it names a stream key and a URL path segment."""
RESERVED_ROOMS = frozenset({"dead"})
"""``events:dead`` is the ``events`` stream's dead letters, so no room may be called ``dead``."""


def room_error(room: str) -> str | None:
    """Why ``room`` cannot be a room id, or None when it can."""
    if not re.fullmatch(ROOM_PATTERN, room):
        return f"room id {room[:80]!r} is not 1-64 of A-Z a-z 0-9 . _ -: choose another"
    if room in RESERVED_ROOMS:
        return f"room id {room!r} is reserved (its stream is the events' dead letters): choose another"
    return None


def room_stream(room: str) -> str:
    return PREFIX + room


def id_key(entry_id: str) -> tuple[int, int]:
    """Stream ids order as (ms, seq) pairs."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


_MAX_ID_PART = 2**64 - 1


def valid_id(entry_id: str) -> bool:
    """``ms`` or ``ms-seq`` in ASCII digits, each part within 64 bits: what Redis accepts as a stream id
    (``int()`` alone also takes ``+5``, ``1_000``, non-ASCII digits and 20-digit numbers, which Redis
    refuses with an error)."""
    ms, sep, seq = entry_id.partition("-")
    parts = (ms, seq) if sep else (ms,)
    return all(p.isascii() and p.isdigit() and int(p) <= _MAX_ID_PART for p in parts)


GROUP = "rooms"


async def fan_out(
    bus: Bus,
    consumer: str,
    stop: asyncio.Event,
    ready: asyncio.Event,
    block_ms: int = 200,
    batch: int = 500,
) -> int:
    """``events`` (and ``dropped``) -> ``events:<room>``, in each source stream's order, each record
    once, for any number of serve processes. Not a Stage and not a consumer group's deliveries: those
    are split between consumers and reclaimed when idle, so two processes (or one that stalled past the
    claim time) would file a room's batches out of order or twice. Instead every process reads each
    source after the ``rooms`` group's cursor and files a batch with a compare-and-set of that cursor
    (:meth:`Bus.advance_group`): the first writer of a range wins, the others skip to where it got.
    The cursor holds trimming like any group. ``consumer`` names this process in logs. Returns how
    many records this process filed."""
    kinds: dict[str, type[EmotionEvent] | type[Dropped]] = {
        EmotionEvent.stream: EmotionEvent,
        Dropped.stream: Dropped,
    }

    async def cursors(start: str) -> dict[str, str]:
        for stream in kinds:
            await bus.ensure_group(stream, GROUP, start)
        return {stream: await bus.group_cursor(stream, GROUP) for stream in kinds}

    cursor = await cursors("$")
    ready.set()
    filed = 0
    while not stop.is_set():
        try:
            entries = await bus.tail(dict(cursor), count=batch, block_ms=block_ms)
            for stream, kind in kinds.items():
                after = id_key(cursor[stream])
                mine = [e for e in entries if e.stream == stream and id_key(e.id) > after]
                if not mine:
                    continue
                outputs: list[tuple[str, bytes]] = []
                bad: list[tuple[Entry, str]] = []
                for e in mine:
                    try:
                        if e.error:
                            raise SchemaError(e.error)
                        room = decode_checked(e.data, kind).room
                        if why := room_error(room):
                            raise SchemaError(why)
                        outputs.append((room_stream(room), e.data))
                    except SchemaError as exc:
                        bad.append((e, f"not a {kind.__name__}: {exc}"))
                moved = await bus.advance_group(stream, GROUP, cursor[stream], mine[-1].id, outputs)
                if moved is not None:  # another serve process filed this range first
                    cursor[stream] = moved
                    continue
                cursor[stream] = mine[-1].id
                filed += len(outputs)
                for e, why in bad:  # only the writer that won the range files its bad entries
                    log.warning("bad event", extra={"id": e.id, "error": why, "consumer": consumer})
                    await bus.dead_letter(Delivery(e.stream, e.id, e.data, 1, e.error), GROUP, why)
        except asyncio.CancelledError:
            raise
        except GroupMissing:  # Redis came back without our groups: everything in it now is unfiled
            log.warning("room fan-out group vanished; recreating it", extra={"group": GROUP})
            with contextlib.suppress(Exception):
                cursor = await cursors("0")
        except Exception as exc:  # bus down, or its streams flushed: start again from the group
            log.error("room fan-out failed", extra={"error": str(exc), "consumer": consumer})
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                cursor = await cursors("$")
    return filed


@dataclass(frozen=True, slots=True)
class Filter:
    """Subscriber-side selection: ``speaker=``, ``min_confidence=``, ``labels=a,b``."""

    speaker: str | None = None
    min_confidence: float = 0.0
    labels: frozenset[str] | None = None

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filter:
        """From query parameters; ValueError with a one-line reason on bad values."""
        conf = query.get("min_confidence")
        try:
            min_conf = float(conf) if conf not in (None, "") else 0.0
        except ValueError:
            min_conf = -1.0
        if not 0.0 <= min_conf <= 1.0:  # NaN too
            raise ValueError(f"min_confidence={conf!r} is not a number in [0, 1]")
        labels = None
        if query.get("labels"):
            labels = frozenset(x.strip() for x in query["labels"].split(",") if x.strip())
            unknown = labels - set(EMOTIONS)
            if unknown:
                raise ValueError(
                    f"unknown label(s) {', '.join(map(repr, sorted(unknown)))}: use {', '.join(EMOTIONS)}"
                )
        return cls(speaker=query.get("speaker") or None, min_confidence=min_conf, labels=labels)

    def accepts(self, event: EmotionEvent | Dropped) -> bool:
        """A Dropped record passes the ``speaker`` filter only: it has no label or confidence, and a
        subscriber filtering labels still needs to know that an utterance will have no event."""
        if self.speaker is not None and event.speaker != self.speaker:
            return False
        if isinstance(event, Dropped):
            return True
        if event.confidence < self.min_confidence:
            return False
        return self.labels is None or event.label in self.labels


def decode_entry(entry: Entry) -> EmotionEvent | Dropped | None:
    """The event (or Dropped record) of a room-stream entry, or None (logged) when it is neither."""
    try:
        return decode_checked(entry.data, EmotionEvent)
    except SchemaError as exc:
        try:
            return decode_checked(entry.data, Dropped)
        except SchemaError:
            metrics.SKIPPED.labels(entry.stream).inc()
            log.warning("skipped entry", extra={"stream": entry.stream, "id": entry.id, "error": str(exc)})
            return None


def decode_event(entry: Entry) -> EmotionEvent | None:
    """Only the EmotionEvent of a room-stream entry (summaries skip Dropped records)."""
    record = decode_entry(entry)
    return record if isinstance(record, EmotionEvent) else None


async def read_range(bus: Bus, room: str, since: str, limit: int) -> list[Entry]:
    """Up to ``limit`` entries of the room stream after ``since`` (no waiting)."""
    out: list[Entry] = []
    last = since
    while len(out) < limit:
        got = await bus.tail({room_stream(room): last}, count=min(1000, limit - len(out)), block_ms=0)
        got = [e for e in got if id_key(e.id) > id_key(last)]  # block_ms=0 on Redis means "no block"
        if not got:
            break
        out += got
        last = got[-1].id
    return out


class Chunk(list[Entry]):
    """Entries the room reader got in one read, handed as one object to every live subscriber of the
    room, so what is derived from them (``sse``: their SSE frames, ``events`` of them) is computed
    once per room, not once per subscriber. ``parts``: the chunks a merged chunk was made of (a
    subscriber that took several at once). Never mutated."""

    __slots__ = ("events", "parts", "sse")

    def __init__(self, entries: Iterable[Entry] = (), parts: list[Chunk] | None = None) -> None:
        super().__init__(entries)
        self.parts = parts
        self.sse: bytes | None = None
        self.events = 0

    @classmethod
    def merge(cls, chunks: list[Chunk]) -> Chunk:
        if len(chunks) == 1:
            return chunks[0]
        merged = cls(parts=chunks)
        for c in chunks:
            merged.extend(c)
        return merged


@dataclass(eq=False)
class Subscriber:
    """One connection's bounded buffer of live entries (``size`` of them, in chunks shared with the
    room's other subscribers); ``lagged`` is set when it overflowed.

    A deque and an Event rather than an asyncio.Queue: the hub appends every chunk for every
    subscriber and the writer takes all of them at once."""

    limit: int
    items: deque[Chunk] = field(default_factory=deque)
    size: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lagged: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, chunk: Chunk) -> bool:
        """Buffer ``chunk``; False (and ``lagged`` set) when it does not fit."""
        if self.size + len(chunk) > self.limit:
            self.lagged.set()
            self.wake.set()
            return False
        self.items.append(chunk)
        self.size += len(chunk)
        self.wake.set()
        return True

    def take(self) -> list[Chunk]:
        batch = list(self.items)
        self.items.clear()
        self.size = 0
        self.wake.clear()
        return batch


class RoomHub:
    """One reader per room stream in this process, fanning entries out to the live subscribers."""

    def __init__(self, bus: Bus, block_ms: int = 1000, on_lag: Callable[[str], None] | None = None) -> None:
        self.bus = bus
        self.block_ms = block_ms
        self.on_lag = on_lag or (lambda _: None)
        self._subs: dict[str, set[Subscriber]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started: dict[str, asyncio.Future[None]] = {}
        """Per room, the start of its reader (shared by the joins that arrive while it starts)."""

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def join(self, room: str, limit: int) -> Subscriber:
        """Register a subscriber; entries published from now on reach its buffer.

        The first join of a room starts its one reader at the stream's newest id; joins arriving
        during that round trip wait for the same start instead of starting a second reader (two
        readers would hand every entry to every buffer twice)."""
        sub = Subscriber(limit)
        self._subs.setdefault(room, set()).add(sub)
        try:
            started = self._started.get(room)
            if started is None:
                started = self._started[room] = asyncio.ensure_future(self._start(room))
            await asyncio.shield(started)
        except BaseException:
            self.leave(room, sub)
            raise
        return sub

    async def _start(self, room: str) -> None:
        try:
            start = await self.bus.last_id(room_stream(room))
        except BaseException:
            self._started.pop(room, None)
            raise
        if room in self._subs:  # everyone may have left during the round trip
            self._tasks[room] = asyncio.create_task(self._read(room, start))
        else:
            self._started.pop(room, None)

    def leave(self, room: str, sub: Subscriber) -> None:
        subs = self._subs.get(room)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[room]
            if room in self._tasks:
                self._started.pop(room, None)
            task = self._tasks.pop(room, None)
            if task is not None:
                task.cancel()

    async def _read(self, room: str, last: str) -> None:
        stream = room_stream(room)
        while True:
            try:
                entries = await self.bus.tail({stream: last}, count=500, block_ms=self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bus down: keep the subscribers, retry
                log.error("room read failed", extra={"room": room, "error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            if not entries:
                continue
            last = entries[-1].id
            chunk = Chunk(entries)
            for sub in list(self._subs.get(room, ())):
                if not sub.lagged.is_set() and not sub.offer(chunk):
                    self.on_lag(room)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._started.clear()
        self._subs.clear()
