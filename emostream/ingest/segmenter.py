"""Per-participant speech segmenter: 16 kHz audio in, speech-start / partial / utterance events out.

It runs beside the media ingest, in the process that receives the participant's audio, so raw audio
never crosses the bus (:mod:`emostream.ingest.participant` publishes the events, audio as TTL blobs).

Decisions are made per 32 ms Silero window with hysteresis (``threshold`` to enter speech,
``off_threshold`` to count silence). An utterance's audio is ``[first speech - preroll, last speech +
tail]``; its ``start``/``end`` are exactly the bounds of that audio in media time (``t0`` + samples / 16 k).
It closes after ``hangover_ms`` of silence, when it reaches ``max_utterance_s`` (cut at the quietest
window of its second half; the rest starts the next utterance), or on :meth:`Segmenter.flush`.
Bursts with less than ``min_speech_ms`` of speech are dropped without a SpeechStarted.

Speculative end of speech: once a pause has lasted ``tail_ms`` the audio of the would-be utterance is
complete; after ``pause_partial_ms`` of silence it is emitted as a partial (``pause=True``). If the pause reaches the hangover, the
Utterance has the very same audio (``SpeechEnd.partial_seq`` names that partial) and ASR can already
have transcribed it.

Memory is bounded: at most ``max_utterance_s`` of audio plus the preroll per participant.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from prometheus_client import Counter

from emostream.config import VadSettings
from emostream.ingest.audio import SAMPLE_RATE, Audio
from emostream.ingest.vad import WINDOW, WINDOW_S, SileroModel, SileroVad
from emostream.schema import now

UTTERANCES = Counter("emostream_vad_utterances", "Utterances closed by the segmenter", ["reason"])
"""reason: ``silence`` (hangover reached), ``max_length`` (split) or ``flush`` (end of stream)."""
DROPPED = Counter("emostream_vad_dropped", "Speech bursts shorter than min_speech_ms (dropped)")
PARTIALS = Counter("emostream_vad_partials", "Partial audio emitted", ["kind"])
"""kind: ``pause`` (speculative end of speech) or ``periodic``."""

EndReason = Literal["silence", "max_length", "flush"]


@dataclass(frozen=True, slots=True)
class SpeechStart:
    utterance: int
    start: float


@dataclass(frozen=True, slots=True)
class SpeechPartial:
    utterance: int
    seq: int
    start: float
    end: float
    audio: Audio = field(repr=False)
    pause: bool
    """True: emitted at a pause; the Utterance will have this exact audio if the pause lasts."""


@dataclass(frozen=True, slots=True)
class SpeechEnd:
    utterance: int
    start: float
    end: float
    audio: Audio = field(repr=False)
    reason: EndReason
    eos_at: float
    """Wall-clock second the end was decided (the latency origin downstream)."""
    partial_seq: int | None = None
    """Seq of the pause partial whose audio is identical to this utterance's, if any."""
    speech_s: float = 0.0
    """Seconds of windows classified as speech."""


SpeechEvent = SpeechStart | SpeechPartial | SpeechEnd


@dataclass
class SegmenterStats:
    windows: int = 0
    speech_windows: int = 0
    utterances: int = 0
    splits: int = 0
    dropped: int = 0
    partials: int = 0
    max_buffered_s: float = 0.0


def _windows(ms: float) -> int:
    return max(0, math.ceil(ms / 1000 / WINDOW_S - 1e-9))


def close_delay_s(options: VadSettings) -> float:
    """Media seconds from a silence-closed utterance's audio end (last speech + tail) to the end of the
    window that closes it (hangover reached): the part of the hangover after the utterance's audio."""
    tail = max(1, _windows(options.tail_ms))
    return (max(tail, _windows(options.hangover_ms)) - tail) * WINDOW_S


class Segmenter:
    """One participant's VAD state machine. Feed 16 kHz mono float32 with :meth:`push`."""

    def __init__(
        self,
        options: VadSettings,
        *,
        model: SileroModel,
        room: str = "",
        speaker: str = "",
        t0: float = 0.0,
        first_utterance: int = 0,
    ) -> None:
        self.options = o = options
        self.room, self.speaker = room, speaker
        self.t0 = t0
        self.next_utterance = first_utterance
        self.vad = SileroVad(model)
        self.stats = SegmenterStats()
        self._preroll: deque[Audio] = deque(maxlen=_windows(o.preroll_ms))
        self._tail = max(1, _windows(o.tail_ms))
        self._hangover = max(self._tail, _windows(o.hangover_ms))
        self._pause = max(self._tail, _windows(o.pause_partial_ms))
        self._min_speech = max(1, _windows(o.min_speech_ms))
        self._max_windows = max(8, _windows(o.max_utterance_s * 1000))
        self._every = _windows(o.partial_every_ms) if o.partial_every_ms > 0 else 0
        self._k = 0  # index of the next window since the last flush
        self._base = 0  # samples pushed before the last flush (window 0 starts there)
        self._pushed = 0  # samples pushed in total
        self._reset_utterance()

    # ------------------------------------------------------------------------------------- public
    @property
    def time(self) -> float:
        """Media time of the next sample pushed."""
        return self.t0 + self._pushed / SAMPLE_RATE

    def set_time(self, t: float) -> None:
        """Make the next sample pushed be at media time ``t`` (a jump in the timeline, e.g. replay)."""
        if self._active:
            raise ValueError("set_time during an utterance: call flush() first")
        if not math.isfinite(t):  # every later utterance would carry a NaN/inf span into its events
            raise ValueError(f"set_time({t}): media time must be a finite number of seconds")
        self.t0 = t - self._pushed / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        return self._active

    def push(self, audio: Audio) -> list[SpeechEvent]:
        """Run VAD over ``audio`` (16 kHz mono float32, any length) and return what happened."""
        if audio.size == 0:
            return []
        self._pushed += audio.size
        probs, joined = self.vad.process(audio)
        events: list[SpeechEvent] = []
        for i, p in enumerate(probs):
            # a copy: views would pin the caller's whole array (bounded memory per participant)
            self._step(joined[i * WINDOW : (i + 1) * WINDOW].copy(), float(p), events)
        return events

    def flush(self) -> list[SpeechEvent]:
        """End of stream (or a forced boundary): close the current utterance if it has enough speech."""
        events: list[SpeechEvent] = []
        if self._active:
            self._close("flush", events)
        self.vad.reset()  # samples short of a window are dropped: restart windows at the next sample
        self._base, self._k = self._pushed, 0
        self._preroll.clear()
        return events

    def close(self) -> None:
        self._reset_utterance()
        self._preroll.clear()

    # ------------------------------------------------------------------------------------ machine
    def _reset_utterance(self) -> None:
        self._active = False
        self._started = False
        self._buf: list[Audio] = []
        self._probs: list[float] = []
        self._start_k = 0
        self._voiced = 0
        self._last_speech = -1  # index in _buf
        self._silence = 0
        self._pause_seq: int | None = None
        self._pause_len = 0
        self._seq = 0
        self._since_partial = 0

    def _step(self, window: Audio, p: float, events: list[SpeechEvent]) -> None:
        o = self.options
        self.stats.windows += 1
        k = self._k
        self._k += 1
        speech = p >= o.threshold or (self._active and self._silence == 0 and p >= o.off_threshold)
        if speech:
            self.stats.speech_windows += 1
        if not self._active:
            if not speech:
                self._preroll.append(window)
                return
            self._buf = list(self._preroll)
            self._probs = [0.0] * len(self._buf)
            self._preroll.clear()
            self._start_k = k - len(self._buf)
            self._active = True
        self._buf.append(window)
        self._probs.append(p)
        self.stats.max_buffered_s = max(self.stats.max_buffered_s, len(self._buf) * WINDOW_S)
        if speech:
            self._voiced += 1
            self._last_speech = len(self._buf) - 1
            self._silence = 0
            self._since_partial += 1
        else:
            self._silence += 1
        if not self._started and self._voiced >= self._min_speech:
            self._started = True
            events.append(SpeechStart(self.next_utterance, self._time(self._start_k)))
        if self._started and self._silence == self._pause and self.options.partial_on_pause:
            self._partial(events, pause=True)
        elif self._started and self._every and speech and self._since_partial >= self._every:
            self._partial(events, pause=False)
        if self._silence >= self._hangover:
            self._close("silence", events)
        elif len(self._buf) >= self._max_windows:
            self._split(events)

    def _time(self, k: int) -> float:
        return self.t0 + (self._base + k * WINDOW) / SAMPLE_RATE

    def _audio_end(self) -> int:
        """Buffer length of the utterance as it would close now: up to last speech + tail."""
        return min(len(self._buf), self._last_speech + 1 + self._tail)

    def _partial(self, events: list[SpeechEvent], pause: bool) -> None:
        end = self._audio_end() if pause else len(self._buf)
        audio = np.concatenate(self._buf[:end])
        seq = self._seq
        self._seq += 1
        self._since_partial = 0
        if pause:
            self._pause_seq, self._pause_len = seq, end
        self.stats.partials += 1
        PARTIALS.labels("pause" if pause else "periodic").inc()
        events.append(
            SpeechPartial(
                self.next_utterance,
                seq,
                self._time(self._start_k),
                self._time(self._start_k + end),
                audio,
                pause,
            )
        )

    def _close(self, reason: EndReason, events: list[SpeechEvent], cut: int | None = None) -> None:
        end = self._audio_end() if cut is None else cut
        if not self._started:
            self.stats.dropped += 1
            DROPPED.inc()
        elif end > 0:
            same = self._pause_seq is not None and self._pause_len == end and reason != "max_length"
            voiced = sum(1 for p in self._probs[:end] if p >= self.options.threshold)
            events.append(
                SpeechEnd(
                    self.next_utterance,
                    self._time(self._start_k),
                    self._time(self._start_k + end),
                    np.concatenate(self._buf[:end]),
                    reason,
                    now(),
                    self._pause_seq if same else None,
                    speech_s=voiced * WINDOW_S,
                )
            )
            self.next_utterance += 1
            self.stats.utterances += 1
            UTTERANCES.labels(reason).inc()
        rest_buf, rest_probs = self._buf[end:], self._probs[end:]
        rest_k = self._start_k + end
        self._reset_utterance()
        if cut is None:
            self._preroll.extend(rest_buf[-self._preroll.maxlen :] if self._preroll.maxlen else [])
        else:
            self._resume(rest_buf, rest_probs, rest_k, events)

    def _split(self, events: list[SpeechEvent]) -> None:
        """Cut a too-long utterance at the quietest window of its second half."""
        probs = np.asarray(self._probs, dtype=np.float32)
        energy = np.array([float(np.sqrt(np.mean(w * w))) for w in self._buf], dtype=np.float32)
        smooth = np.convolve(probs, np.ones(3, np.float32) / 3, mode="same")
        score = smooth + 0.5 * energy / (float(energy.max()) + 1e-9)
        lo = len(self._buf) // 2
        cut = lo + int(np.argmin(score[lo:]))
        cut = max(1, cut)
        self.stats.splits += 1
        self._close("max_length", events, cut=cut)

    def _resume(self, buf: list[Audio], probs: list[float], k: int, events: list[SpeechEvent]) -> None:
        """After a split, the remaining windows start the next utterance (no preroll: it is contiguous)."""
        thr = self.options.threshold
        voiced = [i for i, p in enumerate(probs) if p >= thr]
        if not voiced:
            self._preroll.extend(buf[-self._preroll.maxlen :] if self._preroll.maxlen else [])
            return
        self._active = True
        self._buf, self._probs, self._start_k = buf, probs, k
        self._voiced = len(voiced)
        self._last_speech = voiced[-1]
        self._silence = len(buf) - 1 - voiced[-1]
        if self._voiced >= self._min_speech:
            self._started = True
            events.append(SpeechStart(self.next_utterance, self._time(k)))


def segment(audio: Audio, options: VadSettings, model: SileroModel, t0: float = 0.0) -> list[SpeechEvent]:
    """Segment a whole 16 kHz mono array (files, tests): push it and flush."""
    seg = Segmenter(options, model=model, t0=t0)
    return seg.push(audio) + seg.flush()


__all__ = [
    "SAMPLE_RATE",
    "Segmenter",
    "SegmenterStats",
    "SpeechEnd",
    "SpeechEvent",
    "SpeechPartial",
    "SpeechStart",
    "segment",
]
