"""The real ``emostream serve`` app (``serve.start``: API, WHIP, room page; no stages) on a loop in a
background thread, so synchronous Hypothesis tests can drive it with a real HTTP client; every log
record at ERROR or with a traceback is kept, so a test can assert that bad input produced none."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import aiohttp

from emostream.config import load_settings
from emostream.server import auth
from emostream.server.serve import Server, start

SECRET = "fuzz-secret-0123456789abcdef-0123456789"
T = TypeVar("T")


class Problems(logging.Handler):
    """Log records that mean something broke: ERROR and above, or anything carrying a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)

    def take(self) -> list[str]:
        out = [f"{r.name}: {r.getMessage()} {getattr(r, 'error', '')}" for r in self.records]
        self.records.clear()
        return out


class LiveServe:
    """A started server plus its loop; ``run(coro)`` executes a coroutine on that loop."""

    def __init__(
        self, server: Server, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
    ) -> None:
        self.server, self.loop, self.session = server, loop, session
        self.url = server.url
        self.problems = Problems()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def token(self, room: str, role: str, name: str = "fuzzer", ttl_s: float = 600) -> str:
        return auth.create(SECRET, room, role, name=name, ttl_s=ttl_s)


@contextmanager
def live_serve(bus_url: str = "memory://", **env: str) -> Iterator[LiveServe]:
    settings = load_settings(env={"EMOSTREAM_BUS_URL": bus_url, "EMOSTREAM_BUS_BLOCK_MS": "100", **env})
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-serve", daemon=True)
    thread.start()

    async def _open() -> tuple[Server, aiohttp.ClientSession]:
        server = await start(settings, "127.0.0.1", 0, [], SECRET)
        await asyncio.wait_for(server.state.ready.wait(), 30)
        return server, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))

    server, session = asyncio.run_coroutine_threadsafe(_open(), loop).result(60)
    live = LiveServe(server, loop, session)
    root = logging.getLogger()
    root.addHandler(live.problems)
    try:
        yield live
    finally:
        root.removeHandler(live.problems)

        async def _close() -> None:
            await session.close()
            await server.close(1.0)

        asyncio.run_coroutine_threadsafe(_close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
