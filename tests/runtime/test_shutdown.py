"""SIGTERM drains: in-flight handlers finish and ack, nothing is lost; work that outlives the grace
period is released un-acked and another consumer takes it over at once."""

from __future__ import annotations

import asyncio
import os
import signal

from emostream.bus import Bus
from emostream.runtime.pipeline import install_stop_signals
from emostream.runtime.stage import StageStats, run_stage
from emostream.testing.harness import SINK, collect, fast_settings, pings, wait_until
from emostream.testing.harness import start_toy_worker as start_worker
from emostream.testing.toy import relay, stream_of

N = 30


async def _sigterm_worker(bus: Bus, delay_ms: int, grace_s: float) -> StageStats | None:
    """Start consumer "w" (a process on Redis, a task here otherwise), SIGTERM it while it holds work."""

    async def holding() -> bool:
        return await bus.pending_of(stream_of(0), "toy1", "w") >= 5

    if bus.url.startswith("redis"):
        env = {"EMOSTREAM_STAGE_SHUTDOWN_GRACE_S": str(grace_s), "EMOSTREAM_BUS_BLOCK_MS": "50"}
        proc = start_worker(bus.url, 1, "w", delay_ms=delay_ms, concurrency=10, env=env)
        try:
            await wait_until(holding, what="the worker to hold work")
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, err.decode()
        assert b"stage stopped" in err
        return None
    settings = fast_settings(bus.url)
    settings.stage.shutdown_grace_s = grace_s
    stop = asyncio.Event()
    remove = install_stop_signals(stop)
    try:
        task = asyncio.create_task(
            run_stage(relay(1, delay_ms / 1000), bus, settings, consumer="w", stop=stop)
        )
        await wait_until(holding, what="the worker to hold work")
        os.kill(os.getpid(), signal.SIGTERM)  # the real signal, through the installed handler
        return await asyncio.wait_for(task, 30)
    finally:
        remove()


async def test_sigterm_finishes_in_flight_work(bus: Bus) -> None:
    await bus.ensure_group(stream_of(0), "toy1", "0")
    await bus.ensure_group(stream_of(1), SINK, "0")
    await bus.publish_many(stream_of(0), pings(N))

    stats = await _sigterm_worker(bus, delay_ms=300, grace_s=10)
    assert await bus.pending_of(stream_of(0), "toy1", "w") == 0, "in-flight work was not finished"
    done = await bus.length(stream_of(1))
    assert 5 <= done < N
    if stats is not None:
        assert stats.processed == done and stats.released == 0

    # the rest was never taken: another consumer finishes the job, nothing lost or doubled
    stop = asyncio.Event()
    rest = asyncio.create_task(run_stage(relay(1), bus, fast_settings(bus.url), consumer="next", stop=stop))
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(N)})
    stop.set()
    await rest
    assert len(seen) == N and set(seen.values()) == {1}


async def test_work_beyond_grace_is_released_for_others(bus: Bus) -> None:
    await bus.ensure_group(stream_of(0), "toy1", "0")
    await bus.ensure_group(stream_of(1), SINK, "0")
    await bus.publish_many(stream_of(0), pings(N))

    stats = await _sigterm_worker(bus, delay_ms=5_000, grace_s=0.2)
    assert await bus.length(stream_of(1)) == 0
    held = await bus.pending_count(stream_of(0), "toy1")
    assert held >= 5
    if stats is not None:
        assert stats.released == held

    # a consumer that only claims messages idle for a minute still gets them now: they were released
    settings = fast_settings(bus.url, claim_idle_ms=60_000)
    stop = asyncio.Event()
    rest = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="next", stop=stop))
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(N)}, timeout_s=20)
    stop.set()
    stats_next = await rest
    assert len(seen) == N and set(seen.values()) == {1}
    assert stats_next.reclaimed == held


async def test_second_signal_stops_a_worker_at_once(flush_redis: str) -> None:
    from emostream.bus import open_bus

    bus = open_bus(flush_redis)
    await bus.ensure_group(stream_of(0), "toy1", "0")
    await bus.publish_many(stream_of(0), pings(10))
    env = {"EMOSTREAM_STAGE_SHUTDOWN_GRACE_S": "60"}
    proc = start_worker(flush_redis, 1, "w", delay_ms=60_000, concurrency=10, env=env)
    try:

        async def holding() -> bool:
            return await bus.pending_of(stream_of(0), "toy1", "w") == 10

        await wait_until(holding, what="the worker to hold work")
        proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert proc.poll() is None  # draining: waits for its 60 s handlers
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.to_thread(proc.communicate, timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err.decode().splitlines()[-1].startswith("emostream worker: error: stopped without draining")
    assert await bus.pending_of(stream_of(0), "toy1", "w") == 10  # left for others to reclaim
    await bus.close()
