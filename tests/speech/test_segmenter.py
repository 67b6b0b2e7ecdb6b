"""Segmenter on real espeak-ng speech: boundaries on a 2-minute conversation, bad input, long monologues."""

from __future__ import annotations

import av
import numpy as np
from prometheus_client import REGISTRY

from emostream.bench.asr import speak
from emostream.bus.memory import MemoryBus
from emostream.config import Settings, VadSettings
from emostream.ingest.audio import SAMPLE_RATE
from emostream.ingest.participant import SpeechIngest
from emostream.ingest.segmenter import Segmenter, SpeechEnd, SpeechPartial, SpeechStart, segment
from emostream.ingest.vad import SileroModel
from emostream.schema import PartialAudio, SpeechStarted, Utterance

from .conftest import Conversation, Segmented, to_48k_stereo_frames, trimmed

TOLERANCE_S = 0.3


def _utterances(msgs: list[object]) -> list[Utterance]:
    return [m for m in msgs if isinstance(m, Utterance)]


def test_conversation_boundaries_within_300ms(conversation: Conversation, segmented: Segmented) -> None:
    assert conversation.duration > 100
    for who in ("ann", "ben", "cal"):  # three input paths: 48 kHz stereo frames, Opus file, numpy
        utts = _utterances(segmented.messages[who])
        truth = conversation.truth_of(who)
        assert len(utts) == len(truth), f"{who}: {[(u.start, u.end) for u in utts]}"
        for u, t in zip(utts, truth, strict=True):
            assert abs(u.start - t.start) <= TOLERANCE_S, (who, t.text, u.start, t.start)
            assert abs(u.end - t.end) <= TOLERANCE_S, (who, t.text, u.end, t.end)
        assert [u.utterance for u in utts] == list(range(len(utts)))


def test_inner_pauses_short_kept_long_split(conversation: Conversation, segmented: Segmented) -> None:
    ben = [t.text for t in conversation.truth_of("ben")]
    assert "The lease starts in the spring. The keys arrive in May." in ben  # 250 ms pause: one
    ann = [t.text for t in conversation.truth_of("ann")]
    assert "I will call her tomorrow." in ann  # 1.2 s pause: two utterances (checked above)
    assert len(_utterances(segmented.messages["ann"])) == 9


async def test_messages_order_blobs_and_pause_partials(segmented: Segmented) -> None:
    bus = segmented.bus
    assert isinstance(bus, MemoryBus)
    for msgs in segmented.messages.values():
        started = {m.utterance: i for i, m in enumerate(msgs) if isinstance(m, SpeechStarted)}
        partials = {(m.utterance, m.seq): m for m in msgs if isinstance(m, PartialAudio)}
        for i, u in enumerate(msgs):
            if not isinstance(u, Utterance):
                continue
            assert started[u.utterance] < i  # SpeechStarted came first
            blob = await bus.get_blob(u.audio)
            assert blob is not None
            samples = len(blob) // 4
            assert abs(samples / SAMPLE_RATE - (u.end - u.start)) < 1e-3  # audio spans [start, end]
            assert u.eos_at > 0 and u.trace["segmenter"] >= u.eos_at
            # the utterance names the pause partial it repeats (ASR reuses that pass), with its own blob
            # (an ack of the partial may delete the partial's)
            same = partials[(u.utterance, u.partial_seq)]
            assert u.audio not in {p.audio for p in partials.values()}
            assert await bus.get_blob(same.audio) == blob
    assert "call" in {m.room for m in segmented.messages["ann"] if isinstance(m, Utterance)}


def test_silence_and_noise_only_make_nothing() -> None:
    rng = np.random.default_rng(1)
    quiet = np.zeros(10 * SAMPLE_RATE, np.float32)
    noise = rng.normal(0, 0.02, 10 * SAMPLE_RATE).astype(np.float32)
    seg = Segmenter(VadSettings(), model=SileroModel.shared(Settings()))
    assert seg.push(quiet) + seg.push(noise) + seg.flush() == []
    assert seg.stats.windows == (20 * SAMPLE_RATE) // 512
    assert seg.stats.utterances == 0


def test_short_burst_is_dropped_without_speech_started() -> None:
    word = trimmed(speak("yes", "en-us"))[: int(0.12 * SAMPLE_RATE)]
    pad = np.zeros(SAMPLE_RATE, np.float32)
    before = REGISTRY.get_sample_value("emostream_vad_dropped_total") or 0.0
    events = segment(np.concatenate([pad, word, pad]), VadSettings(), SileroModel.shared(Settings()))
    assert not any(isinstance(e, SpeechStart | SpeechEnd) for e in events)
    assert (REGISTRY.get_sample_value("emostream_vad_dropped_total") or 0.0) == before + 1


async def test_nan_clipped_zero_length_and_bad_frames_are_counted() -> None:
    speech = trimmed(speak("The interviews will start next Monday.", "en-gb"))
    pad = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([pad, speech * 4.0, pad])  # clipped: 4x over full scale
    audio[SAMPLE_RATE + 3000 : SAMPLE_RATE + 3100] = np.nan
    audio[SAMPLE_RATE + 9000] = np.inf
    nan0 = REGISTRY.get_sample_value("emostream_audio_fixed_samples_total", {"kind": "nan"}) or 0.0
    empty0 = REGISTRY.get_sample_value("emostream_audio_frames_total", {"result": "empty"}) or 0.0
    bad0 = REGISTRY.get_sample_value("emostream_audio_frames_total", {"result": "bad"}) or 0.0
    bus = MemoryBus()
    ingest = SpeechIngest(bus, Settings(), "r", "s", t0=0.0)
    out = []
    for i in range(0, audio.size, 320):
        out += await ingest.push(audio[i : i + 320], SAMPLE_RATE)
        out += await ingest.push(np.zeros(0, np.float32), SAMPLE_RATE)
    empty_frame = av.AudioFrame(format="s16", layout="stereo", samples=0)
    empty_frame.sample_rate = 48_000
    out += await ingest.push(empty_frame)
    out += await ingest.push(np.zeros((2, 2, 2), np.float32), SAMPLE_RATE)  # 3-D: unusable
    out += await ingest.push(np.zeros(10, np.complex64), SAMPLE_RATE)  # not audio samples
    out += await ingest.push(np.zeros(10, np.float32), 0)  # no usable rate
    out += await ingest.flush()
    utts = _utterances(out)
    assert len(utts) == 1
    assert abs(utts[0].start - 1.0) < TOLERANCE_S
    assert abs(utts[0].end - (1.0 + speech.size / SAMPLE_RATE)) < TOLERANCE_S
    blob = await bus.get_blob(utts[0].audio)
    assert blob is not None
    samples = np.frombuffer(blob, np.float32)
    assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
    stats = ingest.normalizer.stats
    assert stats.nan_samples == 101 and stats.clipped_samples > 1000
    assert stats.empty_frames == -(-audio.size // 320) + 1 and stats.bad_frames == 3
    assert REGISTRY.get_sample_value("emostream_audio_fixed_samples_total", {"kind": "nan"}) == nan0 + 101
    assert REGISTRY.get_sample_value("emostream_audio_frames_total", {"result": "empty"}) > empty0
    assert REGISTRY.get_sample_value("emostream_audio_frames_total", {"result": "bad"}) == bad0 + 3


async def test_sample_rate_changes_mid_stream() -> None:
    speech = trimmed(speak("We are looking for two engineers and a designer.", "en-us"))
    pad = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([pad, speech, pad])
    third = audio.size // 3
    ingest = SpeechIngest(MemoryBus(), Settings(), "r", "s", t0=0.0)
    out = []
    for frame in to_48k_stereo_frames(audio[:third]):  # WebRTC 48 kHz stereo ...
        out += await ingest.push(frame)
    out += await ingest.push(audio[third : 2 * third], SAMPLE_RATE)  # ... then 16 kHz ...
    import av as _av

    res = _av.AudioResampler(format="s16", layout="mono", rate=44_100)  # ... then 44.1 kHz int16 mono
    src = _av.AudioFrame.from_ndarray(audio[None, 2 * third :], format="flt", layout="mono")
    src.sample_rate = SAMPLE_RATE
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in res.resample(src) + res.resample(None)])
    for i in range(0, pcm.size, 441):
        out += await ingest.push(pcm[i : i + 441], 44_100)
    out += await ingest.flush()
    assert ingest.normalizer.stats.rate_changes == 2
    utts = _utterances(out)
    assert len(utts) == 1
    assert abs(utts[0].start - 1.0) < TOLERANCE_S
    assert abs(utts[0].end - (1.0 + speech.size / SAMPLE_RATE)) < TOLERANCE_S
    # the media clock stayed continuous across the changes (within a few ms of resampler delay)
    assert abs(ingest.segmenter.time - audio.size / SAMPLE_RATE) < 0.05


def test_ten_minute_monologue_is_split_with_bounded_memory() -> None:
    sentences = [
        trimmed(speak(t, "en-us", speed=190))
        for t in (
            "So here is the thing about the project that nobody wants to hear",
            "we keep adding features and the deadline keeps moving",
            "and every week there is another meeting about the same problems",
        )
    ]
    gap = np.zeros(int(0.12 * SAMPLE_RATE), np.float32)  # breaths shorter than the hangover
    opts = VadSettings(max_utterance_s=15.0)
    seg = Segmenter(opts, model=SileroModel.shared(Settings()))
    total = 10 * 60 * SAMPLE_RATE
    fed = 0
    ends: list[SpeechEnd] = []
    i = 0
    rss_after_1min = 0
    while fed < total:
        piece = np.concatenate([sentences[i % 3], gap])
        i += 1
        for j in range(0, piece.size, 1600):
            for e in seg.push(piece[j : j + 1600]):
                if isinstance(e, SpeechEnd):
                    ends.append(
                        SpeechEnd(e.utterance, e.start, e.end, np.zeros(0, np.float32), e.reason, e.eos_at)
                    )
        fed += piece.size
        if not rss_after_1min and fed >= 60 * SAMPLE_RATE:
            rss_after_1min = _rss()
    ends += [e for e in seg.flush() if isinstance(e, SpeechEnd)]
    growth = _rss() - rss_after_1min  # 9 more minutes retained would be ~35 MB of float32 audio
    assert growth < 8 * 2**20, f"RSS grew {growth / 2**20:.1f} MiB over 9 minutes"
    assert seg.stats.max_buffered_s <= opts.max_utterance_s + 0.04
    assert all(e.end - e.start <= opts.max_utterance_s + 0.04 for e in ends)
    assert seg.stats.splits >= 30 and sum(e.reason == "max_length" for e in ends) == seg.stats.splits
    covered = sum(e.end - e.start for e in ends)
    assert covered > 0.9 * total / SAMPLE_RATE  # split pieces are contiguous: nothing is lost
    assert [e.utterance for e in ends] == list(range(len(ends)))


def test_periodic_partials_grow_and_pause_partial_matches() -> None:
    speech = trimmed(speak("Please send me her details after the meeting, and then call me.", "en-gb"))
    pad = np.zeros(SAMPLE_RATE, np.float32)
    events = segment(
        np.concatenate([pad, speech, pad]), VadSettings(partial_every_ms=500), SileroModel.shared(Settings())
    )
    partials = [e for e in events if isinstance(e, SpeechPartial)]
    periodic = [p for p in partials if not p.pause]
    assert len(periodic) >= 3
    assert all(b.audio.size > a.audio.size for a, b in zip(periodic, periodic[1:], strict=False))
    assert [p.seq for p in partials] == list(range(len(partials)))
    end = [e for e in events if isinstance(e, SpeechEnd)]
    assert len(end) == 1 and end[0].partial_seq is not None
    match = next(p for p in partials if p.seq == end[0].partial_seq)
    assert match.pause and np.array_equal(match.audio, end[0].audio)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_flush_and_set_time_keep_the_clock_exact() -> None:
    """Replay-style use: one segmenter per participant, a forced boundary per clip, clips placed on a
    room timeline. Odd clip lengths (not multiples of a window) must not make the clock drift."""
    speech = trimmed(speak("Have a nice weekend.", "en-gb"))
    pad = np.zeros(8_123, np.float32)
    clip = np.concatenate([pad, speech, pad])
    seg = Segmenter(VadSettings(), model=SileroModel.shared(Settings()))
    starts: list[float] = []
    for i in range(4):
        events = seg.push(clip[: clip.size - 700]) + seg.flush()  # cut mid-speech-tail: flush closes
        starts += [e.start for e in events if isinstance(e, SpeechEnd)]
        if i == 1:
            seg.set_time(100.0)
    clip_s = (clip.size - 700) / SAMPLE_RATE
    want = [0.0, clip_s, 100.0, 100.0 + clip_s]
    onset = pad.size / SAMPLE_RATE
    assert len(starts) == 4
    for got, t in zip(starts, want, strict=True):
        assert abs(got - (t + onset)) <= TOLERANCE_S
    assert abs(seg.time - (100.0 + 2 * clip_s)) < 1e-6
    seg.push(clip[: pad.size + 8_000])  # half a second into speech
    try:
        seg.set_time(5.0)
    except ValueError as exc:
        assert "flush" in str(exc)
    else:
        raise AssertionError("set_time mid-utterance must refuse")


def test_pause_partials_can_be_turned_off() -> None:
    speech = trimmed(speak("Then let us end the meeting here.", "en-us"))
    pad = np.zeros(SAMPLE_RATE, np.float32)
    events = segment(
        np.concatenate([pad, speech, pad]),
        VadSettings(partial_on_pause=False),
        SileroModel.shared(Settings()),
    )
    assert not any(isinstance(e, SpeechPartial) for e in events)
    (end,) = [e for e in events if isinstance(e, SpeechEnd)]
    assert end.partial_seq is None and end.reason == "silence"
