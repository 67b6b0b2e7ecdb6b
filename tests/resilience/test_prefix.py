"""Issue 13 (prefix): every stream and blob key carries ``bus.prefix``, so a shared Redis and an ACL user
can be scoped to emostream's keys."""

from __future__ import annotations

import redis

from emostream.bus import open_bus
from emostream.config import BusSettings


async def test_every_key_carries_the_prefix(flush_redis: str) -> None:
    bus = open_bus(flush_redis, BusSettings(url=flush_redis, prefix="tenant7:"))
    try:
        await bus.ensure_group("transcripts", "context", "0")
        await bus.publish("transcripts", b"garbage")  # dead-lettered below: a dead stream too
        (d,) = await bus.read_group(["transcripts"], "context", "c", 10, 10)
        await bus.dead_letter(d, "context", "test")
        ref = await bus.put_blob("r/a/1.f32", b"\x00" * 8, 60)
        assert await bus.get_blob(ref) == b"\x00" * 8
        assert [e.stream for e in await bus.tail({"transcripts": "0-0"}, 10, 10)] == ["transcripts"]
    finally:
        await bus.close()
    raw = redis.Redis.from_url(flush_redis)
    keys = sorted(k.decode() for k in raw.keys("*"))
    raw.close()
    assert keys == ["tenant7:blob:r/a/1.f32", "tenant7:transcripts", "tenant7:transcripts:dead"]
