"""Fuzzing the media path with Hypothesis: corrupt audio and video frames into a call participant's
ingest (the real TrackPump over the real ParticipantIngest: normalizer, Silero VAD segmenter, frame
buffer, memory bus), and timestamp jumps (frame pts, media-time jumps of the segmenter).

A bad frame is skipped and counted (``emostream_audio_frames{result}``, ``emostream_ingest_frames
{outcome}``), never raised, and never takes the good frames queued with it down; after any junk, real
speech still becomes an Utterance. tests/speech/test_audio.py and tests/visual/test_robustness.py
check the converters on their own; this drives them through the pump a call uses.
"""

from __future__ import annotations

import asyncio
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from emostream.bench.speech_data import speak
from emostream.bus import open_bus
from emostream.config import Settings, load_settings
from emostream.ingest import audio as audio_mod
from emostream.ingest import frames as frames_mod
from emostream.ingest.audio import SAMPLE_RATE, AudioNormalizer
from emostream.ingest.segmenter import Segmenter, SpeechEnd, SpeechStart
from emostream.ingest.vad import SileroModel
from emostream.schema import Utterance, decode
from emostream.server import tracks
from emostream.server.tracks import TrackPump, open_participant

MEDIA = settings(max_examples=25, deadline=None)
DTYPES = st.sampled_from(
    ["int16", "int32", "uint8", "float32", "float64", "int8", "uint16", "complex64", "bool"]
)
ARRAYS = hnp.arrays(
    dtype=DTYPES,
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
)
FLOAT_ARRAYS = hnp.arrays(np.float32, st.integers(0, 2000), elements=st.floats(width=32))  # NaN, inf, huge
JUNK = st.sampled_from([None, b"\x00\x01", "frame", 3.5, [1, 2, 3], {}, object()])


@st.composite
def audio_frames(draw: st.DrawFn) -> av.AudioFrame:
    """PyAV frames as a decoder could hand them over, valid or not: odd formats, layouts, rates, pts."""
    fmt = draw(st.sampled_from(["s16", "s32", "flt", "fltp", "s16p", "u8", "dbl"]))
    layout = draw(st.sampled_from(["mono", "stereo", "5.1"]))
    samples = draw(st.integers(0, 2000))
    channels = {"mono": 1, "stereo": 2, "5.1": 6}[layout]
    dtypes: dict[str, Any] = {
        "s16": np.int16,
        "s16p": np.int16,
        "s32": np.int32,
        "u8": np.uint8,
        "dbl": np.float64,
    }
    dtype = dtypes.get(fmt, np.float32)
    planar = fmt.endswith("p")
    shape = (channels, samples) if planar else (1, samples * channels)
    if dtype in (np.float32, np.float64):
        data = np.asarray(draw(hnp.arrays(dtype, shape, elements=st.floats(width=32))), dtype=dtype)
    else:
        data = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 100, shape).astype(dtype)
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = draw(st.sampled_from([8000, 16000, 44100, 48000, 96000, 1000, 384_000]))
    frame.pts = draw(st.none() | st.integers(-(2**40), 2**62))
    return frame


@st.composite
def video_frames(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
        fmt = draw(st.sampled_from(["rgb24", "yuv420p", "gray", "rgba"]))
        if fmt == "yuv420p":
            w, h = w * 2, h * 2
        frame = av.VideoFrame(w, h, fmt)
        frame.pts = draw(st.none() | st.integers(-(2**40), 2**62))
        return frame
    return draw(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=40)))


AUDIO_ITEMS = st.one_of(audio_frames(), ARRAYS, FLOAT_ARRAYS, JUNK)
VIDEO_ITEMS = st.one_of(video_frames(), JUNK)


@pytest.fixture(scope="module")
def media_settings() -> Settings:
    s = load_settings(env={})
    SileroModel.shared(s)  # load once (from the model store), not inside an example
    return s


def _count(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def _audio_seen() -> float:
    return sum(_count(audio_mod.FRAMES, r) for r in ("ok", "empty", "bad"))


def _video_seen() -> float:
    kept = sum(_count(frames_mod.FRAMES_IN, o) for o in ("kept", "skipped", "bad"))
    return kept + sum(_count(tracks.DROPPED, "video", r) for r in ("overload", "queue_full"))


async def _pump(settings: Settings, items: list[tuple[str, Any]]) -> tuple[TrackPump, list[Utterance]]:
    """Offer ``items`` to a participant's pump (as its track readers would), then end the participant."""
    bus = open_bus("memory://", settings.bus)
    pump = TrackPump(open_participant(bus, settings, "room", "fuzzer", t0=1000.0), settings.call, "fuzz")
    pump._worker = asyncio.create_task(pump._work())  # what add_track starts for a real track
    for i, (kind, frame) in enumerate(items):
        if kind == "audio":
            pump.offer_audio(frame)
        else:
            pump.offer_video(frame, 1000.0 + i * 0.4)
        if i % 7 == 0:
            await asyncio.sleep(0)  # let the worker drain now and then, as a live call does
    await pump.close()
    assert pump._worker.done() and pump._worker.exception() is None
    got = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 100, 10)]
    await bus.close()
    return pump, got


@MEDIA
@given(
    items=st.lists(st.tuples(st.sampled_from(["audio", "video"]), st.none()), max_size=30).flatmap(
        lambda kinds: st.tuples(
            *[
                AUDIO_ITEMS.map(lambda f: ("audio", f))
                if k == "audio"
                else VIDEO_ITEMS.map(lambda f: ("video", f))
                for k, _ in kinds
            ]
        )
    )
)
def test_corrupt_frames_are_skipped_and_counted_never_raised(
    media_settings: Settings, items: tuple[Any, ...]
) -> None:
    n_audio = sum(1 for k, _ in items if k == "audio")
    n_video = len(items) - n_audio
    audio_before, video_before = _audio_seen(), _video_seen()
    pump, _ = asyncio.run(_pump(media_settings, list(items)))
    assert pump.stats.errors == 0, "a bad frame reached the pump as an exception (its batch was dropped)"
    assert pump.stats.audio_frames == n_audio and pump.stats.video_frames == n_video
    assert _audio_seen() - audio_before == n_audio - pump.stats.audio_dropped, (
        "every audio frame counted once"
    )
    assert _video_seen() - video_before == n_video, "every video frame counted once"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return speak("The quarterly report is ready, and the numbers look better than we expected.")


def _frames_of(audio: np.ndarray, rate: int = 48_000, per: int = 960) -> list[av.AudioFrame]:
    """``audio`` (16 kHz) as 20 ms 48 kHz stereo s16 frames, what aiortc's Opus decoder hands over."""
    up = np.repeat(audio, 3)
    pcm = (np.clip(up, -1, 1) * 32767).astype(np.int16)
    out = []
    for i in range(0, len(pcm) - per + 1, per):
        chunk = np.repeat(pcm[i : i + per], 2)[None, :]
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
        frame.sample_rate = rate
        frame.pts = i
        out.append(frame)
    return out


@settings(max_examples=5, deadline=None)
@given(
    junk=st.lists(
        st.one_of(AUDIO_ITEMS.map(lambda f: ("audio", f)), VIDEO_ITEMS.map(lambda f: ("video", f))),
        min_size=5,
        max_size=20,
    )
)
def test_speech_after_junk_still_becomes_one_utterance(
    media_settings: Settings, speech: np.ndarray, junk: list[tuple[str, Any]]
) -> None:
    silence = np.zeros(SAMPLE_RATE, np.float32)
    face = np.full((64, 64, 3), 128, np.uint8)
    frames = _frames_of(np.concatenate([silence, speech, silence]))
    items: list[tuple[str, Any]] = list(junk)
    for i, f in enumerate(frames):
        items.append(("audio", f))
        if i % 5 == 0:
            items.append(("video", face))
    _, got = asyncio.run(_pump(media_settings, items))
    assert len(got) == 1, [(u.start, u.end) for u in got]
    assert 2.0 < got[0].end - got[0].start < len(speech) / SAMPLE_RATE + 1.5


# ------------------------------------------------------------------------------------ time jumps
@settings(max_examples=25, deadline=None)
@given(
    pts=st.lists(st.none() | st.integers(-(2**40), 2**62), min_size=1, max_size=40),
    rate=st.sampled_from([16_000, 44_100, 48_000]),
)
def test_pts_jumps_neither_add_nor_lose_audio(pts: list[int | None], rate: int) -> None:
    """The normalizer counts samples, not pts: jumps back or forward insert no silence and drop nothing."""
    norm = AudioNormalizer()
    per = rate // 50
    out = 0
    for p in pts:
        frame = av.AudioFrame.from_ndarray(
            np.ones((1, per * 2), np.int16) * 1000, format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts = rate, p
        out += norm.push(frame).size
    out += norm.flush().size
    want = len(pts) * per * SAMPLE_RATE / rate
    assert abs(out - want) <= 64, (out, want)
    assert norm.stats.bad_frames == 0


@settings(max_examples=15, deadline=None)
@given(
    plan=st.lists(
        st.one_of(
            st.sampled_from(["speech", "silence", "noise", "flush"]),
            st.floats(-1e7, 1e7, allow_nan=False).map(lambda dt: ("jump", dt)),
            st.sampled_from([("jump", float("nan")), ("jump", float("inf")), ("jump", -float("inf"))]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_media_time_jumps_keep_utterances_ordered_and_unique(
    media_settings: Settings, speech: np.ndarray, plan: list[Any]
) -> None:
    """``set_time`` jumps (replay clips, a re-anchored clock) between utterances: numbers stay unique and
    increasing (event ids derive from them), every utterance's span is its audio's length and finite; a
    jump mid-utterance or to a non-finite time is refused with a clear ValueError."""
    seg = Segmenter(media_settings.vad, model=SileroModel.shared(media_settings), t0=0.0)
    rng = np.random.default_rng(0)
    chunks = {
        "speech": speech,
        "silence": np.zeros(SAMPLE_RATE, np.float32),
        "noise": (rng.standard_normal(SAMPLE_RATE) * 0.01).astype(np.float32),
    }
    events = []
    for step in plan:
        if isinstance(step, tuple):
            target = seg.time + step[1]
            if seg.in_speech or not np.isfinite(target):
                with pytest.raises(ValueError, match="set_time"):
                    seg.set_time(target)
            else:
                seg.set_time(target)
                assert seg.time == pytest.approx(target)
        elif step == "flush":
            events += seg.flush()
        else:
            events += seg.push(chunks[step])
    events += seg.flush()
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    numbers = [e.utterance for e in events if isinstance(e, SpeechStart)]
    assert numbers == sorted(set(numbers)), numbers
    assert [e.utterance for e in ends] == sorted({e.utterance for e in ends})
    for e in ends:
        assert np.isfinite(e.start) and np.isfinite(e.end) and e.end > e.start
        assert e.end - e.start == pytest.approx(len(e.audio) / SAMPLE_RATE, abs=0.05)
