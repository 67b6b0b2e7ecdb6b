"""Decode one MELD clip (PyAV) into what a live participant's ingest would have produced for it.

``Participant`` is a speaker's ingest state across the clips of a dialogue: the audio normalizer and
segmenter (:mod:`emostream.ingest.audio`, :mod:`emostream.ingest.segmenter`) and the video ring buffer
(:mod:`emostream.ingest.frames`). ``decode_clip`` streams the clip's frames into them at the room's media
time, forces an utterance boundary at clip end and merges what the segmenter produced (see
:mod:`emostream.replay.ingest` for the policy). It runs in a worker thread: decoding and VAD are CPU work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from emostream.config import Settings
from emostream.ingest.audio import SAMPLE_RATE, AudioNormalizer
from emostream.ingest.frames import FrameBuffer
from emostream.ingest.segmenter import Segmenter, SpeechEnd
from emostream.ingest.vad import SileroModel


@dataclass
class ClipMedia:
    """One clip, ready to become an Utterance: 16 kHz mono audio of the utterance window and its frames."""

    audio: np.ndarray
    start: float
    end: float
    duration: float
    """Length of the whole clip (advances the room timeline)."""
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    """(media time, JPEG) sampled from the utterance window."""
    segments: int = 0
    """Speech segments the segmenter found in the clip (merged into one utterance)."""
    note: str = ""


class ClipSegmenter:
    """The live segmenter run over one clip at its room time, then flushed (forced boundary at clip end).

    A fresh :class:`Segmenter` per clip (the Silero session is shared, so this is cheap): one speaker's
    clips are not contiguous on the room timeline, and each must start with clean VAD state.
    """

    def __init__(self, settings: Settings, room: str, speaker: str) -> None:
        self.settings, self.room, self.speaker = settings, room, speaker
        self.model = SileroModel.shared(settings)

    def spans(self, audio: np.ndarray, offset: float) -> list[tuple[float, float]]:
        """(start, end) media times of the utterances the segmenter closes in ``audio``."""
        seg = Segmenter(self.settings.vad, room=self.room, speaker=self.speaker, t0=offset, model=self.model)
        events = seg.push(audio) + seg.flush()
        return [(e.start, e.end) for e in events if isinstance(e, SpeechEnd)]

    def close(self) -> None:
        """Nothing held between clips."""


class Participant:
    """A speaker's audio segmenter and frame ring buffer (one per MELD speaker per dialogue)."""

    def __init__(self, settings: Settings, room: str, speaker: str) -> None:
        self.settings = settings
        self.room, self.speaker = room, speaker
        self.frames = FrameBuffer(settings.frames)
        self.segmenter = ClipSegmenter(settings, room, speaker)

    def close(self) -> None:
        self.segmenter.close()
        self.frames.clear()


def decode_clip(path: Path, part: Participant, offset: float) -> ClipMedia:
    """Decode ``path`` into ``part``'s segmenter and frame buffer at room time ``offset``."""
    norm = AudioNormalizer()
    chunks: list[np.ndarray] = []
    last_video = 0.0
    with av.open(str(path)) as container:
        streams = [*container.streams.audio[:1], *container.streams.video[:1]]
        if not streams:
            raise ValueError("no audio or video stream")
        for frame in container.decode(*streams):
            if isinstance(frame, av.AudioFrame):
                samples = norm.push(frame)
                if samples.size:
                    chunks.append(samples)
            elif isinstance(frame, av.VideoFrame) and frame.time is not None:
                last_video = float(frame.time)
                part.frames.push(frame, offset + last_video)
    tail = norm.flush()
    if tail.size:
        chunks.append(tail)
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    duration = max(audio.size / SAMPLE_RATE, last_video)
    if audio.size == 0:
        return ClipMedia(audio=audio, start=offset, end=offset + duration, duration=duration)
    spans = part.segmenter.spans(audio, offset)
    if spans:
        start, end = spans[0][0], spans[-1][1]
        note = ""
    else:
        start, end = offset, offset + audio.size / SAMPLE_RATE
        note = "no speech detected: whole clip used"
    a = max(0, int(round((start - offset) * SAMPLE_RATE)))
    b = min(audio.size, int(round((end - offset) * SAMPLE_RATE)))
    window = audio[a:b] if b > a else audio
    jpegs = part.frames.encode(start, end)
    return ClipMedia(
        audio=window, start=start, end=end, duration=duration, frames=jpegs, segments=len(spans), note=note
    )
