"""Redis security: emostream runs under an ACL user that may only touch ``bus.prefix`` keys (the stage
runtime, the serve fan-out and API, the ingest's blobs), and that user is refused everywhere else;
raw media (utterance audio, frame JPEGs) lives in Redis only as blobs with the ``bus.blob_ttl_s`` TTL
and only refs travel in stream entries.

A real redis-server per test (password on the default user, AOF on), real Silero VAD segmentation of
espeak-ng speech for the media blobs.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import msgspec
import numpy as np
import pytest
import redis

from emostream.bench.speech_data import speak
from emostream.bus import dead_stream, open_bus
from emostream.config import BusSettings, load_settings
from emostream.runtime.stage import run_stage
from emostream.schema import Utterance, decode
from emostream.server.tracks import open_participant
from emostream.testing.harness import SINK, collect, fast_settings, pings
from emostream.testing.redis_server import free_port
from emostream.testing.toy import relay, stream_of

from .conftest import Redis, emostream
from .live_serve import live_serve

ADMIN_PASSWORD = "admin-0123456789-abcdef"
USER, PASSWORD = "emo", "emo-0123456789-abcdef"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def documented_acl() -> list[str]:
    """The ``ACL SETUSER emostream ...`` rules docs/operations.md tells operators to create."""
    (line,) = {
        ln.strip()
        for ln in (DOCS / "operations.md").read_text().splitlines()
        if ln.strip().startswith("ACL SETUSER")
    }
    rules = line.split()[3:]
    assert "~emostream:*" in rules and "-@dangerous" in rules, line
    return [f">{PASSWORD}" if r.startswith(">") else r for r in rules]


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[Redis, str]]:
    server = Redis(port=free_port(), dir=tmp_path, password=ADMIN_PASSWORD)
    server.start()
    admin = redis.Redis(port=server.port, password=ADMIN_PASSWORD)
    admin.execute_command("ACL", "SETUSER", USER, "resetkeys", "resetchannels", *documented_acl())
    admin.close()
    yield server, f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"
    server.stop()


async def test_the_pipeline_runs_under_a_user_limited_to_the_prefix(acl_redis: tuple[Redis, str]) -> None:
    _, url = acl_redis
    bus = open_bus(url, BusSettings(url=url, maxlen=1000, retention_s=60))
    settings = fast_settings(url)
    assert not await bus.open_to_anyone()  # type: ignore[attr-defined]  # the default user needs a password
    await bus.ensure_group(stream_of(1), SINK, "0")
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(relay(1), bus, settings, consumer="acl", stop=stop))
    try:
        await bus.publish_many(stream_of(0), pings(5))
        await bus.publish(stream_of(0), b"\xc1 poison")  # dead-lettered: the dead stream is ours too
        got = await collect(bus, stream_of(1), {f"m{i}" for i in range(5)}, timeout_s=20)
        ref = await bus.put_blob("audio/r/s/1", b"\x00" * 64, 30)
        assert await bus.get_blob(ref) == b"\x00" * 64
    finally:
        stop.set()
        stats = await asyncio.wait_for(task, 20)
    assert set(got) == {f"m{i}" for i in range(5)} and stats.dead_lettered == 1
    assert len(await bus.tail({dead_stream(stream_of(0)): "0-0"}, 10, 10)) == 1
    await bus.close()

    # serve on the same user: the fan-out files a posted event into its room; catch-up and the room list read it
    from tests.server.helpers import event

    def through_serve() -> tuple[int, list[str]]:
        with live_serve(url) as live:
            body = msgspec.json.encode([event("acl-room", 1)])

            async def go() -> tuple[int, list[str]]:
                h = {"Authorization": f"Bearer {live.token('acl-room', 'publish')}"}
                async with live.session.post(
                    f"{live.url}/v1/rooms/acl-room/events", data=body, headers=h
                ) as r:
                    assert r.status == 200, await r.text()
                for _ in range(100):
                    h = {"Authorization": f"Bearer {live.token('acl-room', 'subscribe')}"}
                    async with live.session.get(f"{live.url}/v1/rooms/acl-room/events", headers=h) as r:
                        n = len((await r.json())["events"])
                    if n:
                        break
                    await asyncio.sleep(0.05)
                h = {"Authorization": f"Bearer {live.token('*', 'admin')}"}
                async with live.session.get(f"{live.url}/v1/rooms", headers=h) as r:
                    rooms = [x["room"] for x in (await r.json())["rooms"]]
                return n, rooms

            out = live.run(go())
            assert not live.problems.take()
            return out

    n, rooms = await asyncio.to_thread(through_serve)
    assert n == 1 and rooms == ["acl-room"]


def test_the_user_is_refused_outside_the_prefix(acl_redis: tuple[Redis, str]) -> None:
    server, url = acl_redis
    client = redis.Redis.from_url(url)
    client.set("emostream:mine", b"1")  # allowed
    for name, call in {
        "GET": lambda: client.get("other:key"),
        "SET": lambda: client.set("session:42", b"x"),
        "XADD": lambda: client.xadd("orders", {"d": b"x"}),
        "KEYS": lambda: client.keys("*"),
        "FLUSHALL": lambda: client.flushall(),
        "CONFIG": lambda: client.config_get("requirepass"),
    }.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
        assert name
    client.close()
    # a worker pointed at another prefix with this user stops with one clear line, no traceback
    proc = emostream("worker", "toy", "--redis", url, env={"EMOSTREAM_BUS_PREFIX": "other:"})
    try:
        _, err = proc.communicate(timeout=60)
    except Exception:
        proc.send_signal(signal.SIGKILL)
        raise
    text = err.decode()
    assert proc.returncode not in (0, None), text[-1500:]
    assert "Traceback" not in text and "NOPERM" in text and "other:" in text, text[-1500:]


async def test_raw_media_lives_only_as_blobs_with_the_ttl(acl_redis: tuple[Redis, str]) -> None:
    """Speech and video into a participant's ingest: audio and frames are blobs whose TTL is
    ``bus.blob_ttl_s``; stream entries carry refs, never the bytes; after the TTL no blob is left."""
    server, url = acl_redis
    ttl_s = 3.0
    settings = load_settings(
        env={
            "EMOSTREAM_BUS_URL": url,
            "EMOSTREAM_BUS_BLOB_TTL_S": str(ttl_s),
            "EMOSTREAM_BUS_CLAIM_IDLE_MS": "200",  # retry horizon 5 x 0.2 s, inside the TTL
        }
    )
    bus = open_bus(url, settings.bus)
    ingest = open_participant(bus, settings, "media-room", "alice", t0=1000.0)
    speech = speak("I will send you the signed contract before the end of the week.")
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    face = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    for i in range(0, len(audio), 1600):  # 100 ms of audio, then the frames of those 100 ms
        await ingest.speech.push_audio(audio[i : i + 1600])
        ingest.video(face, 1000.0 + i / 16000)
    await ingest.close()
    utterances = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 10, 10)]
    assert len(utterances) == 1 and utterances[0].audio and len(utterances[0].frames) >= 3
    admin = redis.Redis(port=server.port, password=ADMIN_PASSWORD)
    blobs = admin.keys("emostream:blob:*")
    assert len(blobs) >= 1 + len(utterances[0].frames), blobs
    for key in blobs:
        assert 0 < admin.pttl(key) <= ttl_s * 1000, key
    audio_bytes = admin.hget(b"emostream:" + utterances[0].audio.encode(), "d")  # a blob: d = bytes, n = refs
    assert audio_bytes is not None and len(audio_bytes) > 50_000
    for stream in admin.scan_iter("emostream:*", _type="stream"):
        for _, fields in admin.xrange(stream) or []:
            for value in (fields or {}).values():
                assert len(value) < 8_000, f"{stream!r} carries {len(value)} bytes: media in a stream entry?"
                assert cast(bytes, audio_bytes)[1000:1064] not in cast(bytes, value)
    deadline = time.monotonic() + ttl_s + 5
    while admin.keys("emostream:blob:*") and time.monotonic() < deadline:  # noqa: ASYNC110 - polls Redis
        await asyncio.sleep(0.2)
    assert admin.keys("emostream:blob:*") == [], "raw media outlived bus.blob_ttl_s"
    assert await bus.get_blob(utterances[0].audio) is None
    admin.close()
    await bus.close()
