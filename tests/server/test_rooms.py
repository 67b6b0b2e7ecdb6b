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
        if first.size >= n and second.size >= n:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)  # a second reader would add its copies by now
    assert [e.id for chunk in first.take() for e in chunk] == ids
    assert [e.id for chunk in second.take() for e in chunk] == ids
    await hub.close()


async def test_feeds_started_together_are_strictly_ordered(bus: Bus) -> None:
    hub = RoomHub(bus, block_ms=50)
    room, n = "feeds", 200
    got: list[list[str]] = [[], [], []]
    tasks = [asyncio.create_task(_collect(bus, hub, room, n, out)) for out in got]
    for _ in range(500):
        if hub.subscribers == 3:
            break
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


async def _run_fan_outs(bus: Bus, consumers: int, rooms: list[str], until: int, batch: int = 7) -> int:
    """Run ``consumers`` fan-outs (one per serve process) until the rooms hold ``until`` entries, then
    a little longer (anything filed twice would land by then); returns how many they filed."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(fan_out(bus, f"c{k}", stop, asyncio.Event(), block_ms=20, batch=batch))
        for k in range(consumers)
    ]
    for _ in range(500):
        if sum([await bus.length(room_stream(r)) for r in rooms]) >= until:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    stop.set()
    return sum(await asyncio.wait_for(asyncio.gather(*tasks), 10))


async def _post_interleaved(bus: Bus, rooms: list[str], start: int, n: int) -> None:
    for i in range(start, start + n, 25):  # posts of 25 into two rooms in turn, as the API tests do
        for r in rooms:
            await bus.publish_many(EmotionEvent.stream, _events(r, 25, i))


@pytest.mark.parametrize("consumers", [1, 3])
async def test_room_streams_keep_the_events_order_with_no_repeat(bus: Bus, consumers: int) -> None:
    """Several fan-outs (serve processes) racing over small batches file every room in order, once.
    (The consumer-group fan-out this replaced filed duplicates and re-ordered here on Redis once a
    consumer reclaimed another's in-flight batch.)"""
    rooms = ["ra", "rb"]
    await bus.ensure_group(EmotionEvent.stream, "rooms", "$")
    await _post_interleaved(bus, rooms, 0, 300)
    filed = await _run_fan_outs(bus, consumers, rooms, 600)
    for r in rooms:
        assert await _room_ids(bus, r) == [event(r, i).id for i in range(300)]
    assert filed == 600
    assert await bus.group_cursor(EmotionEvent.stream, "rooms") == await bus.last_id(EmotionEvent.stream)


async def test_a_restarted_fan_out_resumes_at_the_cursor_and_dead_letters_garbage(bus: Bus) -> None:
    rooms = ["rc", "rd"]
    await bus.ensure_group(EmotionEvent.stream, "rooms", "$")
    await _post_interleaved(bus, rooms, 0, 50)
    assert await _run_fan_outs(bus, 1, rooms, 100) == 100
    await bus.publish(EmotionEvent.stream, b"not an event")
    await _post_interleaved(bus, rooms, 50, 50)
    assert await _run_fan_outs(bus, 2, rooms, 200) == 100  # a new process: only what came after
    for r in rooms:
        assert await _room_ids(bus, r) == [event(r, i).id for i in range(100)]
    assert await bus.length(EmotionEvent.stream + ":dead") == 1


async def test_events_for_a_reserved_or_malformed_room_are_dead_lettered_not_filed(bus: Bus) -> None:
    """A producer on the bus (an old worker, a script) naming room ``dead`` must not write into the
    events' dead-letter stream as if it were a room: the fan-out dead-letters it with the reason."""
    await bus.ensure_group(EmotionEvent.stream, "rooms", "$")
    await bus.publish_many(EmotionEvent.stream, [encode(event("dead", 0)), encode(event("ok", 0))])
    await bus.publish(EmotionEvent.stream, encode(event("a b", 1)))
    assert await _run_fan_outs(bus, 1, ["ok"], 1) == 1
    assert await _room_ids(bus, "ok") == [event("ok", 0).id]
    dead = await bus.tail({EmotionEvent.stream + ":dead": "0"}, 10, 10)
    assert len(dead) == 2
