"""Shared fixtures: a real redis-server per test session, ``redis_url`` and a ``bus`` over both buses.

A missing redis-server fails the run loudly (no skips): install it with `apt-get install redis-server`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from emostream.bus import Bus, open_bus
from emostream.config import BusSettings
from emostream.testing.redis_server import free_port, start_redis


@pytest.fixture
def unused_port() -> int:
    """A loopback TCP port nothing listens on (right now)."""
    return free_port()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    port = free_port()
    proc = start_redis(port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def flush_redis(redis_url: str) -> Iterator[str]:
    """The session's Redis, emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    yield redis_url


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The same test against the embedded bus and a real (flushed) Redis."""
    if request.param == "memory":
        b = open_bus("memory://", BusSettings(maxlen=10_000, publish_timeout_s=10))
    else:
        url = request.getfixturevalue("flush_redis")
        b = open_bus(url, BusSettings(url=url, maxlen=10_000))
    yield b
    await b.close()
