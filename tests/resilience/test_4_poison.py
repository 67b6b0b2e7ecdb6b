"""Issue 13 #4: an entry that cannot be decoded, whatever its shape, is dead-lettered and nothing stalls.

Before: an entry without the ``d`` field stayed pending forever, the side-input followers of context and
fusion stalled at it, and `emostream events` died with ``KeyError: b'd'``. Now group readers dead-letter
it with the reason, followers skip and count it, `events` says so on stderr and keeps running.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from emostream.bus import Bus, dead_stream, open_bus
from emostream.runtime import metrics
from emostream.runtime.follow import Follower
from emostream.runtime.stage import run_stage
from emostream.schema import DeadLetter, EmotionEvent, decode
from emostream.testing.harness import SINK, collect, fast_settings, pings
from emostream.testing.toy import Ping, relay, stream_of

from .conftest import counter, emostream
from .test_3_redis_restart import _event


async def _poison(bus: Bus, stream: str) -> None:
    """A foreign entry: on Redis one without the ``d`` field, on the memory bus bytes of no message."""
    if bus.url.startswith("redis"):
        raw = aioredis.Redis.from_url(bus.url)
        await raw.xadd(f"emostream:{stream}", {"x": b"not ours"})
        await raw.aclose()
    else:
        await bus.publish(stream, b"\xc1 not msgpack")


async def test_poison_entry_is_dead_lettered_and_followers_move_on(bus: Bus) -> None:
    settings = fast_settings(bus.url)
    await bus.ensure_group(stream_of(1), SINK, "0")
    seen: list[str] = []
    follower = Follower(Ping, lambda p: seen.append(p.id), from_start=True, block_ms=50)
    skipped_before = counter(metrics.SKIPPED, stream_of(0))
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="r1", stop=stop))
    follower.start(bus)
    try:
        await bus.publish_many(stream_of(0), pings(2))
        await _poison(bus, stream_of(0))
        await bus.publish_many(stream_of(0), pings(3, start=2))
        got = await collect(bus, stream_of(1), {f"m{i}" for i in range(5)}, timeout_s=10)
        for _ in range(100):
            if len(seen) == 5:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, 10)
        await follower.stop()
    assert set(got) == {f"m{i}" for i in range(5)}  # the group reader went on past the poison
    assert seen == [f"m{i}" for i in range(5)]  # so did the follower,
    assert follower.skipped == 1 and counter(metrics.SKIPPED, stream_of(0)) - skipped_before == 1  # counted
    assert stats.dead_lettered == 1 and await bus.pending_count(stream_of(0), "toy1") == 0
    (dead,) = await bus.tail({dead_stream(stream_of(0)): "0-0"}, 10, 10)
    reason = decode(dead.data, DeadLetter).reason
    assert ("no 'd' field" in reason) if bus.url.startswith("redis") else ("not a valid Ping" in reason)


async def test_events_command_skips_a_poison_entry_and_keeps_running(flush_redis: str) -> None:
    bus = open_bus(flush_redis)
    try:
        await _poison(bus, EmotionEvent.stream)
        await bus.publish(EmotionEvent.stream, _event(7))
        events = emostream("events", "--redis", flush_redis, "--count", "1", "--from-start")
        out, err = await asyncio.to_thread(events.communicate, timeout=20)
    finally:
        if events.poll() is None:
            events.kill()
        await bus.close()
    assert events.returncode == 0, err.decode()[-1500:]
    assert '"utterance":7' in out.decode()  # the valid event after the poison one
    assert "skipped" in err.decode() and "no 'd' field" in err.decode() and "Traceback" not in err.decode()
