"""End to end through a 3-stage toy pipeline on both buses: nothing lost, nothing duplicated."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from emostream.bus import Bus
from emostream.runtime.pipeline import Pipeline
from emostream.testing.harness import SINK, collect, fast_settings, pings, publish_all
from emostream.testing.toy import pipeline_stages, stream_of


async def test_thousand_messages_three_stages_exactly_once(bus: Bus) -> None:
    settings = fast_settings(bus.url)
    pipeline = Pipeline(bus, settings)
    for stage in pipeline_stages(3):
        pipeline.add(stage, consumer=f"{stage.name}-a")
    await bus.ensure_group(stream_of(3), SINK, "0")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop, ready))
    await ready.wait()

    await publish_all(bus, pings(1000))
    seen = await collect(bus, stream_of(3), {f"m{i}" for i in range(1000)})
    stop.set()
    stats = await task

    assert len(seen) == 1000 and set(seen.values()) == {1}, "an id arrived twice"
    assert await bus.length(stream_of(3)) == 1000
    for hop, stage in enumerate(pipeline_stages(3), start=1):
        assert stats[stage.name].processed == 1000
        assert await bus.pending_count(stream_of(hop - 1), stage.name) == 0
        assert await bus.lag(stream_of(hop - 1), stage.name) == 0


async def test_stage_recovers_when_redis_loses_its_streams(flush_redis: str) -> None:
    """FLUSHALL (or a Redis restart without persistence) deletes streams and groups: the stage
    recreates its group and goes on."""
    import redis.asyncio as aioredis

    from emostream.bus import open_bus
    from emostream.runtime.stage import run_stage
    from emostream.testing.toy import relay

    settings = fast_settings(flush_redis)
    bus = open_bus(flush_redis, settings.bus)
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="c", stop=stop))
    await bus.ensure_group(stream_of(1), SINK, "0")
    await publish_all(bus, pings(5))
    await collect(bus, stream_of(1), {f"m{i}" for i in range(5)}, settle_s=0)
    raw = aioredis.Redis.from_url(flush_redis)
    await raw.flushall()
    await raw.aclose()
    await bus.ensure_group(stream_of(1), SINK, "0")
    await asyncio.sleep(1.5)  # the stage notices NOGROUP and recreates its group
    await publish_all(bus, pings(5, start=5))
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(5, 10)}, timeout_s=10)
    stop.set()
    await task
    await bus.close()
    assert set(seen) == {f"m{i}" for i in range(5, 10)}


async def test_pipeline_fails_fast_when_a_stage_cannot_start(bus: Bus) -> None:
    from emostream.errors import UserError
    from emostream.runtime.stage import StageContext
    from emostream.testing.toy import relay

    class Broken(type(relay(2))):  # type: ignore[misc]
        async def setup(self, ctx: StageContext) -> None:
            raise UserError("model x is not in the store: run `emostream models pull x`")

    pipeline = Pipeline(bus, fast_settings(bus.url)).add(relay(1), consumer="a").add(Broken(), consumer="b")
    with pytest.raises(UserError, match="models pull x"):
        await asyncio.wait_for(pipeline.run(asyncio.Event()), 10)


async def test_a_stage_can_ask_for_more_handlers_than_stage_concurrency() -> None:
    """ASR's handlers wait on its own scheduler: with ``min_concurrency`` the runtime keeps that many in
    flight even where ``stage.concurrency`` is 2 (10 pings of 0.3 s each: ~0.3 s, not ~1.5 s)."""
    from emostream.bus.memory import MemoryBus
    from emostream.runtime.stage import run_stage
    from emostream.testing.toy import relay

    took = {}
    for wide in (False, True):
        bus = MemoryBus()
        base = fast_settings(bus.url)
        settings = msgspec.structs.replace(base, stage=msgspec.structs.replace(base.stage, concurrency=2))
        stage = relay(1, delay_s=0.3)
        if wide:
            stage.min_concurrency = 10
        await bus.ensure_group(stream_of(1), SINK, "0")
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(run_stage(stage, bus, settings, consumer="c", stop=stop, ready=ready))
        await ready.wait()
        t0 = asyncio.get_running_loop().time()
        await publish_all(bus, pings(10))
        await collect(bus, stream_of(1), {f"m{i}" for i in range(10)}, settle_s=0)
        took[wide] = asyncio.get_running_loop().time() - t0
        stop.set()
        await task
        await bus.close()
    assert took[False] >= 1.4 and took[True] < 0.9, took
