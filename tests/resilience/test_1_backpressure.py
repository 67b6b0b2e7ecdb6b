"""Issue 13 #1: a stream cap never drops work a consumer group has not acknowledged.

Before: every XADD trimmed with ``MAXLEN ~``: cap 50, a stalled consumer and 120 inputs gave 51 outputs
and no error. Now a producer past the cap waits (bounded) and then fails loudly, counted; whatever was
accepted is delivered.
"""

from __future__ import annotations

import asyncio

from emostream.bus import Bus, BusFull, open_bus
from emostream.config import BusSettings
from emostream.runtime.stage import run_stage
from emostream.testing.harness import SINK, collect, fast_settings, pings
from emostream.testing.toy import relay, stream_of

from .conftest import refused


async def test_cap_50_stalled_consumer_120_inputs_refuses_loudly_never_drops(bus: Bus) -> None:
    capped = open_bus(bus.url, BusSettings(url=bus.url, maxlen=50, publish_timeout_s=0.02))
    try:
        await capped.ensure_group("work", "stalled", "0")
        before = refused("work", "full")
        accepted, refusals = [], 0
        for i in range(120):
            try:
                accepted.append(await capped.publish("work", b"%d" % i))
            except BusFull as exc:
                assert "stream work is full" in str(exc) and "bus.maxlen" in str(exc)
                refusals += 1
        assert len(accepted) == 50 and refusals == 70  # every input accepted or refused, loudly
        assert refused("work", "full") - before == 70  # and counted
        got = await capped.read_group(["work"], "stalled", "c", 200, 10)
        assert [d.id for d in got] == accepted  # the stalled consumer still finds all 50
        await capped.ack("work", "stalled", [d.id for d in got])
        await capped.publish("work", b"room again")  # acked entries make room
    finally:
        await capped.close()


async def test_stalled_downstream_backs_up_to_the_producer_and_loses_nothing(bus: Bus) -> None:
    """cap 50, the sink stalls while 120 pings go through a relay: all 120 arrive once it resumes."""
    settings = fast_settings(bus.url, maxlen=50, publish_timeout_s=30)
    capped = open_bus(bus.url, settings.bus) if bus.url.startswith("redis") else bus
    if capped is bus:
        bus.configure(settings.bus)
    stop = asyncio.Event()
    await capped.ensure_group(stream_of(1), SINK, "0")
    task = asyncio.create_task(run_stage(relay(1), capped, settings, consumer="r1", stop=stop))
    try:
        producer = asyncio.create_task(capped.publish_many(stream_of(0), pings(120)))
        await asyncio.sleep(1.0)  # the sink has not read anything: the producer must be held back
        assert not producer.done()
        assert await capped.length(stream_of(1)) <= 50
        got = await collect(capped, stream_of(1), {f"m{i}" for i in range(120)}, settle_s=0.2)
        await asyncio.wait_for(producer, 10)
        assert set(got) == {f"m{i}" for i in range(120)} and set(got.values()) == {1}  # none lost or twice
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        if capped is not bus:
            await capped.close()
