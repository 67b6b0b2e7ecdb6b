"""Issue 13 #2 (the subscriber's side): an utterance whose media is gone yields a record a SUBSCRIBER of
`emostream serve` sees, never silence.

Before: a ``Dropped`` record only reached ``emostream events --redis``. Now serve's fan-out files the
``dropped`` stream into the room stream beside the events, and every transport carries it: SSE
``event: dropped``, WebSocket ``{"type": "dropped"}``, the JSON catch-up's ``dropped`` list, the Python
client (``Subscription.dropped``, ``dropped=True``) and ``emostream events --url`` (one line on stderr).
A real `emostream serve` on a real redis-server; the dead letter is written by ``Bus.dead_letter``, the
very call a stage makes when an utterance's audio blob has expired (tests/resilience/test_2_blob_expiry.py
drives a real asr stage into it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from emostream.bus import open_bus
from emostream.client import subscribe
from emostream.schema import Dropped, EmotionEvent, Utterance, encode
from tests.server.helpers import ServeProc, event, post_events, start_serve, token

ROOM = "drop-room"
REASON = "audio blob 'blob:audio/drop-room/bob/3' of drop-room/bob/3 is missing or expired (TTL)"


@pytest.fixture
def serve(flush_redis: str, tmp_path: Path) -> Iterator[ServeProc]:
    proc = start_serve(flush_redis, str(tmp_path / "serve.log"))
    yield proc
    assert proc.stop() == 0, open(proc.log).read()[-2000:]


async def _drop_an_utterance(url: str) -> None:
    """What the asr stage does with an Utterance whose audio expired: dead-letter it with the reason."""
    bus = open_bus(url)
    try:
        await bus.ensure_group(Utterance.stream, "asr", "$")
        msg = Utterance(room=ROOM, speaker="bob", utterance=3, start=0.0, end=1.0, audio="blob:audio/gone")
        await bus.publish(Utterance.stream, encode(msg))
        (delivery,) = await bus.read_group([Utterance.stream], "asr", "a", 1, 1000)
        await bus.dead_letter(delivery, "asr", REASON)
    finally:
        await bus.close()


async def test_every_subscriber_transport_carries_a_dropped_utterance(
    serve: ServeProc, flush_redis: str
) -> None:
    await post_events(serve.url, ROOM, [event(ROOM, 1)])
    await _drop_an_utterance(flush_redis)
    await _filed(serve.url)  # events and drops are separate streams: file the drop before the next event
    await post_events(serve.url, ROOM, [event(ROOM, 5)])

    # the Python client, in stream order with the events
    got: list[EmotionEvent | Dropped] = []
    sub = subscribe(serve.url, ROOM, token(ROOM), since="0-0", dropped=True)
    async with asyncio.timeout(30):
        async for record in sub:
            got.append(record)
            if len(got) == 3:
                break
    assert [type(r).__name__ for r in got] == ["EmotionEvent", "Dropped", "EmotionEvent"]
    dropped = got[1]
    assert isinstance(dropped, Dropped)
    assert (dropped.room, dropped.speaker, dropped.utterance, dropped.source) == (
        ROOM,
        "bob",
        3,
        "utterances",
    )
    assert dropped.reason == REASON and dropped.dead_stream == "utterances:dead" and dropped.dead_id
    assert sub.dropped == 1

    # a default subscription yields only events but still counts the drop
    plain = subscribe(serve.url, ROOM, token(ROOM), since="0-0")
    seen: list[Dropped] = []
    plain.on_dropped = seen.append
    async with asyncio.timeout(30):
        events = [e async for e in _take(plain, 2)]
    assert [e.utterance for e in events] == [1, 5] and plain.dropped == 1 and seen[0].utterance == 3

    headers = {"Authorization": f"Bearer {token(ROOM)}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        # JSON catch-up: a typed list beside the events
        async with s.get(f"{serve.url}/v1/rooms/{ROOM}/events", params={"since": "0-0"}) as r:
            body = await r.json()
        assert [e["event"]["utterance"] for e in body["events"]] == [1, 5]
        assert [(d["dropped"]["speaker"], d["dropped"]["utterance"]) for d in body["dropped"]] == [("bob", 3)]
        assert body["dropped"][0]["dropped"]["reason"] == REASON
        # the speaker filter applies to dropped records too
        async with s.get(
            f"{serve.url}/v1/rooms/{ROOM}/events", params={"since": "0-0", "speaker": "ana"}
        ) as r:
            assert (await r.json())["dropped"] == []
        # WebSocket
        async with s.ws_connect(f"{serve.url}/v1/rooms/{ROOM}/events/ws?since=0-0") as ws:
            kinds: list[str] = []
            async with asyncio.timeout(30):
                while len(kinds) < 4:
                    msg = json.loads((await ws.receive()).data)
                    kinds.append(msg["type"])
                    if msg["type"] == "dropped":
                        assert msg["dropped"]["utterance"] == 3 and msg["dropped"]["reason"] == REASON
        assert kinds == ["ready", "event", "dropped", "event"]

    # emostream events --url: the events on stdout, the drop on stderr
    cli = [sys.executable, "-m", "emostream", "events", "--url", serve.url, "--room", ROOM]
    cli += ["--token", token(ROOM), "--since", "0-0", "--count", "2", "--format", "json"]
    done = await asyncio.to_thread(subprocess.run, cli, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert [json.loads(line)["utterance"] for line in done.stdout.decode().splitlines()] == [1, 5]
    assert f"dropped {ROOM}/bob/3 (from utterances): {REASON}" in done.stderr.decode()


async def _filed(url: str) -> None:
    headers = {"Authorization": f"Bearer {token(ROOM)}"}
    async with aiohttp.ClientSession(headers=headers) as s, asyncio.timeout(30):
        while True:
            async with s.get(f"{url}/v1/rooms/{ROOM}/events", params={"since": "0-0"}) as r:
                if (await r.json())["dropped"]:
                    return
            await asyncio.sleep(0.1)


async def _take(sub: object, n: int):  # type: ignore[no-untyped-def]
    got = 0
    async for e in sub:  # type: ignore[attr-defined]
        yield e
        got += 1
        if got == n:
            return
