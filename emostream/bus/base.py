"""The Bus interface every stage talks to, with Redis Streams semantics.

Two real implementations: :mod:`emostream.bus.memory` (embedded, in-process, bounded) and
:mod:`emostream.bus.redis` (Redis Streams consumer groups). Stages never know which one they run on.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message handed to a consumer of a group; ack it by ``(stream, id)``."""

    stream: str
    id: str
    data: bytes
    deliveries: int = 1
    """How many times this message has been delivered to the group (1 on first delivery)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One message read without a group (tailing a stream)."""

    stream: str
    id: str
    data: bytes


def dead_stream(stream: str) -> str:
    """Name of a stream's dead-letter stream."""
    return f"{stream}:dead"


class Bus(abc.ABC):
    """Streams of bytes with consumer groups, at-least-once delivery, plus blobs with a TTL."""

    url: str = ""

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
        """Store media bytes under ``key`` for ``ttl_s`` seconds; return the ref to put in messages."""

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

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry ("0-0" when empty): a race-free start for ``tail`` ("$" is not)."""
        return "$"

    async def streams(self, prefix: str) -> list[str]:
        """Names of the streams starting with ``prefix`` (e.g. every room's event stream)."""
        return []

    async def release(self, stream: str, group: str, ids: list[str]) -> None:  # noqa: B027
        """Hand un-acked entries back: any consumer's next ``claim_stale`` may take them at once."""

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

        record = DeadLetter(
            stream=delivery.stream,
            id=delivery.id,
            reason=reason,
            payload=delivery.data,
            deliveries=delivery.deliveries,
            group=group,
            at=now(),
        )
        await self.publish(dead_stream(delivery.stream), encode(record))
        await self.ack(delivery.stream, group, [delivery.id])
