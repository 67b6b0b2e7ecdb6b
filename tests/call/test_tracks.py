"""The call ingest under overload: video is dropped before audio, every drop is counted, audio that
got through still becomes an Utterance (real PyAV frames of a recorded prompt, real segmenter)."""

from __future__ import annotations

import av
import msgspec
import numpy as np
from prometheus_client import REGISTRY

from emostream.bench.call_media import PORTRAITS, RATE, load_prompt
from emostream.bus import open_bus
from emostream.config import load_settings
from emostream.schema import Utterance, decode
from emostream.server.tracks import TrackPump, open_participant


def _audio_frames() -> list[av.AudioFrame]:
    prompt = load_prompt("agent-pass")
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), prompt.audio, np.zeros(RATE, np.int16)])
    n = RATE // 50
    frames = []
    for i in range(audio.size // n):
        f = av.AudioFrame.from_ndarray(audio[i * n : (i + 1) * n].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate = RATE
        frames.append(f)
    return frames


def _video_frame() -> av.VideoFrame:
    import cv2

    img = cv2.imread(str(PORTRAITS / "astronaut.jpg"))[:, :, ::-1]
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")


def _dropped(kind: str, reason: str) -> float:
    return REGISTRY.get_sample_value("emostream_call_dropped_total", {"kind": kind, "reason": reason}) or 0.0


async def test_video_yields_to_backlogged_audio() -> None:
    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    pump = TrackPump(open_participant(bus, settings, "r", "alice"), settings.call, "r/alice")
    frames, video = _audio_frames(), _video_frame()
    before, full = _dropped("video", "overload"), _dropped("video", "queue_full")
    for i, f in enumerate(frames):  # a burst: the worker has not run yet, audio is backlogged
        pump.offer_audio(f)
        if i % 10 == 0:
            pump.offer_video(video, 1000.0 + i * 0.02)
    await pump.close()
    assert pump.stats.audio_dropped == 0 and pump.stats.errors == 0
    offered = pump.stats.video_frames
    assert pump.stats.video_dropped == offered  # no video while audio was behind, every frame counted
    assert _dropped("video", "overload") - before == settings.call.video_queue  # what was queued
    assert _dropped("video", "queue_full") - full == offered - settings.call.video_queue
    utts = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 10, 10)]
    assert len(utts) == 1 and utts[0].speaker == "alice"  # all audio reached the segmenter
    await bus.close()


async def test_full_audio_queue_drops_oldest_counted() -> None:
    settings = load_settings(env={})
    settings = msgspec.structs.replace(settings, call=msgspec.structs.replace(settings.call, audio_queue=40))
    bus = open_bus("memory://", settings.bus)
    pump = TrackPump(open_participant(bus, settings, "r", "bob"), settings.call, "r/bob")
    frames = _audio_frames()
    before = _dropped("audio", "queue_full")
    for f in frames:
        pump.offer_audio(f)
    await pump.close()
    assert pump.stats.audio_dropped == len(frames) - 40
    assert _dropped("audio", "queue_full") - before == len(frames) - 40
    await bus.close()
