"""A scripted ~2-minute, three-person conversation spoken by espeak-ng, built once per test session.

Each participant has their own track (as in a call): their lines at scripted times, low background
noise, keyboard-like clicks in the gaps, silence while others talk. The truth is where each line's
voiced samples begin and end. One line has a short inner pause (must stay one utterance), one a long
inner pause (must become two utterances).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from emostream.bench.asr import speak
from emostream.ingest.audio import SAMPLE_RATE

SPEAKERS = {"ann": "en-us", "ben": "en-gb", "cal": "en-gb-x-rp"}
SCRIPT: list[tuple[str, str]] = [
    ("ann", "Good morning everyone, thanks for joining the call."),
    ("ben", "Morning. I have the report ready for you."),
    ("cal", "Great, I would like to hear about the budget first."),
    ("ann", "The budget looks fine this quarter."),
    ("ben", "We spent less on travel than we planned."),
    ("cal", "That is good news for the whole team."),
    ("ann", "What about the new office in Boston?"),
    ("ben", "The lease starts in the spring.|The keys arrive in May."),  # 250 ms pause: one utterance
    ("cal", "Do we have enough desks for everyone?"),
    ("ann", "We ordered twenty new desks last week."),
    ("ben", "I think we should also buy some plants."),
    ("cal", "Plants would make the room feel warmer."),
    ("ann", "Let us talk about the hiring plan."),
    ("ben", "We are looking for two engineers and a designer."),
    ("cal", "I know a designer who might be interested."),
    ("ann", "Please send me her details after the meeting.||I will call her tomorrow."),  # 1.2 s: two
    ("ben", "The interviews will start next Monday."),
    ("cal", "I can help with the first round."),
    ("ann", "Thank you, that would be very helpful."),
    ("ben", "Is there anything else we need to discuss?"),
    ("cal", "I think we covered everything for today."),
    ("ann", "Then let us end the meeting here."),
    ("ben", "Have a nice weekend."),
    ("cal", "You too, see you on Monday."),
]
SHORT_PAUSE_S = 0.25
LONG_PAUSE_S = 1.2


@dataclass
class Truth:
    speaker: str
    start: float
    end: float
    text: str


@dataclass
class Conversation:
    tracks: dict[str, np.ndarray]
    truth: list[Truth]
    duration: float
    clicks: list[float] = field(default_factory=list)

    def truth_of(self, speaker: str) -> list[Truth]:
        return [t for t in self.truth if t.speaker == speaker]


def trimmed(audio: np.ndarray, level: float = 0.02) -> np.ndarray:
    """espeak's clip without its leading/trailing silence (so the truth is the voiced span)."""
    loud = np.nonzero(np.abs(audio) > level)[0]
    return audio[loud[0] : loud[-1] + 1]


def build_conversation(seed: int = 7) -> Conversation:
    rng = np.random.default_rng(seed)
    pieces: list[tuple[str, float, np.ndarray]] = []
    truth: list[Truth] = []
    t = 1.5
    for i, (who, line) in enumerate(SCRIPT):
        voice = SPEAKERS[who]
        if "||" in line or "|" in line:
            long = "||" in line
            first, second = line.split("||" if long else "|")
            a, b = trimmed(speak(first, voice)), trimmed(speak(second, voice))
            gap = LONG_PAUSE_S if long else SHORT_PAUSE_S
            pieces += [(who, t, a), (who, t + a.size / SAMPLE_RATE + gap, b)]
            end = t + (a.size + b.size) / SAMPLE_RATE + gap
            if long:
                truth += [Truth(who, t, t + a.size / SAMPLE_RATE, first)]
                truth += [Truth(who, end - b.size / SAMPLE_RATE, end, second)]
            else:
                truth.append(Truth(who, t, end, f"{first} {second}"))
        else:
            a = trimmed(speak(line, voice))
            pieces.append((who, t, a))
            end = t + a.size / SAMPLE_RATE
            truth.append(Truth(who, t, end, line))
        t = end + float(rng.uniform(1.4, 3.0)) + (6.0 if i == 11 else 0.0)  # one long silence
    duration = t + 1.0
    n = int(duration * SAMPLE_RATE)
    tracks = {who: rng.normal(0.0, 0.003, n).astype(np.float32) for who in SPEAKERS}
    for who, start, audio in pieces:
        i = int(round(start * SAMPLE_RATE))
        tracks[who][i : i + audio.size] += audio
    clicks: list[float] = []
    for who, track in tracks.items():  # keyboard clicks in this speaker's silences
        mine = [x for x in truth if x.speaker == who]
        for a, b in zip(mine, mine[1:], strict=False):
            if b.start - a.end > 2.0:
                c = a.end + 1.0
                i = int(c * SAMPLE_RATE)
                track[i : i + 480] += rng.normal(0, 0.25, 480).astype(np.float32)
                clicks.append(c)
    return Conversation(tracks=tracks, truth=truth, duration=duration, clicks=clicks)


@pytest.fixture(scope="session")
def conversation() -> Conversation:
    return build_conversation()


# ------------------------------------------------------------------------ the conversation, segmented
@dataclass
class Segmented:
    """What the three participants' speech ingest published (messages per speaker) and the bus holding
    the audio blobs."""

    bus: object
    messages: dict[str, list[object]]
    ingests: dict[str, object]


def to_48k_stereo_frames(audio: np.ndarray, samples: int = 960) -> list[object]:
    """16 kHz mono float -> 20 ms 48 kHz stereo s16 AudioFrames, as aiortc hands out decoded Opus."""
    import av

    res = av.AudioResampler(format="s16", layout="stereo", rate=48_000)
    src = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="flt", layout="mono")
    src.sample_rate = SAMPLE_RATE
    pcm = np.concatenate([f.to_ndarray().reshape(-1) for f in res.resample(src) + res.resample(None)])
    frames = []
    for i in range(0, pcm.size // 2, samples):
        chunk = pcm[2 * i : 2 * (i + samples)]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frames.append(frame)
    return frames


def write_opus(path: str, audio: np.ndarray) -> None:
    """Encode 16 kHz mono float as 48 kHz stereo Opus in Ogg (what a recorded WebRTC track looks like)."""
    import av

    with av.open(path, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48_000, layout="stereo")
        for frame in to_48k_stereo_frames(audio):
            for packet in stream.encode(frame):  # type: ignore[attr-defined]
                out.mux(packet)
        for packet in stream.encode(None):  # type: ignore[attr-defined]
            out.mux(packet)


async def _segment_all(conv: Conversation, tmp: str) -> Segmented:
    from emostream.bus.memory import MemoryBus
    from emostream.config import BusSettings, Settings
    from emostream.ingest.participant import SpeechIngest, segment_file

    bus = MemoryBus()
    # Session-scoped: its blobs must outlive the slowest run of the tests that read them (not a TTL test).
    settings = Settings(bus=BusSettings(blob_ttl_s=3600))
    messages: dict[str, list[object]] = {}
    ingests: dict[str, object] = {}
    # ann: live WebRTC-like frames (48 kHz stereo s16, 20 ms)
    ann = SpeechIngest(bus, settings, "call", "ann", t0=0.0)
    out: list[object] = []
    for frame in to_48k_stereo_frames(conv.tracks["ann"]):
        out += await ann.push(frame)
    messages["ann"] = out + await ann.flush()
    ingests["ann"] = ann
    # ben: a recorded Opus file through PyAV
    path = f"{tmp}/ben.ogg"
    write_opus(path, conv.tracks["ben"])
    messages["ben"] = list(await segment_file(path, bus, settings, "call", "ben", t0=0.0))
    # cal: 16 kHz numpy chunks of uneven sizes, zero-length ones included
    cal = SpeechIngest(bus, settings, "call", "cal", t0=0.0)
    rng = np.random.default_rng(3)
    track = conv.tracks["cal"]
    out, i = [], 0
    while i < track.size:
        n = int(rng.integers(0, 900))
        out += await cal.push(track[i : i + n], SAMPLE_RATE)
        i += n
    messages["cal"] = out + await cal.flush()
    ingests["cal"] = cal
    return Segmented(bus=bus, messages=messages, ingests=ingests)


@pytest.fixture(scope="session")
def segmented(conversation: Conversation, tmp_path_factory: pytest.TempPathFactory) -> Segmented:
    import asyncio

    return asyncio.run(_segment_all(conversation, str(tmp_path_factory.mktemp("speech"))))
