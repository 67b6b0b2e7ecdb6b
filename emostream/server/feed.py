"""One subscription's sequence of room-stream entries: retained history after ``since``, then live.

The subscriber joins the room hub *before* reading the history, so nothing published in between is
missed; entries seen in both are dropped by id, so nothing repeats. The output is strictly increasing
in stream id, which is what makes ``Last-Event-ID``/``since`` resumption exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from emostream.bus.base import Bus, Entry
from emostream.server.rooms import Chunk, RoomHub, id_key, read_range


class Lagged(Exception):
    """The subscriber's buffer overflowed; ``last_id`` is the last entry handed to it."""

    def __init__(self, last_id: str) -> None:
        super().__init__(last_id)
        self.last_id = last_id


@dataclass
class FeedOptions:
    buffer: int = 1024
    """Live entries buffered per connection before it is cut off as lagged."""
    heartbeat_s: float = 15.0
    """An empty batch is yielded after this long without entries (SSE comment / keep-alive)."""


async def feed(
    bus: Bus, hub: RoomHub, room: str, since: str, opts: FeedOptions, stop: asyncio.Event
) -> AsyncIterator[list[Entry]]:
    """Batches of entries after ``since`` in id order (an empty batch = heartbeat) until ``stop``;
    raises Lagged. Start "now" with ``since = await bus.last_id(room_stream(room))``. Live batches are
    :class:`Chunk` objects, shared with the room's other subscribers: read, never mutate."""
    sub = await hub.join(room, opts.buffer)
    last = since
    try:
        while not stop.is_set():
            batch = await read_range(bus, room, last, 1000)
            if not batch:
                break
            last = batch[-1].id
            yield batch
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                if sub.lagged.is_set():
                    raise Lagged(last)
                if not sub.items:
                    waker = asyncio.ensure_future(sub.wake.wait())
                    done, _ = await asyncio.wait(
                        {waker, stopping}, timeout=opts.heartbeat_s, return_when="FIRST_COMPLETED"
                    )
                    waker.cancel()
                    if not done:
                        yield []  # heartbeat
                    continue
                floor = id_key(last)
                fresh: list[Chunk] = []
                for chunk in sub.take():  # a chunk is in id order; only one at the seam overlaps
                    if id_key(chunk[0].id) <= floor:
                        chunk = Chunk(e for e in chunk if id_key(e.id) > floor)
                    if chunk:
                        fresh.append(chunk)
                        floor = id_key(chunk[-1].id)
                if fresh:
                    batch = Chunk.merge(fresh)
                    last = batch[-1].id
                    yield batch
        finally:
            stopping.cancel()
    finally:
        hub.leave(room, sub)
