"""Shared fixtures: a real redis-server per test session, ``redis_url`` and a ``bus`` over both buses.

A missing redis-server fails the run loudly (no skips): install it with `apt-get install redis-server`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from hypothesis import settings

from emostream.bus import Bus, open_bus
from emostream.config import BusSettings
from emostream.testing.redis_server import free_port, start_redis

# Property tests run the same examples every time (CI and laptops alike): derandomized, no example
# database, no per-example deadline (a shared CI machine is slow at times). HYPOTHESIS_PROFILE=explore
# searches with fresh random examples instead, for a longer local hunt.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("explore", deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
