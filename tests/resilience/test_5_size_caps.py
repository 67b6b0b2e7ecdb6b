"""Issue 13 #5: size caps on messages, text and blobs.

Before: a 20 MB text field went through and produced two 20 MB events. Now publishes over
``bus.max_message_bytes`` and blobs over ``bus.max_blob_bytes`` are refused (one line, counted), and a
stage dead-letters an oversized message or one whose text exceeds ``bus.max_text_chars``, announcing the
utterance on the ``dropped`` stream.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from emostream.bus import Bus, TooLarge, dead_stream, open_bus
from emostream.config import BusSettings, Settings, StageSettings
from emostream.runtime.stage import run_stage
from emostream.schema import DeadLetter, Dropped, Transcript, Utterance, decode, encode
from emostream.workers.asr import create

from .conftest import refused


async def test_publishes_and_blobs_over_the_caps_are_refused(bus: Bus) -> None:
    small = open_bus(bus.url, BusSettings(url=bus.url, max_message_bytes=1000, max_blob_bytes=2000))
    try:
        before = refused("transcripts", "too_large")
        with pytest.raises(TooLarge, match=r"1001 bytes, over bus.max_message_bytes=1000"):
            await small.publish("transcripts", b"x" * 1001)
        assert refused("transcripts", "too_large") - before == 1
        assert await small.length("transcripts") == 0
        with pytest.raises(TooLarge, match=r"blob r/a/1.f32 is 2001 bytes, over bus.max_blob_bytes=2000"):
            await small.put_blob("r/a/1.f32", b"x" * 2001, 60)
        await small.publish("transcripts", b"x" * 1000)  # at the cap is fine
    finally:
        await small.close()


async def test_oversized_input_is_dead_lettered_with_the_reason(bus: Bus) -> None:
    """A 20,000-character text and a 2 MB message written past the caps (e.g. by another producer)."""
    settings = Settings(
        bus=BusSettings(url=bus.url, block_ms=50, max_text_chars=10_000, max_message_bytes=1 << 20),
        stage=StageSettings(claim_every_ms=50),
    )
    long_text = Utterance(room="r", speaker="a", utterance=1, start=0, end=1, text="ha " * 6_700)
    huge = Utterance(room="r", speaker="a", utterance=2, start=0, end=1, text="ok", audio="x" * (2 << 20))
    fine = Utterance(room="r", speaker="a", utterance=3, start=0, end=1, text="Fine words.")
    bus.max_message_bytes = 4 << 20  # the producer side is not capped here: the consumer must be
    for msg in (long_text, huge, fine):
        await bus.publish(Utterance.stream, encode(msg))
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(create(settings), bus, settings, consumer="a", stop=stop))
    got: dict[str, list[bytes]] = {
        Transcript.stream: [],
        dead_stream(Utterance.stream): [],
        Dropped.stream: [],
    }
    try:
        for stream in got:
            await bus.ensure_group(stream, "check", "0")
        deadline = time.monotonic() + 60
        while sum(map(len, got.values())) < 5 and time.monotonic() < deadline:
            for d in await bus.read_group(list(got), "check", "c", 10, 100):
                got[d.stream].append(d.data)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert [decode(b, Transcript).text for b in got[Transcript.stream]] == ["Fine words."]
    dead = sorted((decode(b, DeadLetter) for b in got[dead_stream(Utterance.stream)]), key=lambda d: d.id)
    assert len(dead) == 2
    assert "text too long: 20100 chars > bus.max_text_chars=10000" in dead[0].reason
    assert "too large" in dead[1].reason and "bus.max_message_bytes=1048576" in dead[1].reason
    assert "truncated" in dead[1].reason and len(dead[1].payload) <= 4096  # the record stays small
    assert sorted(decode(b, Dropped).utterance for b in got[Dropped.stream]) == [1, 2]
