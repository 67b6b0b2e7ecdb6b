"""Any audio a participant sends -> 16 kHz mono float32, the only format the speech path works on.

Input may be PyAV ``AudioFrame`` s (WebRTC/aiortc: 48 kHz stereo Opus-decoded s16, or file decoding),
numpy arrays at any rate (int16/int32/float, mono ``(n,)`` or ``(n, channels)``), or a file
(:func:`iter_file`). One :class:`AudioNormalizer` per participant keeps the resampler state across
frames, so chunk boundaries add no clicks. Bad input is repaired or skipped and *counted*, never raised:
NaN/inf samples become 0, out-of-range samples are clipped to [-1, 1], zero-length and undecodable
frames are skipped, and a sample-rate change mid-stream flushes the old resampler and starts a new one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from emostream.errors import UserError

SAMPLE_RATE = 16_000
"""The speech path's sample rate (Silero VAD and Whisper both want 16 kHz)."""

Audio = npt.NDArray[np.float32]

FRAMES = Counter(
    "emostream_audio_frames", "Audio frames seen by the ingest normalizer, by outcome", ["result"]
)
"""result: ``ok``, ``empty`` (zero-length, skipped) or ``bad`` (undecodable/unsupported, skipped)."""
FIXED_SAMPLES = Counter(
    "emostream_audio_fixed_samples", "Samples repaired by the ingest normalizer", ["kind"]
)
"""kind: ``nan`` (NaN/inf set to 0) or ``clipped`` (outside [-1, 1], clipped)."""
RATE_CHANGES = Counter(
    "emostream_audio_rate_changes", "Sample-rate changes seen mid-stream (resampler restarted)"
)

_OK = FRAMES.labels("ok")
"""Resolved once: ``labels()`` per 20 ms frame is measurable."""

_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0, np.dtype(np.uint8): 128.0}
_EMPTY: Audio = np.zeros(0, np.float32)


@dataclass
class AudioStats:
    """Per-participant counts (the same events also go to the Prometheus counters)."""

    frames: int = 0
    empty_frames: int = 0
    bad_frames: int = 0
    nan_samples: int = 0
    clipped_samples: int = 0
    rate_changes: int = 0
    samples_out: int = 0


class AudioNormalizer:
    """Stateful converter of one participant's audio stream to 16 kHz mono float32."""

    def __init__(self) -> None:
        self.stats = AudioStats()
        self._rate = 0
        self._resampler: av.AudioResampler | None = None

    def push(self, frame: Any, sample_rate: int | None = None) -> Audio:
        """Convert one frame (``av.AudioFrame`` or numpy array + ``sample_rate``); may return 0 samples."""
        return self.push_many([frame], sample_rate)

    def push_many(self, frames: list[Any], sample_rate: int | None = None) -> Audio:
        """Convert consecutive frames; runs at one rate go through the resampler as one chunk (the
        resampler call and its frame wrapping are most of the cost of a 20 ms frame)."""
        out: list[Audio] = []
        run: list[Audio] = []
        run_rate = 0
        for frame in frames:
            mono = self._mono(frame, sample_rate)
            if mono is None:
                continue
            x, rate = mono
            if run and rate != run_rate:
                out.append(self._resample(_cat(run), run_rate))
                run = []
            run.append(x)
            run_rate = rate
        if run:
            out.append(self._resample(_cat(run), run_rate))
        result = _cat(out)
        self.stats.samples_out += result.size
        return result

    def _mono(self, frame: Any, sample_rate: int | None) -> tuple[Audio, int] | None:
        """One frame as sanitized mono float32 and its rate; None (counted) when skipped."""
        self.stats.frames += 1
        try:
            mono, rate, exact = _to_mono(frame, sample_rate)
        except (ValueError, TypeError, av.error.FFmpegError) as exc:
            self._skip("bad", exc)
            return None
        if mono.size == 0:
            self._skip("empty")
            return None
        _OK.inc()
        # integer PCM scaled by its full range is always finite and within [-1, 1]
        return (mono if exact else self._sanitize(mono)), rate

    def flush(self) -> Audio:
        """The resampler's buffered tail (call at end of stream)."""
        out = self._drain()
        self._resampler, self._rate = None, 0
        self.stats.samples_out += out.size
        return out

    def _skip(self, result: str, exc: BaseException | None = None) -> Audio:
        FRAMES.labels(result).inc()
        if result == "empty":
            self.stats.empty_frames += 1
        else:
            self.stats.bad_frames += 1
        return _EMPTY

    def _sanitize(self, x: Audio) -> Audio:
        bad = ~np.isfinite(x)
        if bad.any():
            n = int(bad.sum())
            self.stats.nan_samples += n
            FIXED_SAMPLES.labels("nan").inc(n)
            x = np.where(bad, np.float32(0.0), x)
        over = np.abs(x) > 1.0
        if over.any():
            n = int(over.sum())
            self.stats.clipped_samples += n
            FIXED_SAMPLES.labels("clipped").inc(n)
            x = np.clip(x, -1.0, 1.0)
        return x.astype(np.float32, copy=False)

    def _resample(self, x: Audio, rate: int) -> Audio:
        if rate != self._rate:
            head = self._drain() if self._resampler is not None else _EMPTY
            if self._rate:
                self.stats.rate_changes += 1
                RATE_CHANGES.inc()
            self._rate = rate
            self._resampler = (
                None
                if rate == SAMPLE_RATE
                else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            )
            if head.size:
                return np.concatenate([head, self._resample(x, rate)])
        if self._resampler is None:
            return np.ascontiguousarray(x, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x)[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        return _join(self._resampler.resample(frame))

    def _drain(self) -> Audio:
        if self._resampler is None:
            return _EMPTY
        try:
            return _join(self._resampler.resample(None))
        except (ValueError, av.error.FFmpegError):
            return _EMPTY


def _cat(parts: list[Audio]) -> Audio:
    if not parts:
        return _EMPTY
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _join(frames: list[av.AudioFrame]) -> Audio:
    if not frames:
        return _EMPTY
    parts = [f.to_ndarray().reshape(-1).astype(np.float32, copy=False) for f in frames]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _to_mono(frame: Any, sample_rate: int | None) -> tuple[Audio, int, bool]:
    """(mono float32 samples, their rate, whether they came from integer PCM: finite and in range)."""
    if isinstance(frame, av.AudioFrame):
        rate = int(frame.sample_rate or 0)
        if frame.samples == 0:
            return _EMPTY, rate, True
        arr = frame.to_ndarray()
        channels = len(frame.layout.channels)
        if arr.dtype == np.int16 and not frame.format.is_planar:
            # the WebRTC case (Opus decoded to interleaved s16): one pass, no per-channel float copies
            x = arr.reshape(-1, channels).astype(np.float32).sum(axis=1) if channels > 1 else arr.reshape(-1)
            x = np.multiply(x, np.float32(1.0 / (32768.0 * channels)), dtype=np.float32)
        else:
            if not frame.format.is_planar:
                arr = arr.reshape(-1, channels).T
            x = _as_float(arr).mean(axis=0) if channels > 1 else _as_float(arr).reshape(-1)
    else:
        rate = SAMPLE_RATE if sample_rate is None else int(sample_rate)
        arr = np.asarray(frame)
        if arr.ndim == 2:
            # (samples, channels) like soundfile, or (channels, samples) like PyAV planar
            planar = arr.shape[0] <= 8 and arr.shape[0] < arr.shape[1]
            x = _as_float(arr if planar else arr.T).mean(axis=0)
        elif arr.ndim == 1:
            x = _as_float(arr)
        else:
            raise ValueError(f"audio array must be 1-D or 2-D, got shape {arr.shape}")
    if not 1000 <= rate <= 384_000:
        raise ValueError(f"unusable sample rate {rate}")
    exact = arr.dtype.kind in "iu"
    return np.ascontiguousarray(x, dtype=np.float32), rate, exact


def _as_float(arr: npt.NDArray[Any]) -> Audio:
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    scale = _INT_SCALE.get(arr.dtype)
    if scale is None:
        raise TypeError(f"unsupported audio sample type {arr.dtype}")
    if arr.dtype == np.uint8:
        return ((arr.astype(np.float32) - 128.0) / scale).astype(np.float32)
    return (arr.astype(np.float32) / scale).astype(np.float32)


def to_16k_mono(samples: Any, sample_rate: int) -> Audio:
    """One-shot conversion of a whole array (files, tests, replay)."""
    norm = AudioNormalizer()
    out = norm.push(samples, sample_rate)
    tail = norm.flush()
    return np.concatenate([out, tail]) if tail.size else out


def iter_file(path: str | Path, chunk_s: float = 0.5) -> Iterator[Audio]:
    """Decode any audio/video file with PyAV and yield 16 kHz mono float32 chunks of ~``chunk_s``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"audio file {path} not found: pass an existing audio or video file")
    norm = AudioNormalizer()
    want = max(1, int(chunk_s * SAMPLE_RATE))
    buf: list[Audio] = []
    have = 0
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise UserError(f"cannot open {path}: {exc.strerror or exc}; pass a decodable media file") from None
    with container:
        if not container.streams.audio:
            raise UserError(f"{path} has no audio stream: pass a file with sound")
        for frame in container.decode(container.streams.audio[0]):
            out = norm.push(frame)
            if out.size:
                buf.append(out)
                have += out.size
            if have >= want:
                yield np.concatenate(buf)
                buf, have = [], 0
    tail = norm.flush()
    if tail.size:
        buf.append(tail)
    if buf:
        yield np.concatenate(buf)
