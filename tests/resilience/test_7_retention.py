"""Issue 13 #7: what people said is kept for a stated time, not until a 10,000-entry cap.

Before: ``transcripts``, ``contexts`` and ``events`` kept entries however old. Now ``bus.retention_s`` and
per-stream ``bus.retention`` trim old entries (at publish and by the stages' periodic sweep), but never
one a consumer group has not acknowledged.
"""

from __future__ import annotations

import asyncio

from emostream.bus import Bus, open_bus
from emostream.config import BusSettings, load_settings


def test_defaults_state_how_long_each_stream_is_kept() -> None:
    bus = load_settings(env={}).bus
    assert bus.retention_for("transcripts") == 600 and bus.retention_for("contexts") == 600
    assert bus.retention_for("events") == 3600
    assert bus.retention_for("events:room-1") == 3600  # a room keeps its events as long as `events`
    assert bus.retention_for("events:dead") == 86_400 and bus.retention_for("transcripts:dead") == 600
    custom = load_settings(env={"EMOSTREAM_BUS_RETENTION": "events=60,transcripts=30"}).bus
    assert custom.retention_for("events") == 60 and custom.retention_for("transcripts") == 30


async def test_old_entries_go_unless_a_group_still_needs_them(bus: Bus) -> None:
    opts = BusSettings(url=bus.url, retention_s=0, retention={"transcripts": 0.5, "events": 0.5})
    short = open_bus(bus.url, opts)
    try:
        await short.ensure_group("transcripts", "context", "0")
        ids = [await short.publish("transcripts", b"t%d" % i) for i in range(3)]
        await short.publish_many("events", [b"e1", b"e2"])
        await short.publish("contexts", b"kept")  # no retention of its own, retention_s = 0
        got = await short.read_group(["transcripts"], "context", "c", 10, 10)
        await short.ack("transcripts", "context", [got[0].id, got[1].id])  # the third stays pending
        await asyncio.sleep(0.7)
        for stream in ("transcripts", "events", "contexts"):
            await short.trim(stream)  # what the stages' sweep does for quiet streams
        left = [e.id for e in await short.tail({"transcripts": "0-0"}, 10, 10)]
        assert left == [ids[2]]  # acked and old: gone; un-acked: kept however old
        assert await short.length("events") == 0
        assert await short.length("contexts") == 1
        await short.publish("events", b"e3")  # a publish trims as well
        assert [e.data for e in await short.tail({"events": "0-0"}, 10, 10)] == [b"e3"]
    finally:
        await short.close()
