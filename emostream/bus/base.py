"""The Bus interface every stage talks to, with Redis Streams semantics.

Two real implementations: :mod:`emostream.bus.memory` (embedded, in-process, bounded) and
:mod:`emostream.bus.redis` (Redis Streams consumer groups). Stages never know which one they run on.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emostream.config import retention_in
from emostream.errors import UserError

if TYPE_CHECKING:
    from emostream.config import BusSettings
    from emostream.schema import Message

log = logging.getLogger("emostream.bus")

DEAD_PAYLOAD_BYTES = 4096
"""A dead letter keeps at most this much of an oversized payload (the record must fit the stream)."""


class BusFull(UserError):
    """A publish waited ``bus.publish_timeout_s`` for room in a stream full of un-acked entries."""


class TooLarge(UserError):
    """A message or blob is bigger than ``bus.max_message_bytes`` / ``bus.max_blob_bytes``."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer of a group; ack it by ``(stream, id)``."""

    stream: str
    id: str
    data: bytes
    deliveries: int = 1
    """How many times this message has been delivered to the group (1 on first delivery)."""
    error: str = ""
    """Why the entry cannot be a message at all (e.g. no ``d`` field): the runtime dead-letters it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One message read without a group (tailing a stream)."""

    stream: str
    id: str
    data: bytes
    error: str = ""
    """Why the entry cannot be a message at all (followers skip and count it)."""


def dead_stream(stream: str) -> str:
    """Name of a stream's dead-letter stream."""
    return f"{stream}:dead"


class Bus(abc.ABC):
    """Streams of bytes with consumer groups, at-least-once delivery, plus blobs with a TTL."""

    url: str = ""
    maxlen: int = 10_000
    publish_timeout_s: float = 30.0
    max_message_bytes: int = 1 << 20
    max_blob_bytes: int = 16 << 20
    retention_s: float = 0.0
    retention: dict[str, float] | None = None
    blob_hold_s: float = 3600.0

    def configure(self, opts: BusSettings) -> None:
        """Take caps, timeouts and retention from the settings (``open_bus`` calls it)."""
        self.maxlen = max(1, opts.maxlen)
        self.publish_timeout_s = opts.publish_timeout_s
        self.max_message_bytes = opts.max_message_bytes
        self.max_blob_bytes = opts.max_blob_bytes
        self.retention_s = opts.retention_s
        self.retention = dict(opts.retention)
        self.blob_hold_s = opts.blob_hold_s

    def retention_of(self, stream: str) -> float:
        """Seconds entries of ``stream`` are kept once acked by every group (0 = until maxlen)."""
        return retention_in(self.retention or {}, self.retention_s, stream)

    def check_size(self, stream: str, data: bytes) -> None:
        """Refuse (counted, one line) a message bigger than ``bus.max_message_bytes``."""
        if len(data) > self.max_message_bytes:
            refused(stream, "too_large", f"{len(data)} bytes > bus.max_message_bytes")
            raise TooLarge(
                f"message for stream {stream} is {len(data)} bytes, over bus.max_message_bytes="
                f"{self.max_message_bytes}: send less or raise the cap"
            )

    def check_blob(self, key: str, data: bytes) -> None:
        if len(data) > self.max_blob_bytes:
            refused("blob", "too_large", f"{key}: {len(data)} bytes > bus.max_blob_bytes")
            raise TooLarge(
                f"blob {key} is {len(data)} bytes, over bus.max_blob_bytes={self.max_blob_bytes}: "
                "send shorter media or raise the cap"
            )

    def full(self, stream: str) -> BusFull:
        """The loud, counted refusal of a publish that waited ``publish_timeout_s`` in vain."""
        refused(stream, "full", f"{self.maxlen} un-acked entries for {self.publish_timeout_s:g} s")
        return BusFull(
            f"stream {stream} is full ({self.maxlen} entries its consumers have not acked) after "
            f"{self.publish_timeout_s:g} s: start or speed up its consumers, or raise bus.maxlen"
        )

    async def trim(self, stream: str) -> None:  # noqa: B027 - optional hook
        """Apply retention and the cap now (publishes do it too; this is for quiet streams)."""

    @abc.abstractmethod
    async def publish(self, stream: str, data: bytes) -> str:
        """Append ``data`` to ``stream`` (approximately trimmed to maxlen); return its id."""

    @abc.abstractmethod
    async def ensure_group(self, stream: str, group: str, start: str = "0") -> None:
        """Create consumer ``group`` on ``stream`` (and the stream) if missing. Idempotent."""

    @abc.abstractmethod
    async def read_group(
        self, streams: list[str], group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """New messages for this consumer (XREADGROUP ... >); waits up to ``block_ms`` for some."""

    @abc.abstractmethod
    async def ack(self, stream: str, group: str, ids: list[str]) -> None:
        """Acknowledge processed messages (XACK). Only after the outputs are published."""

    @abc.abstractmethod
    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        """Take over messages pending longer than ``min_idle_ms`` on other consumers (XAUTOCLAIM)."""

    @abc.abstractmethod
    async def pending_count(self, stream: str, group: str) -> int:
        """Delivered but not yet acknowledged messages of the group."""

    @abc.abstractmethod
    async def lag(self, stream: str, group: str) -> int:
        """Messages in the stream not yet delivered to the group (consumer lag)."""

    @abc.abstractmethod
    async def tail(self, streams: dict[str, str], count: int, block_ms: int) -> list[Entry]:
        """Read without a group from each ``stream -> last seen id`` ("$" = only new ones)."""

    @abc.abstractmethod
    async def length(self, stream: str) -> int:
        """Number of messages currently in the stream."""

    @abc.abstractmethod
    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> str:
        """Store media bytes under ``key``; return the ref to put in messages.

        Lifetime (docs/resilience.md, "Media lifetime"): ``ttl_s`` while no waiting message refers to
        it; a publish of a message that refers to it (see :func:`blob_refs`) to a stream with consumer
        groups counts one reference per group and keeps the blob at least ``bus.blob_hold_s`` (renewed
        when such a message is reclaimed); the ack that drops the last reference deletes it. Storing
        an existing key again replaces the bytes but keeps its references and never shortens its life
        (a producer that refers to the same media again re-stores it first)."""

    @abc.abstractmethod
    async def get_blob(self, ref: str) -> bytes | None:
        """The blob's bytes, or None when it expired or never existed."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections/tasks."""

    async def publish_many(self, stream: str, items: list[bytes]) -> list[str]:
        """Append several messages in order (Redis: one round trip); return their ids."""
        return [await self.publish(stream, data) for data in items]

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Fail fast (one-line UserError) when the bus cannot be reached."""

    async def publish_and_ack(
        self, outputs: list[tuple[str, bytes]], stream: str, group: str, entry_id: str
    ) -> None:
        """Publish ``(stream, data)`` outputs, then ack the input (Redis: one pipeline shared with the
        commits of other handlers finishing at the same time)."""
        for target, data in outputs:
            await self.publish(target, data)
        await self.ack(stream, group, [entry_id])

    @abc.abstractmethod
    async def group_cursor(self, stream: str, group: str) -> str:
        """The id of the last entry delivered to ``group`` ("0-0" when none); GroupMissing if absent."""

    @abc.abstractmethod
    async def advance_group(
        self, stream: str, group: str, expected: str, last: str, outputs: list[tuple[str, bytes]]
    ) -> str | None:
        """Publish ``outputs`` in order and move ``group``'s cursor from ``expected`` to ``last``, as one
        step and only while the cursor is still at ``expected`` (compare-and-set). None when done; else
        the group's cursor now (another writer filed that range first) and nothing is published. An
        ordered, exactly-once copy of a stream for any number of writers, with no pending entries to
        reclaim; the cursor still holds the stream's trimming like any group."""

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry ("0-0" when empty): a race-free start for ``tail`` ("$" is not)."""
        return "$"

    async def streams(self, prefix: str) -> list[str]:
        """Names of the streams starting with ``prefix`` (e.g. every room's event stream)."""
        return []

    async def release(self, stream: str, group: str, ids: list[str]) -> None:  # noqa: B027
        """Hand un-acked entries back: any consumer's next ``claim_stale`` may take them at once."""

    async def pending_ids(self, stream: str, group: str, consumer: str, count: int) -> list[str]:
        """Ids delivered to ``consumer`` and not acked, oldest first (what a crashed process of that
        name left behind)."""
        return []

    async def prune_consumers(self, stream: str, group: str, idle_ms: int) -> int:
        """Forget consumers idle for ``idle_ms`` with nothing pending (workers that are gone); returns
        how many. The in-memory bus keeps no consumer list, so there is nothing to prune."""
        return 0

    async def pending_of(self, stream: str, group: str, consumer: str) -> int:
        """Un-acked messages held by one consumer (default: the whole group's)."""
        return await self.pending_count(stream, group)

    async def dead_letter(self, delivery: Delivery, group: str, reason: str) -> None:
        """Move a delivery to ``<stream>:dead`` with the reason, then ack it so it is not retried."""
        from emostream.schema import DeadLetter, encode, now

        payload = delivery.data
        if len(payload) > min(DEAD_PAYLOAD_BYTES, self.max_message_bytes // 2):
            payload = payload[:DEAD_PAYLOAD_BYTES]
            reason += f" (payload of {len(delivery.data)} bytes truncated to {len(payload)})"
        record = DeadLetter(
            stream=delivery.stream,
            id=delivery.id,
            reason=reason,
            payload=payload,
            deliveries=delivery.deliveries,
            group=group,
            at=now(),
        )
        dead = dead_stream(delivery.stream)
        dead_id = await self.publish(dead, encode(record))
        notice = dropped_notice(delivery, group, reason, dead, dead_id)
        if notice is not None:
            await self.publish(type(notice).stream, encode(notice))
        await self.ack(delivery.stream, group, [delivery.id])


BLOB_FIELDS = frozenset({"audio", "blob", "crop"})
"""Message fields that hold blob refs (Utterance/PartialAudio ``audio``, FrameRef ``blob``, FaceFrame
``crop``); only these count, so a ``text`` that happens to read ``blob:...`` refers to nothing."""


def blob_refs(data: bytes) -> list[str]:
    """The blob refs an encoded message refers to, in order, without repeats (cheap when none)."""
    if b"blob:" not in data:
        return []
    import msgspec

    try:
        tree = msgspec.msgpack.decode(data)
    except Exception:  # not a message: it refers to nothing (its reader dead-letters it)
        return []
    refs: dict[str, None] = {}
    todo: list[object] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in BLOB_FIELDS and isinstance(v, str) and v.startswith("blob:"):
                    refs[v] = None
                elif isinstance(v, dict | list):
                    todo.append(v)
        elif isinstance(node, list):
            todo.extend(v for v in node if isinstance(v, dict | list))
    return list(refs)


def refused(stream: str, reason: str, detail: str) -> None:
    """Count and log a refused publish (the caller raises the one-line error)."""
    from emostream.runtime import metrics

    metrics.REFUSED.labels(stream, reason).inc()
    log.error("publish refused", extra={"stream": stream, "reason": reason, "detail": detail})


def dropped_notice(delivery: Delivery, group: str, reason: str, dead: str, dead_id: str) -> Message | None:
    """A :class:`~emostream.schema.Dropped` for a dead-lettered message about an utterance (None when
    the payload names none, e.g. garbage), so subscribers learn that an utterance will not arrive."""
    import msgspec

    from emostream.schema import Dropped, now

    if delivery.stream == Dropped.stream:
        return None
    try:
        fields = msgspec.msgpack.decode(delivery.data)
        room, speaker, utterance = fields["room"], fields["speaker"], fields["utterance"]
        session = fields.get("session", "")
        if not (isinstance(room, str) and isinstance(speaker, str) and isinstance(utterance, int)):
            return None
        if not isinstance(session, str):
            session = ""
    except Exception:  # not a msgpack map with an utterance key: nothing to announce
        return None
    return Dropped(
        room=room,
        speaker=speaker,
        utterance=utterance,
        session=session,
        source=delivery.stream,
        reason=reason,
        group=group,
        dead_stream=dead,
        dead_id=dead_id,
        at=now(),
    )
