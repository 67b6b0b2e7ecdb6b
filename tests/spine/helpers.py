"""Shared pieces of the spine tests: fast settings, a sink that collects outputs, worker processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter

from emostream.bus import Bus
from emostream.config import BusSettings, Settings, StageSettings
from emostream.schema import decode, encode
from emostream.testing.redis_server import free_port as free_port  # re-exported for the spine tests
from emostream.testing.toy import Ping, stream_of

SINK = "sink"


def fast_settings(url: str = "memory://", **bus: object) -> Settings:
    """Short blocking, claiming and grace so the tests finish quickly."""
    opts: dict[str, object] = {"block_ms": 50, "claim_idle_ms": 300, "max_deliveries": 5, **bus}
    return Settings(
        bus=BusSettings(url=url, **opts),  # type: ignore[arg-type]
        stage=StageSettings(concurrency=16, claim_every_ms=100, shutdown_grace_s=5, lag_every_s=0.2),
    )


def pings(n: int, start: int = 0, payload: bytes = b"x" * 64) -> list[bytes]:
    return [
        encode(Ping(id=f"m{i}", n=i, payload=payload, sent_at=time.time())) for i in range(start, start + n)
    ]


async def publish_all(bus: Bus, items: list[bytes], stream: str = stream_of(0)) -> None:
    for i in range(0, len(items), 200):
        await bus.publish_many(stream, items[i : i + 200])


async def collect(
    bus: Bus, stream: str, want: set[str], timeout_s: float = 30.0, settle_s: float = 0.3
) -> Counter[str]:
    """Read ``stream`` through the sink group until every id in ``want`` arrived (then a short settle
    to catch late duplicates); returns how often each id arrived."""
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


async def wait_until(predicate, timeout_s: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def start_worker(
    url: str,
    hop: int,
    consumer: str,
    delay_ms: int = 0,
    concurrency: int = 16,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``emostream worker toy`` as a real child process."""
    full = {**os.environ, "TOY_HOP": str(hop), "TOY_DELAY_MS": str(delay_ms), **(env or {})}
    cmd = [sys.executable, "-m", "emostream", "worker", "toy", "--redis", url]
    cmd += ["--consumer", consumer, "--concurrency", str(concurrency), *extra]
    return subprocess.Popen(cmd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
