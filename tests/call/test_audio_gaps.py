"""Audio lost before the ingest (RTP loss, a shed call queue, DTX) must not pull later utterances early:
the frames' pts say how much time passed, and the participant ingest keeps to it (ingest/timeline.py)."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest

from emostream.bench.call_media import RATE, load_prompt
from emostream.bus import open_bus
from emostream.config import load_settings
from emostream.ingest.participant import SpeechIngest
from emostream.ingest.timeline import AudioTimeline
from emostream.schema import Utterance

N = RATE // 50  # 20 ms frames, as Opus sends them
FIRST_PTS = 3_000_000_000  # RTP timestamps start anywhere


def _frames(pcm: np.ndarray, first_pts: int = FIRST_PTS) -> list[av.AudioFrame]:
    out = []
    for i in range(0, pcm.size - N + 1, N):
        f = av.AudioFrame.from_ndarray(pcm[i : i + N].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate = RATE
        f.pts = first_pts + i
        f.time_base = fractions.Fraction(1, RATE)
        out.append(f)
    return out


def test_runs_and_lost_seconds_follow_the_pts() -> None:
    frames = _frames(np.zeros(RATE, np.int16))  # 50 frames, 1 s
    kept = frames[:10] + frames[15:30] + frames[29:30] + frames[30:]  # 100 ms lost, then a repeat
    tl = AudioTimeline()
    runs = tl.split(kept[:12]) + tl.split(kept[12:])
    assert [round(lost, 4) for lost, _ in runs] == [0.0, 0.1, 0.0]
    assert [len(r) for _, r in runs] == [10, 2, 13 + 1 + 20]
    assert tl.stats.gaps == 1 and tl.stats.gap_s == pytest.approx(0.1)
    assert tl.stats.resets == 1  # the repeated frame went backwards: re-anchored, no gap invented


def test_frames_without_timestamps_and_wild_jumps_invent_no_gap() -> None:
    tl = AudioTimeline()
    f = _frames(np.zeros(3 * N, np.int16))
    f[2].pts = FIRST_PTS + 2 * N + 3600 * RATE  # an hour ahead: a wrap or a restarted sender, not loss
    assert [lost for lost, _ in tl.split(f)] == [0.0]
    assert tl.stats.resets == 1 and tl.stats.gaps == 0
    assert [lost for lost, _ in tl.split([np.zeros(N, np.float32), np.zeros(N, np.float32)])] == [0.0]


async def _utterances(frames: list[av.AudioFrame]) -> list[Utterance]:
    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    ingest = SpeechIngest(bus, settings, "r", "alice", t0=100.0)
    msgs = []
    for i in range(0, len(frames), 25):  # half-second chunks, as a busy pump hands them over
        msgs += await ingest.push_many(frames[i : i + 25])
    msgs += await ingest.flush()
    ingest.close()
    await bus.close()
    return [m for m in msgs if isinstance(m, Utterance)]


@pytest.mark.parametrize("lost_s", [0.3, 4.0])
async def test_lost_audio_keeps_later_utterances_at_their_true_time(lost_s: float) -> None:
    prompt = load_prompt("agent-pass").audio
    gap = np.zeros(6 * RATE, np.int16)
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), prompt, gap, prompt, np.zeros(RATE, np.int16)])
    frames = _frames(pcm)
    whole = await _utterances(frames)
    assert len(whole) == 2
    first_lost = (RATE // 2 + prompt.size + RATE) // N  # 1 s into the silence between the prompts
    cut = frames[:first_lost] + frames[first_lost + round(lost_s * 50) :]
    lossy = await _utterances(cut)
    assert len(lossy) == 2
    for a, b in zip(lossy, whole, strict=True):  # without the pts, the second came lost_s early
        assert (a.start, a.end) == pytest.approx((b.start, b.end), abs=0.05)


async def test_audio_lost_mid_speech_ends_the_utterance_and_keeps_the_clock() -> None:
    prompt = load_prompt("agent-pass").audio
    pcm = np.concatenate([np.zeros(RATE // 2, np.int16), prompt, np.zeros(3 * RATE, np.int16), prompt])
    pcm = np.concatenate([pcm, np.zeros(RATE, np.int16)])
    frames = _frames(pcm)
    whole = await _utterances(frames)
    mid = (RATE // 2 + prompt.size // 2) // N
    lossy = await _utterances(frames[:mid] + frames[mid + 100 :])  # 2 s lost from the middle of a word
    assert len(lossy) == 2
    assert lossy[0].start == pytest.approx(whole[0].start, abs=0.02)
    assert lossy[0].end <= 100.0 + mid * N / RATE + 0.1  # it ends where the audio stopped
    assert (lossy[1].start, lossy[1].end) == pytest.approx((whole[1].start, whole[1].end), abs=0.05)
