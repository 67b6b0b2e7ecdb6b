"""A participant's ingest: the ONE builder of Utterance messages and of their audio/frame blobs.

Every media source feeds this module, one participant track at a time: live audio (WHIP/Janus, a file,
``bench asr``) goes through :class:`SpeechIngest` (frames -> 16 kHz mono -> segmenter -> messages); the
MELD replay, which decides utterance spans per clip itself, and ``bench visual`` call
:func:`store_audio`, :func:`store_frames` and :func:`utterance` directly. Audio
stays in this process except as blobs with the bus TTL: partial and utterance audio is stored with
``bus.put_blob`` and only its ref travels in SpeechStarted / PartialAudio / Utterance messages. An
Utterance whose audio is identical to the preceding pause partial reuses that blob's key (stored again,
one copy), and ASR recognises it by the equal ref.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from emostream.bus.base import Bus
from emostream.config import Settings
from emostream.ingest.audio import SAMPLE_RATE, Audio, AudioNormalizer, iter_file
from emostream.ingest.segmenter import Segmenter, SpeechEnd, SpeechEvent, SpeechPartial, SpeechStart
from emostream.ingest.timeline import AudioTimeline
from emostream.ingest.vad import SileroModel
from emostream.schema import (
    FrameRef,
    Message,
    PartialAudio,
    SpeechStarted,
    Utterance,
    encode,
    now,
    utterance_key,
)

_WALL0, _MONO0 = time.time(), time.monotonic()


def media_clock() -> float:
    """Wall-clock seconds that never step: the wall clock at start-up plus monotonic time since. A live
    participant's audio (its first sample) and video (each frame's arrival) are both stamped with it, so
    an NTP step or a manual clock change mid-call cannot pull the two timelines apart (with
    ``time.time()`` for video, a step left utterances without their frames)."""
    return _WALL0 + (time.monotonic() - _MONO0)


FrameSource = Callable[[str, float, float], Awaitable[list[FrameRef]]]
"""``(utterance key, start, end) -> frame refs`` (e.g. :func:`store_frames` of a FrameBuffer's window)."""

_INGEST: ThreadPoolExecutor | None = None


def _ingest_pool() -> ThreadPoolExecutor:
    """One thread per process for every participant's normalizer and VAD: off the event loop (which
    must keep reading RTP packets and running the stages), FIFO, and not queued behind model work in
    the default executor. Each participant awaits its chunk, so its own order is kept."""
    global _INGEST
    if _INGEST is None:
        _INGEST = ThreadPoolExecutor(1, thread_name_prefix="ingest")
    return _INGEST


class SpeechIngest:
    """Segment one participant's live audio and publish the speech messages (push API)."""

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        room: str,
        speaker: str,
        *,
        t0: float | None = None,
        first_utterance: int = 0,
        frames: FrameSource | None = None,
        model: SileroModel | None = None,
        session: str | None = None,
    ) -> None:
        self.bus, self.settings = bus, settings
        self.room, self.speaker = room, speaker
        self.session = secrets.token_hex(4) if session is None else session
        """Set on every message (see :attr:`emostream.schema.Keyed.session`): a participant that joins
        again, or a reused room id, numbers utterances from 0 again without meeting the old ones."""
        self.frames = frames
        self.normalizer = AudioNormalizer()
        self.timeline = AudioTimeline()
        self.segmenter = Segmenter(
            settings.vad,
            room=room,
            speaker=speaker,
            t0=0.0 if t0 is None else t0,
            first_utterance=first_utterance,
            model=model or SileroModel.shared(settings),
        )
        self._clock_set = t0 is not None
        self._hear_s = settings.vad.hangover_ms / 1000 + 0.1
        """Of audio lost before the ingest, how much the VAD hears as silence: enough to close an
        utterance the loss cut off where its speech stopped; the rest only moves the clock on."""
        self._pause_seq: dict[int, int] = {}
        """Utterance -> seq of its last pause partial (whose audio the Utterance may repeat)."""

    async def push(self, frame: Any, sample_rate: int | None = None) -> list[Message]:
        """One frame of any kind (PyAV AudioFrame, numpy + rate); returns the messages published."""
        return await self.push_many([frame], sample_rate)

    async def push_many(self, frames: list[Any], sample_rate: int | None = None) -> list[Message]:
        """Frames as one chunk (one resampler call, one VAD pass) in the ingest thread, so a participant
        that fell behind catches up and the event loop never runs the normalizer or VAD."""
        self._start_clock()
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(_ingest_pool(), self._segment, frames, sample_rate)
        return await self.publish(events)

    async def push_audio(self, audio: Audio) -> list[Message]:
        """Already-normalized 16 kHz mono float32 audio."""
        if audio.size == 0:
            return []
        self._start_clock()
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(_ingest_pool(), self.segmenter.push, audio)
        return await self.publish(events)

    def _start_clock(self) -> None:
        if not self._clock_set:
            self.segmenter.t0 = media_clock()
            self._clock_set = True

    def _segment(self, frames: list[Any], sample_rate: int | None) -> list[SpeechEvent]:
        events: list[SpeechEvent] = []
        for lost_s, run in self.timeline.split(frames):
            if lost_s:
                events += self._lost(lost_s)
            audio = self.normalizer.push_many(run, sample_rate)
            if audio.size:
                events += self.segmenter.push(audio)
        return events

    def _lost(self, seconds: float) -> list[SpeechEvent]:
        """Audio lost before the ingest (a gap in the frames' pts) still took time on the speaker's
        side: it is heard as silence (at most ``_hear_s`` of it), and the clock steps over the rest, so
        later utterances keep their true times."""
        heard = min(seconds, self._hear_s)
        events = self.segmenter.push(np.zeros(round(heard * SAMPLE_RATE), np.float32))
        if seconds > heard:
            events += self.segmenter.flush()
            self.segmenter.set_time(self.segmenter.time + seconds - heard)
        return events

    async def flush(self) -> list[Message]:
        """End of the track (or a forced boundary): close the utterance in progress."""
        tail = self.normalizer.flush()
        events = self.segmenter.push(tail) if tail.size else []
        return await self.publish(events + self.segmenter.flush())

    async def publish(self, events: list[SpeechEvent]) -> list[Message]:
        out: list[Message] = []
        for ev in events:
            msg = await self._message(ev)
            if msg is not None:
                await self.bus.publish(type(msg).stream, encode(msg))
                out.append(msg)
        return out

    async def _message(self, ev: SpeechEvent) -> Message | None:
        ids: dict[str, Any] = {
            "room": self.room,
            "speaker": self.speaker,
            "utterance": ev.utterance,
            "session": self.session,
        }
        trace = {"segmenter": now()}
        ttl = self.settings.bus.blob_ttl_s
        key = utterance_key(self.room, self.speaker, ev.utterance, self.session)
        base = f"audio/{key}"
        if isinstance(ev, SpeechStart):
            return SpeechStarted(**ids, start=ev.start, trace=trace)
        if isinstance(ev, SpeechPartial):
            ref = await self.bus.put_blob(f"{base}/p{ev.seq}", _bytes(ev.audio), ttl)
            frames = []
            if ev.pause:
                self._pause_seq[ev.utterance] = ev.seq
                if self.frames and self.settings.fec.early_frames:
                    frames = await self.frames(f"{key}/p{ev.seq}", ev.start, ev.end)
            return PartialAudio(
                **ids, start=ev.start, end=ev.end, seq=ev.seq, audio=ref, sample_rate=SAMPLE_RATE,
                frames=frames, trace=trace,
            )  # fmt: skip
        assert isinstance(ev, SpeechEnd)
        pause_seq = self._pause_seq.pop(ev.utterance, None)
        same = pause_seq if pause_seq is not None and pause_seq == ev.partial_seq else -1
        frames = await self.frames(key, ev.start, ev.end) if self.frames else []
        ref = await self.bus.put_blob(base, _bytes(ev.audio), ttl)
        return utterance(
            self.room,
            self.speaker,
            ev.utterance,
            ev.start,
            ev.end,
            audio=ref,
            frames=frames,
            eos_at=ev.eos_at,
            trace=trace,
            session=self.session,
            partial_seq=same,
        )

    def close(self) -> None:
        self.segmenter.close()
        self._pause_seq.clear()


def utterance(
    room: str,
    speaker: str,
    number: int,
    start: float,
    end: float,
    *,
    audio: str = "",
    frames: list[FrameRef] | None = None,
    text: str = "",
    eos_at: float | None = None,
    trace: dict[str, float] | None = None,
    session: str = "",
    partial_seq: int = -1,
) -> Utterance:
    """The Utterance message (every producer builds it here): identity, span, blob refs, end of speech
    (``eos_at``, default now) and the producer's ``trace`` stamp."""
    return Utterance(
        room=room,
        speaker=speaker,
        utterance=number,
        session=session,
        start=start,
        end=end,
        sample_rate=SAMPLE_RATE,
        audio=audio,
        frames=frames or [],
        text=text,
        eos_at=now() if eos_at is None else eos_at,
        trace=trace or {},
        partial_seq=partial_seq,
    )


async def store_audio(bus: Bus, key: str, audio: Audio, ttl_s: float) -> str:
    """Utterance audio (16 kHz mono float32) as the blob ``audio/<key>``; its ref."""
    return await bus.put_blob(f"audio/{key}", _bytes(audio), ttl_s)


async def store_frames(bus: Bus, key: str, jpegs: list[tuple[float, bytes]], ttl_s: float) -> list[FrameRef]:
    """(media time, JPEG) frames as blobs ``frame/<key>/<i>``; their FrameRefs in time order."""
    return [
        FrameRef(t=t, blob=await bus.put_blob(f"frame/{key}/{i}", jpeg, ttl_s))
        for i, (t, jpeg) in enumerate(jpegs)
    ]


def _bytes(audio: Audio) -> bytes:
    return np.ascontiguousarray(audio, dtype=np.float32).tobytes()


async def segment_file(
    path: str | Path,
    bus: Bus,
    settings: Settings,
    room: str,
    speaker: str,
    *,
    t0: float = 0.0,
    realtime: bool = False,
    chunk_s: float = 0.1,
) -> list[Message]:
    """Feed a media file through a participant's speech ingest (as fast as possible, or in real time)."""
    ingest = SpeechIngest(bus, settings, room, speaker, t0=t0)
    out: list[Message] = []
    async for chunk in _chunks(path, chunk_s, realtime):
        out += await ingest.push_audio(chunk)
    out += await ingest.flush()
    ingest.close()
    return out


async def _chunks(path: str | Path, chunk_s: float, realtime: bool) -> AsyncIterator[Audio]:
    started = time.monotonic()
    sent = 0
    for chunk in iter_file(path, chunk_s):
        if realtime:
            delay = started + sent / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        sent += chunk.size
        yield chunk
