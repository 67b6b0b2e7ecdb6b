"""Bus semantics, the same cases on the in-memory bus and on a real Redis (Redis Streams behaviour)."""

from __future__ import annotations

import asyncio
import time

import pytest

from emostream.bus import Bus, open_bus
from emostream.bus.memory import BusFull, MemoryBus
from emostream.config import BusSettings
from emostream.errors import UserError


def _key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def test_ids_order_and_one_delivery_per_group(bus: Bus) -> None:
    await bus.ensure_group("s", "g", "0")
    await bus.ensure_group("s", "g", "0")  # idempotent (BUSYGROUP ignored)
    await bus.ensure_group("s", "other", "0")
    ids = [await bus.publish("s", f"m{i}".encode()) for i in range(10)]
    assert all(_key(a) < _key(b) for a, b in zip(ids, ids[1:], strict=False))
    a = await bus.read_group(["s"], "g", "a", 4, 10)
    b = await bus.read_group(["s"], "g", "b", 100, 10)
    assert [d.id for d in a + b] == ids and all(d.deliveries == 1 for d in a + b)
    assert [d.data for d in a] == [b"m0", b"m1", b"m2", b"m3"]
    assert await bus.read_group(["s"], "g", "a", 10, 10) == []  # nothing new
    assert len(await bus.read_group(["s"], "other", "x", 100, 10)) == 10  # every group gets all
    assert await bus.pending_count("s", "g") == 10
    assert await bus.pending_of("s", "g", "a") == 4
    await bus.ack("s", "g", [d.id for d in a])
    assert await bus.pending_count("s", "g") == 6 and await bus.pending_of("s", "g", "a") == 0


async def test_group_start_and_lag(bus: Bus) -> None:
    for i in range(5):
        await bus.publish("s", b"old%d" % i)
    await bus.ensure_group("s", "from-start", "0")
    await bus.ensure_group("s", "new-only", "$")
    await bus.publish("s", b"new")
    assert await bus.lag("s", "from-start") == 6 and await bus.lag("s", "new-only") == 1
    got = await bus.read_group(["s"], "new-only", "c", 10, 10)
    assert [d.data for d in got] == [b"new"] and await bus.lag("s", "new-only") == 0
    await bus.read_group(["s"], "from-start", "c", 2, 10)
    assert await bus.lag("s", "from-start") == 4
    assert await bus.length("s") == 6


async def test_read_blocks_until_a_publish(bus: Bus) -> None:
    await bus.ensure_group("s", "g", "$")
    t0 = time.monotonic()
    assert await bus.read_group(["s"], "g", "c", 10, 100) == []
    assert time.monotonic() - t0 >= 0.09
    await bus.ensure_group("t", "g2", "$")
    await bus.ensure_group("s", "g2", "$")
    reader = asyncio.create_task(bus.read_group(["s", "t"], "g2", "c", 10, 5_000))
    await asyncio.sleep(0.05)
    await bus.publish("t", b"hello")
    got = await asyncio.wait_for(reader, 2)
    assert [(d.stream, d.data) for d in got] == [("t", b"hello")]


async def test_claim_stale_takes_idle_entries_and_counts_deliveries(bus: Bus) -> None:
    await bus.ensure_group("s", "g", "0")
    ids = [await bus.publish("s", b"x%d" % i) for i in range(3)]
    await bus.read_group(["s"], "g", "dead", 10, 10)
    assert await bus.claim_stale("s", "g", "alive", 60_000, 10) == []  # not idle long enough
    await asyncio.sleep(0.06)
    got = await bus.claim_stale("s", "g", "alive", 50, 2)
    assert [d.id for d in got] == ids[:2] and all(d.deliveries == 2 for d in got)
    assert [d.data for d in got] == [b"x0", b"x1"]
    assert await bus.pending_of("s", "g", "alive") == 2 and await bus.pending_of("s", "g", "dead") == 1
    again = await bus.claim_stale("s", "g", "third", 0, 10)
    assert {d.id: d.deliveries for d in again} == {ids[0]: 3, ids[1]: 3, ids[2]: 2}


async def test_claim_stale_walks_the_whole_pending_list(bus: Bus) -> None:
    """More pending entries than one XAUTOCLAIM step scans: the cursor is followed to the end."""
    await bus.ensure_group("s", "g", "0")
    await bus.publish_many("s", [b"%d" % i for i in range(600)])
    got = await bus.read_group(["s"], "g", "dead", 600, 10)
    await bus.ack("s", "g", [d.id for d in got[:550]])  # only the last 50 stay pending
    await asyncio.sleep(0.01)
    claimed = await bus.claim_stale("s", "g", "alive", 0, 40)
    assert len(claimed) == 40 and claimed[0].data == b"550"
    rest = await bus.claim_stale("s", "g", "other", 10_000, 100)
    assert rest == []
    final = await bus.claim_stale("s", "g", "other", 0, 100)
    assert len(final) == 50


async def test_release_makes_work_claimable_at_once(bus: Bus) -> None:
    await bus.ensure_group("s", "g", "0")
    await bus.publish("s", b"a")
    (d,) = await bus.read_group(["s"], "g", "leaving", 1, 10)
    await bus.release("s", "g", [d.id])
    (taken,) = await bus.claim_stale("s", "g", "staying", 60_000, 10)
    assert taken.id == d.id and taken.deliveries == 2  # release itself adds no delivery


async def test_tail_from_an_id_and_only_new(bus: Bus) -> None:
    first = await bus.publish("e", b"1")
    await bus.publish("e", b"2")
    assert await bus.last_id("e") != first
    assert [e.data for e in await bus.tail({"e": "0-0"}, 10, 10)] == [b"1", b"2"]
    assert [e.data for e in await bus.tail({"e": first}, 10, 10)] == [b"2"]
    last = await bus.last_id("e")
    assert await bus.tail({"e": last}, 10, 20) == []
    waiter = asyncio.create_task(bus.tail({"e": last}, 10, 5_000))
    await asyncio.sleep(0.05)
    await bus.publish("e", b"3")
    assert [e.data for e in await asyncio.wait_for(waiter, 2)] == [b"3"]
    assert await bus.last_id("never-written") == "0-0"


async def test_blobs_expire(bus: Bus) -> None:
    ref = await bus.put_blob("room/alice/1.wav", b"\x00\x01audio", ttl_s=0.6)
    assert await bus.get_blob(ref) == b"\x00\x01audio"
    assert await bus.get_blob(ref + "-missing") is None
    await asyncio.sleep(0.8)
    assert await bus.get_blob(ref) is None


async def test_streams_without_groups_are_capped(bus: Bus) -> None:
    capped = open_bus(bus.url, BusSettings(url=bus.url, maxlen=100))
    try:
        for i in range(0, 2000, 200):
            await capped.publish_many("ring", [b"%d" % j for j in range(i, i + 200)])
        length = await capped.length("ring")
        assert 100 <= length < 400  # exact in memory; MAXLEN ~ trims whole nodes on Redis
        newest = await capped.tail({"ring": "0-0"}, 1000, 10)
        assert newest[-1].data == b"1999"
    finally:
        await capped.close()


async def test_memory_bus_applies_backpressure_instead_of_dropping_unacked() -> None:
    bus = MemoryBus(maxlen=3, publish_timeout_s=0.2)
    await bus.ensure_group("s", "g", "0")
    for i in range(3):
        await bus.publish("s", b"%d" % i)
    with pytest.raises(BusFull, match="stream s is full .* raise bus.maxlen"):
        await bus.publish("s", b"3")
    bus.publish_timeout_s = 30
    blocked = asyncio.create_task(bus.publish("s", b"3"))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # waiting for the consumer, not dropping
    got = await bus.read_group(["s"], "g", "c", 1, 10)
    await bus.ack("s", "g", [got[0].id])  # read + acked: the oldest entry may go now
    await asyncio.wait_for(blocked, 1)
    assert [e.data for e in await bus.tail({"s": "0-0"}, 10, 10)] == [b"1", b"2", b"3"]
    assert await bus.pending_count("s", "g") == 0 and await bus.lag("s", "g") == 3


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "bad bus URL 'localhost:6379': use memory:// or redis://"),
        ("http://x", "bad bus URL scheme 'http'"),
        ("redis://127.0.0.1:notaport", "bad Redis URL 127.0.0.1"),
    ],
)
def test_bad_urls_are_one_line(url: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        open_bus(url)


async def test_consumers_of_gone_workers_are_pruned(flush_redis: str) -> None:
    bus = open_bus(flush_redis)
    await bus.ensure_group("s", "g", "0")
    await bus.publish_many("s", [b"a", b"b"])
    (first,) = await bus.read_group(["s"], "g", "gone", 1, 10)
    await bus.ack("s", "g", [first.id])
    await bus.read_group(["s"], "g", "holding", 1, 10)  # still holds "b": must stay to be reclaimed
    await asyncio.sleep(0.15)
    assert await bus.prune_consumers("s", "g", 60_000) == 0
    assert await bus.prune_consumers("s", "g", 100) == 1
    assert await bus.pending_of("s", "g", "holding") == 1
    await bus.close()
