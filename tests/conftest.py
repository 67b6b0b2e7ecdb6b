"""Shared fixtures: a real redis-server per test session, ``redis_url`` and a ``bus`` over both buses.

A missing redis-server fails the run loudly (no skips): install it with `apt-get install redis-server`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from emostream.bus import Bus, open_bus
from emostream.config import BusSettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, *extra: str) -> subprocess.Popen[bytes]:
    """Start a throwaway redis-server on 127.0.0.1:``port`` (no persistence) and wait until it answers."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not installed: `apt-get install redis-server` (the tests need a real one)"
        )
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=_password(extra))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return proc
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.02)


def _password(extra: tuple[str, ...]) -> str | None:
    return extra[extra.index("--requirepass") + 1] if "--requirepass" in extra else None


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
