"""A WHIP server for tests and tokens in the format of ``emostream token create``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from emostream.bench import call
from emostream.bus import Bus, open_bus
from emostream.config import Settings, load_settings
from emostream.schema import Utterance, decode
from emostream.server import auth
from emostream.server.page import add_room_page
from emostream.server.tracks import TrackPump, call_sink
from emostream.server.whip import WhipEndpoint, add_whip_routes

SECRET = call.SECRET


def verify(token: str | None, room: str) -> str:
    """The publish check ``emostream serve`` mounts (``mount_call``): ``auth.check``, participant = subject."""
    return auth.check(SECRET, token, room, ("publish",)).name


def token(
    room: str, role: str = "publish", name: str = "alice", ttl_s: float = 600, secret: str = SECRET
) -> str:
    return auth.create(secret, room, role, name=name, ttl_s=ttl_s)


@dataclass
class WhipServer:
    settings: Settings
    bus: Bus
    endpoint: WhipEndpoint
    runner: web.AppRunner
    url: str
    pumps: list[TrackPump] = field(default_factory=list)

    def whip(self, room: str) -> str:
        return f"{self.url}/whip/{room}"

    async def utterances(self, n: int, wait_s: float) -> list[Utterance]:
        deadline = time.monotonic() + wait_s
        while True:
            out = [decode(e.data, Utterance) for e in await self.bus.tail({"utterances": "0"}, 1000, 10)]
            if len(out) >= n or time.monotonic() > deadline:
                return out
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.bus.close()


async def start_whip(page: bool = False, **call: Any) -> WhipServer:
    settings = load_settings(env={})
    settings = msgspec.structs.replace(settings, call=msgspec.structs.replace(settings.call, **call))
    bus = open_bus("memory://", settings.bus)
    app = web.Application()
    make = call_sink(bus, settings)
    pumps: list[TrackPump] = []

    def sink(room: str, participant: str) -> TrackPump:
        pumps.append(make(room, participant))
        return pumps[-1]

    ep = add_whip_routes(app, settings.call, verify, sink)
    if page:
        add_room_page(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return WhipServer(settings, bus, ep, runner, f"http://127.0.0.1:{runner.addresses[0][1]}", pumps)
