"""Events per room: the fan-out stage that files each EmotionEvent into its room's bounded stream, the
subscriber filters, and the per-room hub that reads a room stream once for all its live subscribers.

A room stream is ``events:<room>``, capped like every stream at ``bus.maxlen`` entries (the retention);
its entry ids are the SSE ``id:`` values and the ``since=`` cursors. Delivery into it is at-least-once
(a fan-out handler that crashed after publishing may file an event twice, with the same event ``id``).
Besides EmotionEvents it holds the room's :class:`~emostream.schema.Dropped` records (an utterance that
was dead-lettered and will have no event), filed from the ``dropped`` stream the same way, so a
subscriber learns of a lost utterance in order with the events instead of by its silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from emostream.bus.base import Bus, Delivery, Entry
from emostream.runtime import metrics
from emostream.runtime.errors import GroupMissing
from emostream.schema import EMOTIONS, Dropped, EmotionEvent, SchemaError, decode_checked

log = logging.getLogger("emostream.server")

PREFIX = "events:"


def room_stream(room: str) -> str:
    return PREFIX + room


def id_key(entry_id: str) -> tuple[int, int]:
    """Stream ids order as (ms, seq) pairs."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def valid_id(entry_id: str) -> bool:
    try:
        id_key(entry_id)
    except ValueError:
        return False
    return True


GROUP = "rooms"


async def fan_out(
    bus: Bus,
    consumer: str,
    stop: asyncio.Event,
    ready: asyncio.Event,
    block_ms: int = 200,
    claim_idle_ms: int = 30_000,
) -> int:
    """``events`` (and ``dropped``) -> ``events:<room>`` through the ``rooms`` consumer group, shared by every serve
    process. Not a Stage: the stage runtime handles one message per handler, and a room needs its order
    kept at 1,000 events/s, so this reads batches, files them in order (one ``publish_many`` per room)
    and acks the batch after. Entries left pending by a crashed consumer are claimed first, like stages
    do. Returns how many events were filed."""
    streams = [EmotionEvent.stream, Dropped.stream]
    kinds: dict[str, type[EmotionEvent] | type[Dropped]] = {
        EmotionEvent.stream: EmotionEvent,
        Dropped.stream: Dropped,
    }
    for stream in streams:
        await bus.ensure_group(stream, GROUP, "$")
    ready.set()
    filed = 0
    next_claim = 0.0
    while not stop.is_set():
        try:
            batch: list[Delivery] = []
            if time.monotonic() >= next_claim:
                next_claim = time.monotonic() + max(0.1, claim_idle_ms / 2000)
                for stream in streams:
                    batch += await bus.claim_stale(stream, GROUP, consumer, claim_idle_ms, 500)
            if not batch:
                batch = await bus.read_group(streams, GROUP, consumer, 500, block_ms)
            if not batch:
                continue
            per_room: dict[str, list[bytes]] = {}
            bad: list[Delivery] = []
            for d in batch:
                try:
                    room = decode_checked(d.data, kinds[d.stream]).room
                except SchemaError as exc:
                    bad.append(d)
                    log.warning("bad event", extra={"stream": d.stream, "id": d.id, "error": str(exc)})
                    continue
                per_room.setdefault(room, []).append(d.data)
            for room, items in per_room.items():
                await bus.publish_many(room_stream(room), items)
                filed += len(items)
            for d in bad:
                await bus.dead_letter(d, GROUP, f"not a {kinds[d.stream].__name__}")
            for stream in streams:
                done = [d.id for d in batch if d.stream == stream and d not in bad]
                if done:
                    await bus.ack(stream, GROUP, done)
        except asyncio.CancelledError:
            raise
        except GroupMissing:  # Redis came back without our groups: everything in it now is unfiled
            log.warning("room fan-out group vanished; recreating it", extra={"group": GROUP})
            with contextlib.suppress(Exception):
                for stream in streams:
                    await bus.ensure_group(stream, GROUP, "0")
        except Exception as exc:  # bus down: keep trying until stopped
            log.error("room fan-out failed", extra={"error": str(exc)})
            await asyncio.sleep(1.0)
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
            raise ValueError(f"min_confidence={conf!r} is not a number in [0, 1]") from None
        labels = None
        if query.get("labels"):
            labels = frozenset(x.strip() for x in query["labels"].split(",") if x.strip())
            unknown = labels - set(EMOTIONS)
            if unknown:
                raise ValueError(f"unknown label(s) {', '.join(sorted(unknown))}: use {', '.join(EMOTIONS)}")
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


@dataclass(eq=False)
class Subscriber:
    """One connection's bounded buffer of live entries; ``lagged`` is set when it overflowed.

    A deque and an Event rather than an asyncio.Queue: the hub appends every entry for every
    subscriber (50,000 appends/s in ``bench events``) and the writer takes all of them at once."""

    limit: int
    items: deque[Entry] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lagged: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, entry: Entry) -> bool:
        """Buffer ``entry``; False (and ``lagged`` set) when the buffer is full."""
        if len(self.items) >= self.limit:
            self.lagged.set()
            self.wake.set()
            return False
        self.items.append(entry)
        self.wake.set()
        return True

    def take(self) -> list[Entry]:
        batch = list(self.items)
        self.items.clear()
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

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def join(self, room: str, limit: int) -> Subscriber:
        """Register a subscriber; entries published from now on reach its buffer."""
        sub = Subscriber(limit)
        subs = self._subs.setdefault(room, set())
        subs.add(sub)
        if room not in self._tasks:
            start = await self.bus.last_id(room_stream(room))
            self._tasks[room] = asyncio.create_task(self._read(room, start))
        return sub

    def leave(self, room: str, sub: Subscriber) -> None:
        subs = self._subs.get(room)
        if subs is None:
            return
        subs.discard(sub)
        if not subs:
            del self._subs[room]
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
            for entry in entries:
                last = entry.id
                for sub in list(self._subs.get(room, ())):
                    if not sub.lagged.is_set() and not sub.offer(entry):
                        self.on_lag(room)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._subs.clear()
