"""The room hub and the room fan-out on both buses (a real redis-server and the memory bus): every
subscriber sees the room's entries once each, in order, and a room stream is the ``events`` stream's
order for that room with no repeat, however the subscribers join and however the fan-out is retried."""

from __future__ import annotations

import asyncio

import pytest

from emostream.bus import Bus
from emostream.schema import EmotionEvent, encode
from emostream.server.feed import FeedOptions, feed
from emostream.server.rooms import RoomHub, fan_out, room_stream

from .helpers import event


async def _collect(bus: Bus, hub: RoomHub, room: str, n: int, out: list[str]) -> None:
    start = await bus.last_id(room_stream(room))
    async for batch in feed(bus, hub, room, start, FeedOptions(buffer=10_000), asyncio.Event()):
        out += [e.id for e in batch]
        if len(out) >= n:
            return


async def test_subscribers_joining_together_get_each_entry_once(bus: Bus) -> None:
    """Two subscribers join a room at the same moment (the first join of a room starts its reader
    after a bus round trip): one reader per room, so each entry reaches each buffer once."""
    hub = RoomHub(bus, block_ms=50)
    room, n = "together", 100
    first, second = await asyncio.gather(hub.join(room, 10_000), hub.join(room, 10_000))
    ids = [await bus.publish(room_stream(room), b"x%d" % i) for i in range(n)]
    for _ in range(100):
        if len(first.items) >= n and len(second.items) >= n:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a second reader would add its copies by now
    assert [e.id for e in first.take()] == ids
    assert [e.id for e in second.take()] == ids
    await hub.close()


async def test_feeds_started_together_are_strictly_ordered(bus: Bus) -> None:
    hub = RoomHub(bus, block_ms=50)
    room, n = "feeds", 200
    got: list[list[str]] = [[], [], []]
    tasks = [asyncio.create_task(_collect(bus, hub, room, n, out)) for out in got]
    while hub.subscribers < 3:
        await asyncio.sleep(0.01)
    ids: list[str] = []
    for i in range(0, n, 25):
        ids += await bus.publish_many(room_stream(room), [b"y%d" % j for j in range(i, i + 25)])
    await asyncio.wait_for(asyncio.gather(*tasks), 20)
    assert got == [ids, ids, ids]
    await hub.close()


def _events(room: str, n: int, start: int = 0) -> list[bytes]:
    return [encode(event(room, i)) for i in range(start, start + n)]


async def _room_ids(bus: Bus, room: str) -> list[str]:
    from emostream.server.rooms import decode_entry, read_range

    return [ev.id for e in await read_range(bus, room, "0-0", 10_000) if (ev := decode_entry(e))]


async def _run_fan_outs(bus: Bus, consumers: list[str], until: int, rooms: list[str]) -> None:
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(fan_out(bus, c, stop, asyncio.Event(), block_ms=20, claim_idle_ms=1))
        for c in consumers
    ]
    for _ in range(500):
        if sum([await bus.length(room_stream(r)) for r in rooms]) >= until:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # anything filed twice would land by now
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)


@pytest.mark.parametrize("consumers", [1, 3])
async def test_room_streams_keep_the_events_order_with_no_repeat(bus: Bus, consumers: int) -> None:
    """Fan-outs that claim whatever is idle for 1 ms (each other's in-flight batches, as an overloaded
    box makes of the 30 s default), one per serve process, file every room in order, once."""
    rooms = ["ra", "rb"]
    await bus.ensure_group(EmotionEvent.stream, "rooms", "$")
    want: dict[str, list[bytes]] = {r: [] for r in rooms}
    for i in range(0, 300, 25):  # interleaved posts of 25 into two rooms, as the API tests do
        for r in rooms:
            batch = _events(r, 25, i)
            want[r] += batch
            await bus.publish_many(EmotionEvent.stream, batch)
    await _run_fan_outs(bus, [f"c{k}" for k in range(consumers)], 600, rooms)
    for r in rooms:
        assert await _room_ids(bus, r) == [event(r, i).id for i in range(300)]
