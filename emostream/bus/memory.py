"""The embedded in-memory bus: Redis Streams consumer-group semantics inside one asyncio process.

Same observable behaviour as :mod:`emostream.bus.redis`: ``<ms>-<seq>`` ids, one pending entries list
(PEL) per group with owner, delivery count and idle time, XAUTOCLAIM-style ``claim_stale``, ``tail``,
``lag`` and blobs that expire. It is the default bus of ``serve`` and ``replay`` (no server needed).

Bounded, with backpressure instead of loss. A stream keeps at most ``maxlen`` entries:
- a stream *without* consumer groups (events, dead letters) is a ring: the oldest entry is dropped,
  like Redis ``MAXLEN``;
- a stream *with* groups only drops entries every group has read and acknowledged. When it is full of
  entries some group still needs, ``publish`` waits for consumers to catch up (backpressure flows up to
  the producer) and raises :class:`BusFull` after ``publish_timeout_s``. Un-acked work is never dropped.
Entries older than the stream's retention (``bus.retention_s`` / ``bus.retention``) go too, under the
same rule. Messages over ``bus.max_message_bytes`` and blobs over ``bus.max_blob_bytes`` are refused.
Blobs are reference-counted like on Redis (:meth:`emostream.bus.base.Bus.put_blob`): held while a group
still has to read a message that refers to them, deleted by the last ack.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from emostream.bus.base import Bus, BusFull, Delivery, Entry, blob_refs
from emostream.runtime.errors import GroupMissing

__all__ = ["BusFull", "MemoryBus"]


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    count: int
    index: int


@dataclass(slots=True)
class _Blob:
    expires: float
    """``time.monotonic()`` second it expires unless a reference renews it."""
    data: bytes
    refs: int = 0
    """References by (stream entry, group) pairs not yet acked."""


@dataclass(slots=True)
class _Group:
    next_index: int
    """Absolute index of the first entry never delivered to this group."""
    pel: dict[str, _Pending] = field(default_factory=dict)
    cursor: str = "0-0"
    """The ``last`` of the latest :meth:`MemoryBus.advance_group` (its entry may be trimmed since)."""


@dataclass(slots=True)
class _Stream:
    ids: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)
    head: int = 0
    """Position in ``ids``/``data`` of the oldest live entry (the list is compacted lazily)."""
    base: int = 0
    """Absolute index of ``ids[0]``."""
    last_ms: int = 0
    last_seq: int = -1
    groups: dict[str, _Group] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids) - self.head

    @property
    def end(self) -> int:
        """Absolute index one past the newest entry."""
        return self.base + len(self.ids)

    @property
    def first(self) -> int:
        """Absolute index of the oldest live entry."""
        return self.base + self.head

    def at(self, index: int) -> tuple[str, bytes]:
        pos = index - self.base
        return self.ids[pos], self.data[pos]

    def next_id(self) -> str:
        ms = int(time.time() * 1000)
        if ms > self.last_ms:
            self.last_ms, self.last_seq = ms, 0
        else:
            self.last_seq += 1
        return f"{self.last_ms}-{self.last_seq}"

    def drop_oldest(self) -> None:
        self.head += 1
        if self.head > 1024 and self.head * 2 > len(self.ids):
            del self.ids[: self.head], self.data[: self.head]
            self.base += self.head
            self.head = 0

    def droppable(self) -> bool:
        """Whether the oldest entry is no longer needed by any group (read and acked by all)."""
        index = self.first
        entry_id = self.ids[self.head]
        return all(g.next_index > index and entry_id not in g.pel for g in self.groups.values())

    def index_after(self, entry_id: str) -> int:
        """Absolute index of the first entry with an id greater than ``entry_id``."""
        key = _key(entry_id)
        lo, hi = self.head, len(self.ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if _key(self.ids[mid]) <= key:
                lo = mid + 1
            else:
                hi = mid
        return self.base + lo


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class MemoryBus(Bus):
    """In-process streams with consumer groups; see the module docstring for the bounding policy."""

    def __init__(self, maxlen: int = 10_000, publish_timeout_s: float = 30.0) -> None:
        self.url = "memory://"
        self.maxlen = max(1, maxlen)
        self.publish_timeout_s = publish_timeout_s
        self._streams: dict[str, _Stream] = {}
        self._blobs: dict[str, _Blob] = {}
        self._blob_puts = 0
        self._waiters: dict[str, set[asyncio.Future[bool]]] = {}
        """Futures of blocked readers/publishers per stream, resolved by a publish or ack there."""
        self._advancing: dict[tuple[str, str], asyncio.Lock] = {}
        """advance_group's compare-and-set holds across its publishes (which may wait for room)."""

    def _stream(self, name: str) -> _Stream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = _Stream()
        return s

    def _notify(self, stream: str) -> None:
        for fut in self._waiters.pop(stream, ()):
            if not fut.done():
                fut.set_result(True)

    async def _wait(self, streams: list[str], timeout_s: float) -> bool:
        """Wait until one of ``streams`` changes, at most ``timeout_s``; False on timeout."""
        if timeout_s <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        for name in streams:
            self._waiters.setdefault(name, set()).add(fut)
        timer = loop.call_later(timeout_s, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            for name in streams:
                waiting = self._waiters.get(name)
                if waiting is not None:
                    waiting.discard(fut)

    def _expire_old(self, name: str, s: _Stream) -> None:
        """Drop entries older than the stream's retention that no group still needs."""
        retention = self.retention_of(name)
        if retention <= 0:
            return
        edge_ms = int((time.time() - retention) * 1000)
        while len(s) and _key(s.ids[s.head])[0] < edge_ms and (not s.groups or s.droppable()):
            s.drop_oldest()

    async def trim(self, stream: str) -> None:
        s = self._streams.get(stream)
        if s is not None:
            self._expire_old(stream, s)

    async def publish(self, stream: str, data: bytes) -> str:
        self.check_size(stream, data)
        s = self._stream(stream)
        self._expire_old(stream, s)
        deadline = time.monotonic() + self.publish_timeout_s
        while len(s) >= self.maxlen:
            if not s.groups or s.droppable():
                s.drop_oldest()
                continue
            if not await self._wait([stream], deadline - time.monotonic()) and len(s) >= self.maxlen:
                if not s.droppable():
                    raise self.full(stream)
        entry_id = s.next_id()
        s.ids.append(entry_id)
        s.data.append(bytes(data))
        if s.groups:
            self._hold(blob_refs(data), len(s.groups))
        self._notify(stream)
        return entry_id

    def _hold(self, refs: list[str], n: int) -> None:
        """``n`` more references to each of ``refs``; keep them at least ``blob_hold_s`` from now."""
        until = time.monotonic() + self.blob_hold_s
        for ref in refs:
            blob = self._live(ref)
            if blob is not None:
                blob.refs += n
                blob.expires = max(blob.expires, until)

    def _unref(self, refs: list[str]) -> None:
        for ref in refs:
            blob = self._live(ref)
            if blob is not None:
                blob.refs -= 1
                if blob.refs <= 0:
                    del self._blobs[ref]

    def _live(self, ref: str) -> _Blob | None:
        blob = self._blobs.get(ref)
        if blob is not None and blob.expires <= time.monotonic():
            del self._blobs[ref]
            return None
        return blob

    async def ensure_group(self, stream: str, group: str, start: str = "0") -> None:
        s = self._stream(stream)
        if group in s.groups:
            return
        if start == "$":
            index = s.end
        elif start in ("0", "0-0"):
            index = s.first
        else:
            index = s.index_after(start)
        s.groups[group] = _Group(next_index=index)

    def _group(self, stream: str, group: str) -> _Group:
        g = self._streams[stream].groups.get(group) if stream in self._streams else None
        if g is None:
            raise GroupMissing(f"no consumer group {group} on stream {stream}: call ensure_group first")
        return g

    async def read_group(
        self, streams: list[str], group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        deadline = time.monotonic() + block_ms / 1000
        while True:
            out: list[Delivery] = []
            now = time.monotonic()
            for name in streams:
                s, g = self._streams.get(name), self._group(name, group)
                assert s is not None
                g.next_index = max(g.next_index, s.first)
                while g.next_index < s.end and len(out) < count:
                    entry_id, data = s.at(g.next_index)
                    g.pel[entry_id] = _Pending(consumer, now, 1, g.next_index)
                    g.next_index += 1
                    out.append(Delivery(name, entry_id, data, 1))
            if out or not await self._wait(streams, deadline - time.monotonic()):
                return out

    async def ack(self, stream: str, group: str, ids: list[str]) -> None:
        g, s = self._group(stream, group), self._streams[stream]
        for entry_id in ids:
            p = g.pel.pop(entry_id, None)
            if p is not None and p.index >= s.first:
                self._unref(blob_refs(s.at(p.index)[1]))
        self._notify(stream)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        g, s = self._group(stream, group), self._streams[stream]
        now = time.monotonic()
        out: list[Delivery] = []
        for entry_id, p in sorted(g.pel.items(), key=lambda kv: kv[1].index):
            if len(out) >= count:
                break
            if (now - p.delivered_at) * 1000 < min_idle_ms:
                continue
            if p.index < s.first:  # trimmed while pending (cannot happen with groups; defensive)
                del g.pel[entry_id]
                continue
            p.consumer, p.delivered_at, p.count = consumer, now, p.count + 1
            data = s.at(p.index)[1]
            self._hold(blob_refs(data), 0)  # a retry still needs the media: renew its lease
            out.append(Delivery(stream, entry_id, data, p.count))
        return out

    async def pending_ids(self, stream: str, group: str, consumer: str, count: int) -> list[str]:
        pel = sorted(self._group(stream, group).pel.items(), key=lambda kv: kv[1].index)
        return [entry_id for entry_id, p in pel if p.consumer == consumer][:count]

    async def release(self, stream: str, group: str, ids: list[str]) -> None:
        g = self._group(stream, group)
        for entry_id in ids:
            p = g.pel.get(entry_id)
            if p is not None:
                p.delivered_at = float("-inf")

    async def group_cursor(self, stream: str, group: str) -> str:
        g, s = self._group(stream, group), self._streams[stream]
        return s.at(g.next_index - 1)[0] if g.next_index > s.first else g.cursor

    async def advance_group(
        self, stream: str, group: str, expected: str, last: str, outputs: list[tuple[str, bytes]]
    ) -> str | None:
        async with self._advancing.setdefault((stream, group), asyncio.Lock()):
            now = await self.group_cursor(stream, group)
            if now != expected:
                return now
            for target, data in outputs:
                self.check_size(target, data)
            for target, data in outputs:
                await self.publish(target, data)
            g, s = self._group(stream, group), self._streams[stream]
            g.next_index = max(g.next_index, s.index_after(last))
            g.cursor = last
            self._notify(stream)
        return None

    async def pending_count(self, stream: str, group: str) -> int:
        return len(self._group(stream, group).pel)

    async def pending_of(self, stream: str, group: str, consumer: str) -> int:
        return sum(1 for p in self._group(stream, group).pel.values() if p.consumer == consumer)

    async def lag(self, stream: str, group: str) -> int:
        s, g = self._streams[stream], self._group(stream, group)
        return max(0, s.end - max(g.next_index, s.first))

    async def tail(self, streams: dict[str, str], count: int, block_ms: int) -> list[Entry]:
        starts: dict[str, int] = {}
        for name, last in streams.items():
            s = self._stream(name)
            starts[name] = s.end if last == "$" else s.index_after(last)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            out: list[Entry] = []
            for name, start in starts.items():
                s = self._streams[name]
                index = max(start, s.first)
                while index < s.end and len(out) < count:
                    entry_id, data = s.at(index)
                    out.append(Entry(name, entry_id, data))
                    index += 1
            if out or not await self._wait(list(starts), deadline - time.monotonic()):
                return out

    async def last_id(self, stream: str) -> str:
        s = self._streams.get(stream)
        return s.ids[-1] if s is not None and len(s) else "0-0"

    async def streams(self, prefix: str) -> list[str]:
        return [name for name, s in self._streams.items() if name.startswith(prefix) and len(s)]

    async def length(self, stream: str) -> int:
        s = self._streams.get(stream)
        return len(s) if s is not None else 0

    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> str:
        self.check_blob(key, data)
        now = time.monotonic()
        self._blob_puts += 1
        if self._blob_puts % 256 == 0:
            for k in [k for k, b in self._blobs.items() if b.expires <= now]:
                del self._blobs[k]
        ref = f"blob:{key}"
        old = self._live(ref)
        if old is None:
            self._blobs[ref] = _Blob(now + ttl_s, bytes(data))
        else:
            old.data, old.expires = bytes(data), max(old.expires, now + ttl_s)
        return ref

    async def get_blob(self, ref: str) -> bytes | None:
        blob = self._live(ref)
        return None if blob is None else blob.data

    async def close(self) -> None:
        self._streams.clear()
        self._blobs.clear()
