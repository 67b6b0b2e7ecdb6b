"""Decode one MELD clip (PyAV) into what a live participant's ingest would have produced for it.

``Participant`` is a speaker's ingest state across the clips of a dialogue: its audio segmenter and its
video ring buffer. ``decode_clip`` streams the clip's frames into them at the room's media time, forces
an utterance boundary at clip end and merges what the segmenter produced (see emostream.replay.ingest
for the policy). It runs in a worker thread: decoding and VAD are CPU work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from emostream.config import Settings

SAMPLE_RATE = 16_000


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
    note: str = ""


class Participant:
    """A speaker's segmenter and frame ring buffer (one per MELD speaker per dialogue)."""

    def __init__(self, settings: Settings, room: str, speaker: str) -> None:
        self.settings = settings
        self.room, self.speaker = room, speaker
        self.segmenter = _make_segmenter(settings, room, speaker)
        self.frames = _make_frames(settings)

    def close(self) -> None:
        close = getattr(self.segmenter, "close", None)
        if close is not None:
            close()


def _make_segmenter(settings: Settings, room: str, speaker: str) -> object:
    from emostream.ingest.segmenter import Segmenter  # type: ignore[import-not-found]

    return Segmenter(settings.vad, room=room, speaker=speaker)


def _make_frames(settings: Settings) -> object:
    from emostream.ingest.frames import FrameBuffer  # type: ignore[import-not-found]

    return FrameBuffer(settings.frames)


def _jpeg(image: np.ndarray, max_side: int, quality: int) -> bytes:
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_clip(path: Path, part: Participant, offset: float) -> ClipMedia:
    """Decode ``path`` into ``part``'s segmenter and frame buffer at room time ``offset``."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    frames: list[tuple[float, np.ndarray]] = []
    fps = part.settings.frames.fps
    next_t = 0.0
    with av.open(str(path)) as container:
        streams = [s for s in (container.streams.audio[:1] + container.streams.video[:1])]
        if not streams:
            raise ValueError("no audio or video stream")
        for frame in container.decode(*streams):
            if isinstance(frame, av.AudioFrame):
                t = float(frame.time or 0.0)
                for f in resampler.resample(frame):
                    chunks.append(f.to_ndarray().reshape(-1))
            elif isinstance(frame, av.VideoFrame) and float(frame.time or 0.0) + 1e-6 >= next_t:
                t = float(frame.time or 0.0)
                frames.append((offset + t, frame.to_ndarray(format="bgr24")))
                next_t = t + 1.0 / fps
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    duration = max(audio.size / SAMPLE_RATE, (frames[-1][0] - offset) if frames else 0.0)
    start, end = offset, offset + duration
    window = audio
    cfg = part.settings.frames
    jpegs = [(t, _jpeg(img, cfg.max_side, cfg.jpeg_quality)) for t, img in frames if start <= t <= end]
    return ClipMedia(audio=window, start=start, end=end, duration=duration, frames=jpegs)
