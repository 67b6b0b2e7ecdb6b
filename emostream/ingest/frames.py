"""Video beside the audio ingest: a per-participant ring buffer of recent frames, sampled per utterance.

The segmenter decides utterances from audio; when one ends, its window ``[start, end]`` (media time) is
sampled from this buffer at ``frames.fps`` (default 3), each frame downscaled to ``frames.max_side`` and
JPEG-encoded, stored as a blob with the bus TTL, and the resulting FrameRefs go into the Utterance.

Bounded by design: only frames the sampler can use are kept (at most ``2 * fps + 1`` per second of
media, downscaled on arrival), for ``frames.buffer_s`` seconds. Frames arriving faster are dropped
before any conversion, so a 30 fps 1080p camera costs a few small copies per second, not 30 big ones.
Input may be numpy arrays (RGB by default, ``bgr=True`` for OpenCV captures; grayscale and RGBA are
converted) or PyAV ``VideoFrame`` s (aiortc tracks, file decoding). Unusable input is counted, not
raised.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from emostream.config import FramesSettings

if TYPE_CHECKING:
    pass

RGB = npt.NDArray[np.uint8]

FRAMES_IN = Counter("emostream_ingest_frames", "Video frames offered to the frame buffers", ["outcome"])
"""outcome: ``kept``, ``skipped`` (faster than the sampler needs; dropped before conversion), ``bad``."""


@dataclass
class FrameStats:
    """What a buffer did with its input (exported by ingest metrics)."""

    received: int = 0
    kept: int = 0
    skipped: int = 0
    """Arrived faster than the sampler needs: dropped before conversion (not an error)."""
    bad: int = 0
    """Unusable input: wrong type/shape, no timestamp, time going backwards, tiny frames."""


def to_rgb(frame: Any, *, bgr: bool = False) -> RGB | None:
    """numpy (HxW, HxWx1/3/4, RGB or BGR) or PyAV VideoFrame -> RGB uint8 array, or None if unusable."""
    if hasattr(frame, "to_ndarray") and hasattr(frame, "format"):
        try:
            return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        except Exception:  # noqa: BLE001 - any decoder/converter failure is a bad frame
            return None
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        return None
    img = frame if frame.dtype == np.uint8 else to_uint8(frame)
    if img is None:
        return None
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.asarray(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), dtype=np.uint8)
    if img.shape[2] == 4:
        return np.asarray(
            cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB), dtype=np.uint8
        )
    if img.shape[2] != 3:
        return None
    return np.ascontiguousarray(img[:, :, ::-1] if bgr else img)


def to_uint8(arr: npt.NDArray[Any]) -> RGB | None:
    """Numbers -> uint8 pixels: floats in [0, 1] are scaled by 255, everything clipped to [0, 255]."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        return None
    x = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if np.issubdtype(arr.dtype, np.floating) and float(x.max(initial=0.0)) <= 1.0:
        x = x * 255.0
    return np.clip(x, 0, 255).astype(np.uint8)


def downscale(img: RGB, max_side: int) -> RGB:
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def encode_jpeg(img: RGB, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class FrameBuffer:
    """One participant's recent frames (media time -> downscaled RGB), oldest evicted first."""

    def __init__(self, settings: FramesSettings | None = None) -> None:
        self.settings = settings or FramesSettings()
        self.fps = max(0.1, float(self.settings.fps))
        self._keep_dt = 1.0 / (2 * self.fps + 1)
        cap = math.ceil(self.settings.buffer_s / self._keep_dt) + 2
        self._frames: deque[tuple[float, RGB]] = deque(maxlen=cap)
        self._jpeg: dict[float, bytes] = {}
        """Encoded frames by media time: the pause partial and its utterance share most frames."""
        self.stats = FrameStats()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def span(self) -> tuple[float, float]:
        """(oldest, newest) media time buffered; (0, 0) when empty."""
        return (self._frames[0][0], self._frames[-1][0]) if self._frames else (0.0, 0.0)

    def push(self, frame: Any, t: float | None = None, *, bgr: bool = False) -> bool:
        """Add a frame at media time ``t`` (default: a VideoFrame's own ``time``). True if kept."""
        self.stats.received += 1
        if t is None:
            t = getattr(frame, "time", None)
        if t is None or not math.isfinite(float(t)):
            return self._bad()
        t = float(t)
        if self._frames and t < self._frames[-1][0]:
            return self._bad()  # time went backwards: a reset stream must clear() first
        if self._frames and t - self._frames[-1][0] < self._keep_dt * 0.9:
            self.stats.skipped += 1
            FRAMES_IN.labels("skipped").inc()
            return False
        img = to_rgb(frame, bgr=bgr)
        if img is None or min(img.shape[:2]) < 2:
            return self._bad()
        self._frames.append((t, downscale(img, self.settings.max_side)))
        self._evict(t)
        self.stats.kept += 1
        FRAMES_IN.labels("kept").inc()
        return True

    def _bad(self) -> bool:
        self.stats.bad += 1
        FRAMES_IN.labels("bad").inc()
        return False

    def _evict(self, now: float) -> None:
        while self._frames and self._frames[0][0] < now - self.settings.buffer_s:
            self._frames.popleft()

    def sample(self, start: float, end: float, fps: float | None = None) -> list[tuple[float, RGB]]:
        """Frames nearest to ``start + (i + 0.5) / fps`` for each slot of the window, in time order."""
        rate = float(fps or self.fps)
        if end < start or not self._frames:
            return []
        slots = max(1, math.ceil((end - start) * rate - 1e-9))
        times = np.asarray([t for t, _ in self._frames])
        picked: list[int] = []
        for i in range(slots):
            target = min(end, start + (i + 0.5) / rate)
            j = int(np.argmin(np.abs(times - target)))
            if abs(times[j] - target) <= 0.5 / rate + 1e-6 and (not picked or picked[-1] != j):
                picked.append(j)
        return [self._frames[j] for j in picked]

    def encode(self, start: float, end: float) -> list[tuple[float, bytes]]:
        """The window's sampled frames as JPEG bytes (``frames.jpeg_quality``), each encoded once."""
        oldest = self._frames[0][0] if self._frames else math.inf
        for t in [t for t in self._jpeg if t < oldest]:
            del self._jpeg[t]
        out = []
        for t, img in self.sample(start, end):
            jpeg = self._jpeg.get(t)
            if jpeg is None:
                jpeg = self._jpeg[t] = encode_jpeg(img, self.settings.jpeg_quality)
            out.append((t, jpeg))
        return out

    def clear(self) -> None:
        self._frames.clear()
        self._jpeg.clear()


class FrameBuffers:
    """The buffers of every participant of a room (created on first frame, dropped on leave)."""

    def __init__(self, settings: FramesSettings | None = None) -> None:
        self.settings = settings or FramesSettings()
        self._by_participant: dict[str, FrameBuffer] = {}

    def get(self, participant: str) -> FrameBuffer:
        buf = self._by_participant.get(participant)
        if buf is None:
            buf = self._by_participant[participant] = FrameBuffer(self.settings)
        return buf

    def push(self, participant: str, frame: Any, t: float | None = None, *, bgr: bool = False) -> bool:
        return self.get(participant).push(frame, t, bgr=bgr)

    def drop(self, participant: str) -> None:
        self._by_participant.pop(participant, None)

    def __contains__(self, participant: str) -> bool:
        return participant in self._by_participant
