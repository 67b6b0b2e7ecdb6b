"""fec -> vlm under the real stage runtime, on the in-memory bus and on a real Redis (blobs included)."""

from __future__ import annotations

import asyncio

import numpy as np

from emostream.bus import Bus
from emostream.config import Settings
from emostream.inference.encoder import SentenceEncoder
from emostream.ingest.frames import FrameBuffer
from emostream.ingest.participant import store_frames
from emostream.runtime.pipeline import Pipeline
from emostream.schema import Utterance, VisualDescription, decode, encode
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.fec import FecStage
from emostream.workers.vlm.refine import emotion_words_in
from emostream.workers.vlm.stage import NO_FACE, VlmStage


async def test_utterances_become_descriptions(
    bus: Bus, settings: Settings, analyzer: FaceAnalyzer, encoder: SentenceEncoder, clip: list
) -> None:
    frames = FrameBuffer(settings.frames)
    for t, img in clip:
        frames.push(img, t)
    with_face = Utterance(
        room="room1", speaker="ann", utterance=1, start=0.0, end=3.0,
        frames=await store_frames(bus, "room1/ann/1", frames.encode(0.0, 3.0), ttl_s=60),
    )  # fmt: skip
    no_frames = Utterance(room="room1", speaker="ann", utterance=2, start=3.0, end=3.5)
    stop, ready = asyncio.Event(), asyncio.Event()
    pipeline = Pipeline(bus, settings)
    pipeline.add(FecStage(settings, analyzer)).add(VlmStage(settings, encoder=encoder))
    task = asyncio.create_task(pipeline.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 10)
    for utt in (with_face, no_frames):
        await bus.publish(Utterance.stream, encode(utt))
    got: dict[int, VisualDescription] = {}
    last = "0"
    async with asyncio.timeout(30):
        while len(got) < 2:
            for entry in await bus.tail({VisualDescription.stream: last}, count=10, block_ms=200):
                last = entry.id
                msg = decode(entry.data, VisualDescription)
                got[msg.utterance] = msg
    stop.set()
    stats = await asyncio.wait_for(task, 30)
    assert stats["fec"].processed == 2 and stats["vlm"].processed == 2
    first, second = got[1], got[2]
    assert first.face_found and "smile" in first.text and emotion_words_in(first.text) == []
    assert first.embedding is not None and abs(float(np.linalg.norm(first.embedding)) - 1) < 1e-4
    assert set(first.trace) >= {"fec", "vlm"}
    assert second.text == NO_FACE and second.embedding is None and not second.face_found
    assert await bus.pending_count(Utterance.stream, "fec") == 0
