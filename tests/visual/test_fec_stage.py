"""The `fec` stage on a real in-memory bus: Utterance with frame blobs in, KeyFrames out; bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
from prometheus_client import REGISTRY

from emostream.bus.memory import MemoryBus
from emostream.config import Settings
from emostream.runtime.stage import StageContext
from emostream.schema import EMOTIONS, FrameRef, KeyFrames, Utterance, decode, encode
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.image import decode_jpeg
from emostream.workers.fec import FecStage, create

from .conftest import grid_of_faces, jpeg


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[StageContext]:
    bus = MemoryBus()
    yield StageContext(bus=bus, settings=settings, stage="fec", consumer="test")
    await bus.close()


async def utterance(ctx: StageContext, frames: list[tuple[float, bytes | None]], n: int = 1) -> Utterance:
    refs = []
    for i, (t, data) in enumerate(frames):
        ref = await ctx.bus.put_blob(f"frame/r/s/{n}/{i}", data, 60) if data is not None else f"blob:gone/{i}"
        refs.append(FrameRef(t=t, blob=ref))
    end = max((t for t, _ in frames), default=0.0) + 0.3
    return Utterance(room="r", speaker="s", utterance=n, start=0.0, end=end, frames=refs, eos_at=123.0,
                     trace={"segment": 1.0})  # fmt: skip


async def run(stage: FecStage, utt: Utterance, ctx: StageContext) -> KeyFrames:
    emits = await stage.process(utt, ctx)  # as the runtime runs it: trace stamped
    assert len(emits) == 1 and emits[0].target == "keyframes"
    out = emits[0].message
    assert isinstance(out, KeyFrames)
    return decode(encode(out), KeyFrames)  # survives the wire


async def test_clip_utterance_to_key_frames(
    settings: Settings, analyzer: FaceAnalyzer, ctx: StageContext, clip: list
) -> None:
    stage = FecStage(settings, analyzer)
    window = [(t, jpeg(img)) for t, img in clip if t < 3.0][::5]  # 3 fps
    out = await run(stage, await utterance(ctx, window), ctx)
    assert out.face_found and out.frames_seen == len(window) and out.frames_bad == 0
    assert len(out.frames) == settings.fec.top_k
    assert [f.t for f in out.frames] == sorted(f.t for f in out.frames)
    assert out.eos_at == 123.0 and set(out.trace) == {"segment", "fec"}
    for f in out.frames:
        assert EMOTIONS[int(np.argmax(f.expression))] == "joy"
        assert len(f.blendshapes) == 52 and f.blendshapes["mouthSmileLeft"] > 0.5
        crop = decode_jpeg(await ctx.bus.get_blob(f.crop))
        assert crop is not None and crop.shape == (settings.fec.crop_size,) * 2 + (3,)
    rolls = [f.head_pose[2] for f in out.frames]
    assert rolls[-1] - rolls[0] > 5  # the clip tilts her head over time


async def test_bad_frames_are_counted(
    settings: Settings, analyzer: FaceAnalyzer, ctx: StageContext, astronaut: np.ndarray
) -> None:
    stage = FecStage(settings, analyzer)
    gray = np.ascontiguousarray(astronaut.mean(axis=2).astype(np.uint8))
    four_k = np.zeros((2160, 3840, 3), np.uint8)
    four_k[800:1312, 1664:2176] = astronaut
    frames: list[tuple[float, bytes | None]] = [
        (0.0, b"\xff\xd8\xff\xe0 definitely not a jpeg"),
        (0.3, jpeg(np.zeros((1, 1, 3), np.uint8))),
        (0.6, None),  # blob expired before the stage read it
        (0.9, jpeg(gray)),
        (1.2, jpeg(four_k)),
        (1.5, jpeg(grid_of_faces(np.ascontiguousarray(astronaut[20:260, 160:400]), n=20))),
    ]
    before = REGISTRY.get_sample_value("emostream_fec_frames_total", {"outcome": "bad"}) or 0.0
    gone = REGISTRY.get_sample_value("emostream_fec_frames_expired_total") or 0.0
    out = await run(stage, await utterance(ctx, frames), ctx)
    assert out.frames_seen == 6 and out.frames_bad == 3 and out.frames_expired == 1
    assert REGISTRY.get_sample_value("emostream_fec_frames_total", {"outcome": "bad"}) == before + 3
    assert REGISTRY.get_sample_value("emostream_fec_frames_expired_total") == gone + 1
    assert out.face_found  # the grayscale and the 4K frame still show her face
    assert {round(f.t, 1) for f in out.frames} >= {0.9}
    assert all(f.box[2] > 0 for f in out.frames)


async def test_no_frames_and_no_face(settings: Settings, analyzer: FaceAnalyzer, ctx: StageContext) -> None:
    stage = FecStage(settings, analyzer)
    out = await run(stage, await utterance(ctx, []), ctx)
    assert not out.face_found and out.frames == [] and out.frames_seen == 0
    blank = [(i / 3, jpeg(np.full((240, 320, 3), 128, np.uint8))) for i in range(3)]
    out = await run(stage, await utterance(ctx, blank, n=2), ctx)
    assert not out.face_found and out.frames_seen == 3 and out.frames_bad == 0


async def test_create_loads_models_from_store(
    settings: Settings, ctx: StageContext, hopper: np.ndarray
) -> None:
    stage = create(settings)
    assert isinstance(stage, FecStage)
    await stage.setup(ctx)
    try:
        out = await run(stage, await utterance(ctx, [(0.0, jpeg(hopper))]), ctx)
        assert out.face_found and len(out.frames) == 1
    finally:
        await stage.close()
