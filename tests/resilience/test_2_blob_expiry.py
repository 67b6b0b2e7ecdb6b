"""Issue 13 #2: audio that expires before ASR reaches it is accounted for, never silently lost.

Before: asr paused 15 s with ``bus.blob_ttl_s = 5``: 24 in, 0 out, nothing said. Now a blob lives as long
as the work that needs it: a message referring to it that a consumer group still has to read holds it
(at least ``bus.blob_hold_s``, renewed on reclaim, which must exceed the retry horizon), the last ack
deletes it, and an utterance whose media is gone anyway is dead-lettered with the reason and announced
on the ``dropped`` stream (what `emostream events` and serve's subscribers see).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from emostream.bench.asr import speak
from emostream.bus import Bus, dead_stream, open_bus
from emostream.bus.memory import MemoryBus
from emostream.bus.redis import RedisBus
from emostream.config import BusSettings, ConfigError, Settings, StageSettings, load_settings
from emostream.runtime.stage import run_stage
from emostream.schema import DeadLetter, Dropped, Transcript, Utterance, decode, encode
from emostream.workers.asr import create


def test_a_blob_hold_inside_the_retry_horizon_is_refused() -> None:
    env = {"EMOSTREAM_BUS_BLOB_HOLD_S": "120"}  # defaults: 5 deliveries x 30 s reclaim = 150 s
    with pytest.raises(ConfigError, match=r"bus.blob_hold_s = 120: .* = 150 s\); raise it above 150"):
        load_settings(env=env)
    assert load_settings(env={}).bus.blob_hold_s > 150


async def _blob_keys(bus: Bus) -> list[str]:
    """The blob keys left on the bus (Redis: SCAN of the prefix; memory: its table)."""
    if isinstance(bus, RedisBus):
        return sorted([k.decode() async for k in bus._r.scan_iter(match=bus.prefix + "blob:*")])
    assert isinstance(bus, MemoryBus)
    return sorted(bus._blobs)


async def test_a_paused_consumer_outliving_the_ttl_still_gets_the_media_and_the_ack_deletes_it(
    bus: Bus,
) -> None:
    """Two groups (asr, fec) read utterances; asr's consumer is paused 3x the TTL with the message
    pending, then it is reclaimed (the retry) and still reads the audio; only after BOTH groups have
    acked is the blob gone, and a blob no message refers to still ends at its TTL."""
    opts = BusSettings(url=bus.url, blob_ttl_s=0.4, blob_hold_s=30, claim_idle_ms=100, max_deliveries=5)
    bus = open_bus(bus.url, opts) if isinstance(bus, RedisBus) else bus
    bus.configure(opts)
    try:
        for group in ("asr", "fec"):
            await bus.ensure_group(Utterance.stream, group, "0")
        audio = np.ones(1600, dtype=np.float32)
        msg = await _utterance(bus, 0, audio, opts.blob_ttl_s, room="a room, with spaces")
        orphan = await bus.put_blob("r/alice/orphan.f32", b"x" * 10, opts.blob_ttl_s)  # never published
        (first,) = await bus.read_group([Utterance.stream], "asr", "paused", 10, 100)
        await asyncio.sleep(1.2)  # the consumer "pauses" 3x the TTL
        assert await bus.get_blob(orphan) is None  # unreferenced media still ends at its TTL
        (retry,) = await bus.claim_stale(Utterance.stream, "asr", "other", 100, 10)
        assert retry.id == first.id and retry.deliveries == 2
        assert await bus.get_blob(msg.audio) == audio.tobytes()  # the retry still has the media
        await bus.ack(Utterance.stream, "asr", [retry.id])
        assert await bus.get_blob(msg.audio) is not None  # fec has not read it yet
        (fec,) = await bus.read_group([Utterance.stream], "fec", "f", 10, 100)
        await bus.ack(Utterance.stream, "fec", [fec.id])
        await bus.ack(Utterance.stream, "fec", [fec.id])  # a second ack changes nothing
        assert await bus.get_blob(msg.audio) is None
        assert await _blob_keys(bus) == []  # no raw media kept once the work is done
    finally:
        if isinstance(bus, RedisBus):
            await bus.close()


async def test_a_dead_lettered_utterance_takes_its_media_with_it(bus: Bus) -> None:
    """Dead-lettering acks the message: its media goes at once (the dead letter keeps only the refs)."""
    await bus.ensure_group(Utterance.stream, "asr", "0")
    await _utterance(bus, 0, np.ones(160, dtype=np.float32), 60)
    (d,) = await bus.read_group([Utterance.stream], "asr", "c", 10, 100)
    assert len(await _blob_keys(bus)) == 1
    await bus.dead_letter(d, "asr", "test")
    assert await _blob_keys(bus) == []


async def _utterance(bus: Bus, n: int, audio: np.ndarray, ttl_s: float, room: str = "r") -> Utterance:
    ref = await bus.put_blob(f"{room}/alice/{n}.f32", audio.astype(np.float32).tobytes(), ttl_s)
    end = len(audio) / 16_000
    msg = Utterance(
        room=room, speaker="alice", utterance=n, start=0.0, end=end, audio=ref, eos_at=time.time()
    )
    await bus.publish(Utterance.stream, encode(msg))
    return msg


async def _drain(bus: Bus, stream: str, want: int, timeout_s: float) -> list[bytes]:
    await bus.ensure_group(stream, "check", "0")
    got: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for d in await bus.read_group([stream], "check", "c", 50, 100):
            got.append(d.data)
    return got


async def test_media_expired_during_a_pause_is_dead_lettered_and_announced(bus: Bus) -> None:
    settings = Settings(
        bus=BusSettings(url=bus.url, block_ms=50, blob_ttl_s=1.0, claim_idle_ms=100, max_deliveries=2),
        stage=StageSettings(claim_every_ms=50),
    )
    bus = open_bus(bus.url, settings.bus) if bus.url.startswith("redis") else bus
    speech = speak("Is there anything else we need to discuss?", "en-gb")
    for n in range(2):  # published while asr is down ("paused")
        await _utterance(bus, n, speech, settings.bus.blob_ttl_s)
    await asyncio.sleep(1.3)  # longer than the blob TTL
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        run_stage(create(settings), bus, settings, consumer="a", stop=stop, ready=ready)
    )
    try:
        await asyncio.wait_for(ready.wait(), 60)
        for n in range(2, 4):  # published once asr is back: transcribed
            await _utterance(bus, n, speech, settings.bus.blob_ttl_s)
        transcripts = [decode(b, Transcript) for b in await _drain(bus, Transcript.stream, 2, 60)]
        dead = [decode(b, DeadLetter) for b in await _drain(bus, dead_stream(Utterance.stream), 2, 30)]
        dropped = [decode(b, Dropped) for b in await _drain(bus, Dropped.stream, 2, 10)]
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        if bus.url.startswith("redis"):
            await bus.close()
    assert sorted(t.utterance for t in transcripts) == [2, 3]
    assert sorted(decode(d.payload, Utterance).utterance for d in dead) == [0, 1]
    assert all("missing or expired" in d.reason for d in dead), [d.reason for d in dead]
    assert sorted(d.key for d in dropped) == ["r/alice/0", "r/alice/1"]  # what a subscriber sees
    assert all(d.source == "utterances" and "expired" in d.reason for d in dropped)
