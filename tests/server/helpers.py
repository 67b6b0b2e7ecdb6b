"""Shared pieces of the server tests: a running `emostream serve` process, tokens, an SSE reader
independent of emostream.client, and event makers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from emostream import schema
from emostream.server import auth
from emostream.testing.redis_server import free_port

SECRET = "test-secret-0123456789abcdef-0123456789"


def token(room: str, role: str = "subscribe", ttl_s: float = 600, secret: str = SECRET) -> str:
    return auth.create(secret, room, role, name="tester", ttl_s=ttl_s)


def event(room: str, n: int, speaker: str = "ana", text: str = "") -> schema.EmotionEvent:
    label = schema.EMOTIONS[n % len(schema.EMOTIONS)]
    probs = {k: (0.7 if k == label else 0.05) for k in schema.EMOTIONS}
    return schema.EmotionEvent(
        room=room,
        speaker=speaker,
        utterance=n,
        id=schema.event_id(room, speaker, n),
        start=float(n),
        end=n + 0.5,
        label=label,  # type: ignore[arg-type]
        probabilities=probs,
        confidence=0.3 + (n % 7) / 10,
        modalities=["text"],
        transcript=text or f"utterance {n}",
        emitted_at=time.time(),
    )


@dataclass
class ServeProc:
    proc: subprocess.Popen[bytes]
    url: str
    log: str

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def tail(self, chars: int = 2000) -> str:
        """The end of the server's log, for assertion messages."""
        with open(self.log, errors="replace") as f:
            return f.read()[-chars:]


def start_serve(
    bus_url: str | None, log_path: str, stages: str = "none", ready_s: float = 30, **env: str
) -> ServeProc:
    """`emostream serve --stages STAGES` on a free port; waits for /readyz."""
    port = free_port()
    cmd = [sys.executable, "-m", "emostream", "serve", "--port", str(port)]
    cmd += ["--stages", stages] if stages != "all" else []
    if bus_url:
        cmd += ["--redis", bus_url]
    full_env = {**os.environ, "EMOSTREAM_API_SECRET": SECRET, "EMOSTREAM_BUS_BLOCK_MS": "200", **env}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return ServeProc(proc, url, log_path)
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"serve did not become ready: {open(log_path).read()[-2000:]}")
        time.sleep(0.1)


async def post_events(url: str, room: str, events: list[schema.EmotionEvent], batch: int = 25) -> None:
    headers = {"Authorization": f"Bearer {token(room, 'publish')}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as s:
        for i in range(0, len(events), batch):
            body = msgspec.json.encode(events[i : i + batch])
            async with s.post(f"{url}/v1/rooms/{room}/events", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()


async def sse(
    url: str, room: str, since: str | None = None, **params: str
) -> AsyncIterator[tuple[str, str, bytes]]:
    """(event type, id, data) of each SSE message, parsed here independently of emostream.client."""
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token(room)}"}
    if since:
        headers["Last-Event-ID"] = since
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{url}/v1/rooms/{room}/events", headers=headers, params=params) as r,
    ):
        assert r.status == 200, await r.text()
        kind, eid, data = "message", "", b""
        async for raw in r.content:
            line = raw.rstrip(b"\n")
            if not line:
                if data:
                    yield kind, eid, data
                kind, eid, data = "message", "", b""
            elif line.startswith(b"id: "):
                eid = line[4:].decode()
            elif line.startswith(b"event: "):
                kind = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]


async def subscribers(url: str) -> float:
    """Live subscriptions the server reports on /metrics."""
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("emostream_api_subscribers{")
    )


async def wait_subscribers(url: str, n: float, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while await subscribers(url) < n:
        assert time.monotonic() < deadline, f"fewer than {n} subscribers connected"
        await asyncio.sleep(0.05)


def decode_event(data: bytes) -> dict[str, Any]:
    return msgspec.json.decode(data)
