"""A consumer dies holding un-acked messages; another one reclaims them and nothing is lost.

Redis: a real ``emostream worker toy`` process is killed with SIGKILL. Memory (one process, no worker
processes): the consumer's task is cancelled mid-work, which abandons its in-flight messages un-acked.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, cast

import redis

from emostream.bus import Bus
from emostream.bus.base import Delivery
from emostream.runtime.pipeline import Pipeline
from emostream.runtime.stage import run_stage
from emostream.testing.harness import SINK, collect, fast_settings, pings, publish_all, wait_until
from emostream.testing.harness import start_toy_worker as start_worker
from emostream.testing.toy import pipeline_stages, relay, stream_of

N = 1000


async def _victim_holds_work(bus: Bus) -> bool:
    return await bus.pending_of(stream_of(0), "toy1", "victim") >= 5 and await bus.length(stream_of(1)) >= 1


def _consumers(bus: Bus) -> list[tuple[str, int]]:
    """Each consumer of the hop-1 group with what it holds (to explain a failure)."""
    client = redis.Redis.from_url(bus.url)
    try:
        rows = client.xinfo_consumers(cast(Any, bus).prefix + stream_of(0), "toy1")
        return [(r["name"].decode(), int(r["pending"])) for r in rows]
    finally:
        client.close()


async def test_killed_consumer_work_is_reclaimed_exactly_once(bus: Bus) -> None:
    settings = fast_settings(bus.url)
    for hop in (1, 2, 3):
        await bus.ensure_group(stream_of(hop - 1), f"toy{hop}", "0")
    await bus.ensure_group(stream_of(3), SINK, "0")
    await publish_all(bus, pings(N))

    if bus.url.startswith("redis"):
        proc = start_worker(bus.url, hop=1, consumer="victim", delay_ms=200, concurrency=40)
        try:
            await wait_until(lambda: _victim_holds_work(bus), what="the victim to hold work")
            proc.send_signal(signal.SIGSTOP)  # frozen: what it holds now is what it dies with
            held = await bus.pending_of(stream_of(0), "toy1", "victim")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        _, err = proc.communicate(timeout=10)
        assert held >= 5, f"victim held {held}; consumers {_consumers(bus)}; its log: {err.decode()[-2000:]}"
        assert await bus.pending_of(stream_of(0), "toy1", "victim") == held
    else:
        stop = asyncio.Event()
        victim = asyncio.create_task(
            run_stage(relay(1, delay_s=0.2), bus, settings, consumer="victim", stop=stop)
        )
        await wait_until(lambda: _victim_holds_work(bus), what="the victim to hold work")
        victim.cancel()
        await asyncio.gather(victim, return_exceptions=True)
        assert not stop.is_set()
        held = await bus.pending_of(stream_of(0), "toy1", "victim")
        assert held >= 5, "the victim should die holding un-acked messages"

    pipeline = Pipeline(bus, settings)
    for stage in pipeline_stages(3):
        pipeline.add(stage, consumer=f"{stage.name}-rescuer")
    stop = asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop))
    seen = await collect(bus, stream_of(3), {f"m{i}" for i in range(N)}, timeout_s=45)
    stop.set()
    stats = await task

    assert len(seen) == N
    assert stats["toy1"].reclaimed >= held
    # Outputs and ack are committed together (a Lua script on Redis; no await in between in memory),
    # so a consumer killed mid-work leaves no published-but-unacked input behind: nothing doubles.
    assert set(seen.values()) == {1}, f"duplicated: {[k for k, v in seen.items() if v > 1][:5]}"
    assert await bus.pending_count(stream_of(0), "toy1") == 0


async def test_a_restart_under_the_same_name_takes_its_work_back_at_once(bus: Bus) -> None:
    """compose restarts ``asr-1`` as ``asr-1``: what the dead process held is handed back at start, not
    after ``bus.claim_idle_ms`` (here 10 minutes, so only the take-back can deliver it in time)."""
    settings = fast_settings(bus.url, claim_idle_ms=600_000)
    await bus.ensure_group(stream_of(0), "toy1", "0")
    await bus.ensure_group(stream_of(1), SINK, "0")
    await publish_all(bus, pings(20))
    held = await bus.read_group([stream_of(0)], "toy1", "worker-1", 8, 100)  # then the process died
    assert len(held) == 8 and await bus.pending_ids(stream_of(0), "toy1", "worker-1", 100) == [
        d.id for d in held
    ]
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="worker-1", stop=stop))
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(20)}, timeout_s=20)
    stop.set()
    stats = await task
    assert len(seen) == 20 and set(seen.values()) == {1}
    assert stats.reclaimed == 8
    assert await bus.pending_ids(stream_of(0), "toy1", "worker-1", 100) == []


class _LosesAReply:
    """The runner's bus, except that once armed, the reply of one read that delivered something is
    lost on the way: what a worker paused past its Redis client's socket timeout (SIGSTOP, a VM
    freeze) suffers, the client then retrying the read past those entries."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.armed = False
        self.lost: list[Delivery] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def read_group(
        self, streams: list[str], group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        got = await self._bus.read_group(streams, group, consumer, count, block_ms)
        if got and self.armed:
            self.armed, self.lost = False, got
            return []
        return got


async def test_deliveries_whose_reply_was_lost_are_taken_back_in_one_sweep(bus: Bus) -> None:
    """Entries Redis delivered to a running consumer whose reply never arrived come back within a
    claim sweep (100 ms here), not after ``bus.claim_idle_ms`` (10 minutes here)."""
    settings = fast_settings(bus.url, claim_idle_ms=600_000)
    await bus.ensure_group(stream_of(0), "toy1", "0")
    await bus.ensure_group(stream_of(1), SINK, "0")
    lossy = _LosesAReply(bus)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run_stage(relay(1), cast(Bus, lossy), settings, consumer="w", stop=stop, ready=ready)
    )
    await ready.wait()
    await publish_all(bus, pings(10))
    assert len(await collect(bus, stream_of(1), {f"m{i}" for i in range(10)}, timeout_s=20)) == 10
    lossy.armed = True
    await publish_all(bus, pings(6, start=10))
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(10, 16)}, timeout_s=10)
    stop.set()
    stats = await task
    assert lossy.lost, "no reply was lost: the test did not exercise the take-back"
    assert len(seen) == 6 and set(seen.values()) == {1}
    assert stats.orphaned == len(lossy.lost) and stats.reclaimed == len(lossy.lost)
    assert await bus.pending_count(stream_of(0), "toy1") == 0


async def test_handlers_finishing_during_a_sweep_are_not_taken_for_orphans(bus: Bus) -> None:
    """A sweep before every read while handlers keep acking: one that acks while the sweep's
    pending query is in flight was known before it and is no orphan (nothing counted, no warning)."""
    settings = fast_settings(bus.url, claim_idle_ms=600_000)
    settings.stage.claim_every_ms = 1
    await bus.ensure_group(stream_of(0), "toy1", "0")
    await bus.ensure_group(stream_of(1), SINK, "0")
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(relay(1, delay_s=0.002), bus, settings, consumer="w", stop=stop))
    await publish_all(bus, pings(3000))
    seen = await collect(bus, stream_of(1), {f"m{i}" for i in range(3000)}, timeout_s=60)
    stop.set()
    stats = await task
    assert len(seen) == 3000 and set(seen.values()) == {1}
    assert stats.orphaned == 0, f"{stats.orphaned} busy deliveries were taken for orphans"
