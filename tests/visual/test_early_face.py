"""The face read during the hangover: the pause partial carries the frames so far, fec reads them
then, and at end of speech only the newest frames are new to it, with the same result as one pass.

Real speech (an Asterisk prompt) through the real participant ingest (Silero VAD) with a real face
(skimage's astronaut) in the frame buffer; real MediaPipe and FER models.
"""

from __future__ import annotations

import numpy as np

from emostream.bench.call_media import RATE, load_prompt
from emostream.bus import open_bus
from emostream.config import Settings, load_settings
from emostream.ingest.audio import to_16k_mono
from emostream.ingest.frames import FrameBuffer
from emostream.ingest.participant import SpeechIngest, store_frames
from emostream.runtime.stage import StageContext
from emostream.schema import FrameRef, KeyFrames, PartialAudio, Utterance
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.expression import create_expression_model
from emostream.workers.face.landmarks import Face, FaceLandmarks
from emostream.workers.fec import FecStage, analyze_options


class Counting:
    """A landmarker that counts the frames it is asked to detect faces in."""

    def __init__(self, inner: FaceLandmarks) -> None:
        self.inner, self.calls = inner, 0

    def detect(self, img: np.ndarray) -> list[Face]:
        self.calls += 1
        return self.inner.detect(img)

    def close(self) -> None:
        pass


async def _speak(
    settings: Settings, astronaut: np.ndarray
) -> tuple[list[PartialAudio], list[Utterance], object]:
    """One prompt through the ingest, with the face pushed at 6 fps of media time as the audio goes."""
    bus = open_bus("memory://", settings.bus)
    frames = FrameBuffer(settings.frames)

    async def sample(key: str, start: float, end: float) -> list[FrameRef]:
        return await store_frames(bus, key, frames.encode(start, end), 60)

    ingest = SpeechIngest(bus, settings, "r", "ann", t0=0.0, frames=sample)
    prompt = load_prompt("conf-getpin")
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), prompt.audio, np.zeros(RATE, np.int16)])
    audio = to_16k_mono(pcm.astype(np.float32) / 32768, RATE)
    out = []
    hop = 320  # 20 ms
    for i in range(0, audio.size, hop):
        t = i / 16000
        if int(t * 6) != int((t + hop / 16000) * 6):
            frames.push(astronaut, t)
        out += await ingest.push_audio(audio[i : i + hop])
    out += await ingest.flush()
    partials = [m for m in out if isinstance(m, PartialAudio)]
    utterances = [m for m in out if isinstance(m, Utterance)]
    return partials, utterances, bus


async def test_the_pause_partial_carries_the_frames_the_utterance_repeats(astronaut: np.ndarray) -> None:
    settings = load_settings(env={})
    partials, utterances, bus = await _speak(settings, astronaut)
    (utt,) = utterances
    pause = [p for p in partials if p.frames]
    assert pause, "the pause partial carries no frames"
    early = pause[-1]
    assert len(early.frames) >= 3 and len(utt.frames) >= len(early.frames)
    got = {f.t: await bus.get_blob(f.blob) for f in early.frames}  # type: ignore[attr-defined]
    final = {f.t: await bus.get_blob(f.blob) for f in utt.frames}  # type: ignore[attr-defined]
    shared = [t for t in got if t in final]
    assert len(shared) >= len(got) - 1  # the last slot may move to a newer frame
    assert all(got[t] == final[t] for t in shared)  # the same JPEG bytes: the face expert's memo hits
    off = load_settings(env={"EMOSTREAM_FEC_EARLY_FRAMES": "false"})
    partials, _, _ = await _speak(off, astronaut)
    assert partials and not any(p.frames for p in partials)


async def test_fec_reads_the_pause_frames_early_and_the_utterance_only_the_new_ones(
    settings: Settings, landmarker: FaceLandmarks, astronaut: np.ndarray
) -> None:
    partials, (utt,), bus = await _speak(load_settings(env={}), astronaut)
    early = [p for p in partials if p.frames][-1]
    expression = create_expression_model("litert", settings)
    counting = Counting(landmarker)
    stage = FecStage(settings, FaceAnalyzer([counting], expression, analyze_options(settings)))  # type: ignore[list-item]
    ctx = StageContext(bus=bus, settings=settings, stage="fec", consumer="t")  # type: ignore[arg-type]
    assert await stage.process(early, ctx) == []  # read ahead, nothing published
    read_early = counting.calls
    assert read_early == len(early.frames)
    (emit,) = await stage.process(utt, ctx)
    new = len({f.t for f in utt.frames} - {f.t for f in early.frames})
    assert counting.calls - read_early <= new + 1  # only the newest frames (the last slot may move)

    fresh_lm = Counting(landmarker)
    fresh = FecStage(settings, FaceAnalyzer([fresh_lm], expression, analyze_options(settings)))  # type: ignore[list-item]
    (ref,) = await fresh.process(utt, ctx)
    assert fresh_lm.calls == len(utt.frames)
    a, b = emit.message, ref.message
    assert isinstance(a, KeyFrames) and isinstance(b, KeyFrames) and a.face_found
    assert [f.t for f in a.frames] == [f.t for f in b.frames]
    assert [f.expression for f in a.frames] == [f.expression for f in b.frames]
    assert a.face == b.face  # the face expert's reading is the same as one pass over every frame
