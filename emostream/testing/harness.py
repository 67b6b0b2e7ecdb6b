"""The one test harness: run a stage on a bus and get its outputs, toy traffic, worker processes.

Used by the test suite on both buses (the ``bus`` fixture gives the embedded bus and a real Redis) and
by anyone writing a new stage: ``await run_stage_once(stage, bus, inputs, Out, count=n)`` publishes the
inputs, runs the stage through the real runtime (consumer group, decode, publish-and-ack) and returns
the first ``n`` messages it published on ``Out``'s stream.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from emostream.bus import Bus
from emostream.config import BusSettings, Settings, StageSettings
from emostream.runtime.stage import Stage, run_stage
from emostream.schema import Message, decode, encode
from emostream.testing.toy import Ping, stream_of

SINK = "sink"
"""Consumer group the harness reads outputs with."""
M = TypeVar("M", bound=Message)


def fast_settings(url: str = "memory://", **bus: Any) -> Settings:
    """Short blocking, claiming and grace so tests finish quickly."""
    opts: dict[str, Any] = {"block_ms": 50, "claim_idle_ms": 300, "max_deliveries": 5, **bus}
    return Settings(
        bus=BusSettings(url=url, **opts),
        stage=StageSettings(concurrency=16, claim_every_ms=100, shutdown_grace_s=5, lag_every_s=0.2),
    )


async def run_stage_once(
    stage: Stage,
    bus: Bus,
    inputs: Sequence[Message],
    out: type[M],
    *,
    count: int,
    settings: Settings | None = None,
    timeout_s: float = 30.0,
) -> list[M]:
    """Publish ``inputs`` (each to its type's stream), run ``stage`` until it has published ``count``
    messages of type ``out``, stop it (graceful drain) and return them in stream order."""
    settings = settings or fast_settings(bus.url)
    await bus.ensure_group(out.stream, SINK, "0")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_stage(stage, bus, settings, consumer="harness", stop=stop, ready=ready))
    got: list[M] = []
    try:
        await asyncio.wait_for(ready.wait(), timeout_s)
        for message in inputs:
            await bus.publish(type(message).stream, encode(message))
        deadline = time.monotonic() + timeout_s
        while len(got) < count:
            if task.done():
                task.result()  # the stage crashed: raise its error
                raise AssertionError(f"{stage.name} stopped after {len(got)} of {count} outputs")
            if time.monotonic() > deadline:
                raise AssertionError(f"{stage.name} published {len(got)} of {count} {out.__name__} in time")
            for d in await bus.read_group([out.stream], SINK, "harness", count, 50):
                got.append(decode(d.data, out))
                await bus.ack(out.stream, SINK, [d.id])
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout_s)
    return got


def pings(n: int, start: int = 0, payload: bytes = b"x" * 64) -> list[bytes]:
    """``n`` encoded toy Pings with ids ``m<start>`` ..."""
    return [
        encode(Ping(id=f"m{i}", n=i, payload=payload, sent_at=time.time())) for i in range(start, start + n)
    ]


async def publish_all(bus: Bus, items: list[bytes], stream: str = stream_of(0)) -> None:
    for i in range(0, len(items), 200):
        await bus.publish_many(stream, items[i : i + 200])


async def collect(
    bus: Bus, stream: str, want: set[str], timeout_s: float = 30.0, settle_s: float = 0.3
) -> Counter[str]:
    """Read toy Pings from ``stream`` through the sink group until every id in ``want`` arrived (then a
    short settle to catch late duplicates); returns how often each id arrived."""
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    while True:
        for d in await bus.read_group([stream], SINK, "sink", 500, 50):
            seen[decode(d.data, Ping).id] += 1
            await bus.ack(stream, SINK, [d.id])
        now = time.monotonic()
        if want <= set(seen):
            settle_until = settle_until or now + settle_s
            if now >= settle_until:
                return seen
        elif now > deadline:
            missing = sorted(want - set(seen))
            raise AssertionError(f"{len(missing)} of {len(want)} never arrived, e.g. {missing[:5]}")


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def start_worker(
    name: str,
    url: str,
    consumer: str,
    *,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``emostream worker NAME --redis URL`` as a real child process (output piped)."""
    cmd = [sys.executable, "-m", "emostream", "worker", name, "--redis", url, "--consumer", consumer, *extra]
    return subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def start_toy_worker(
    url: str,
    hop: int,
    consumer: str,
    delay_ms: int = 0,
    concurrency: int = 16,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``emostream worker toy`` for hop ``hop`` as a real child process."""
    toy = {"TOY_HOP": str(hop), "TOY_DELAY_MS": str(delay_ms), **(env or {})}
    return start_worker("toy", url, consumer, extra=("--concurrency", str(concurrency), *extra), env=toy)


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM a worker process and require a clean exit (0); kill it if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
