"""Undecodable messages, unknown schema versions and handlers that keep failing go to ``<stream>:dead``
with a reason; the worker keeps running."""

from __future__ import annotations

import asyncio

import msgspec

from emostream.bus import Bus, dead_stream
from emostream.runtime.errors import BlobExpired
from emostream.runtime.stage import Emit, Stage, StageContext, run_stage
from emostream.schema import DeadLetter, decode, encode
from emostream.testing.harness import SINK, collect, fast_settings, pings, wait_until
from emostream.testing.toy import Ping, relay, stream_of


async def _dead_letters(bus: Bus, stream: str, n: int) -> list[DeadLetter]:
    await wait_until(lambda: _has(bus, dead_stream(stream), n), what=f"{n} dead letters")
    entries = await bus.tail({dead_stream(stream): "0-0"}, count=100, block_ms=10)
    return [decode(e.data, DeadLetter) for e in entries]  # type: ignore[type-var]


async def _has(bus: Bus, stream: str, n: int) -> bool:
    return await bus.length(stream) >= n


async def test_malformed_and_future_version_are_dead_lettered(bus: Bus) -> None:
    settings = fast_settings(bus.url)
    await bus.ensure_group(stream_of(1), SINK, "0")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="w", stop=stop))

    garbage_id = await bus.publish(stream_of(0), b"\xc1 this is not msgpack")
    wrong_id = await bus.publish(stream_of(0), msgspec.msgpack.encode({"id": 7, "n": "seven"}))
    future = Ping(id="future", v=99)
    future_id = await bus.publish(stream_of(0), encode(future))
    await bus.publish_many(stream_of(0), pings(3))

    dead = {d.id: d for d in await _dead_letters(bus, stream_of(0), 3)}
    assert set(dead) == {garbage_id, wrong_id, future_id}
    assert dead[garbage_id].reason.startswith("not a valid Ping")
    assert "Expected `str`, got `int`" in dead[wrong_id].reason
    assert "schema version 99" in dead[future_id].reason and "upgrade the consumer" in dead[future_id].reason
    assert dead[future_id].payload == encode(future) and dead[future_id].group == "toy1"

    # the worker is alive and still processing
    seen = await collect(bus, stream_of(1), {"m0", "m1", "m2"}, settle_s=0)
    assert set(seen) == {"m0", "m1", "m2"}
    await bus.publish_many(stream_of(0), pings(1, start=10))
    assert set(await collect(bus, stream_of(1), {"m10"}, settle_s=0)) == {"m10"}
    assert not worker.done()
    assert await bus.pending_count(stream_of(0), "toy1") == 0
    stop.set()
    stats = await worker
    assert stats.dead_lettered == 3 and stats.processed == 4


class Flaky(Stage):
    """Fails on message n == 13 every time; passes everything else through."""

    def __init__(self) -> None:
        super().__init__("flaky")
        self.on(Ping, self.ping, stream=stream_of(0))

    async def ping(self, message: Ping, ctx: StageContext) -> list[Emit]:
        if message.n == 13:
            raise RuntimeError("unlucky number")
        return [Emit(message, stream_of(1))]


async def test_failing_handler_is_retried_then_dead_lettered(bus: Bus) -> None:
    settings = fast_settings(bus.url, max_deliveries=3, claim_idle_ms=50)
    await bus.ensure_group(stream_of(1), SINK, "0")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_stage(Flaky(), bus, settings, consumer="w", stop=stop))
    await bus.publish_many(stream_of(0), pings(20))

    (dead,) = await _dead_letters(bus, stream_of(0), 1)
    assert decode(dead.payload, Ping).n == 13
    assert dead.deliveries == 3 and "failed 3 times" in dead.reason and "unlucky number" in dead.reason
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(20) if i != 13})
    assert "m13" not in seen
    stop.set()
    stats = await worker
    assert stats.failed == 3 and stats.dead_lettered == 1 and stats.processed == 19
    assert await bus.pending_count(stream_of(0), "flaky") == 0


async def test_delivery_limit_counts_deliveries_to_dead_consumers(bus: Bus) -> None:
    """A message that already burned its deliveries elsewhere (crashing consumers) is not retried."""
    settings = fast_settings(bus.url, max_deliveries=2, claim_idle_ms=0)
    await bus.ensure_group(stream_of(0), "toy1", "0")
    (poison_id,) = await bus.publish_many(stream_of(0), pings(1))
    for consumer in ("crashed-1", "crashed-2"):  # two consumers took it and died without acking
        if consumer == "crashed-1":
            assert len(await bus.read_group([stream_of(0)], "toy1", consumer, 10, 10)) == 1
        else:
            (again,) = await bus.claim_stale(stream_of(0), "toy1", consumer, 0, 10)
            assert again.deliveries == 2
    stop = asyncio.Event()
    worker = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="w", stop=stop))
    (dead,) = await _dead_letters(bus, stream_of(0), 1)
    stop.set()
    await worker
    assert dead.id == poison_id and dead.deliveries == 3
    assert dead.reason.startswith("delivered 3 times (max 2)")
    assert await bus.length(stream_of(1)) == 0


class Picky(Stage):
    """Rejects message n == 7 (it can never be handled); passes everything else through."""

    def __init__(self) -> None:
        super().__init__("picky")
        self.on(Ping, self.ping, stream=stream_of(0))

    async def ping(self, message: Ping, ctx: StageContext) -> list[Emit]:
        if message.n == 7:
            raise BlobExpired(f"audio blob of {message.id} is missing or expired (TTL)")
        return [Emit(message, stream_of(1))]


async def test_reject_is_dead_lettered_at_once_with_its_reason(bus: Bus) -> None:
    settings = fast_settings(bus.url, max_deliveries=5, claim_idle_ms=50)
    await bus.ensure_group(stream_of(1), SINK, "0")
    stop = asyncio.Event()
    worker = asyncio.create_task(run_stage(Picky(), bus, settings, consumer="w", stop=stop))
    await bus.publish_many(stream_of(0), pings(10))

    (dead,) = await _dead_letters(bus, stream_of(0), 1)
    assert decode(dead.payload, Ping).n == 7
    assert dead.deliveries == 1 and dead.reason == "audio blob of m7 is missing or expired (TTL)"
    await collect(bus, stream_of(1), {f"m{i}" for i in range(10) if i != 7})
    stop.set()
    stats = await worker
    assert stats.failed == 0 and stats.dead_lettered == 1 and stats.processed == 9
    assert await bus.pending_count(stream_of(0), "picky") == 0
