"""A call participant's WebRTC tracks -> the participant ingest (speech segmenter + frame ring buffer).

Each received track gets a reader task that only pulls decoded frames off aiortc into a bounded
per-participant queue (aiortc's own queue is unbounded, so it must be drained promptly). One worker
task per participant feeds them on: audio always first (PyAV frames -> 16 kHz mono -> VAD segmenter ->
SpeechStarted / PartialAudio / Utterance on the bus), then video into the 3 fps ring buffer the
Utterance's frames are sampled from. Under overload video is dropped before audio: while audio is
backlogged, queued video frames are discarded; a full queue drops its oldest frame. Every drop is
counted (``emostream_call_dropped``) and kept in :class:`PumpStats`.

Media time is the wall clock without its steps (``participant.media_clock``): audio from the first
sample's arrival plus the samples since (the segmenter's clock), video at each frame's arrival, so both
tracks of a participant share one timeline even when the system clock is stepped mid-call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import Counter

from emostream.bus.base import Bus
from emostream.config import CallSettings, Settings
from emostream.ingest.frames import FrameBuffer
from emostream.ingest.participant import SpeechIngest, media_clock, store_frames
from emostream.schema import FrameRef, Message

log = logging.getLogger("emostream.call")

RECEIVED = Counter("emostream_call_frames", "Decoded media frames received from call tracks", ["kind"])
DROPPED = Counter(
    "emostream_call_dropped", "Media frames dropped by the call ingest (never silently)", ["kind", "reason"]
)
"""reason: ``overload`` (video discarded while audio was backlogged) or ``queue_full`` (oldest dropped)."""


class Track(Protocol):
    """What the pump needs of an aiortc ``MediaStreamTrack``."""

    kind: str

    async def recv(self) -> Any: ...


class Ingest(Protocol):
    """One participant's ingest: where audio and video frames go."""

    async def audio(self, frame: Any) -> list[Message]: ...

    async def audio_many(self, frames: list[Any]) -> list[Message]: ...

    def video(self, frame: Any, t: float) -> bool: ...

    async def close(self) -> list[Message]: ...


class ParticipantIngest:
    """The speech ingest and frame buffer of one participant (``open_participant`` builds it).

    The Utterance itself is built in one place, :mod:`emostream.ingest.participant`; this
    class only wires the frame buffer in as the Utterance's frame source.
    """

    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        room: str,
        speaker: str,
        t0: float | None = None,
        first_utterance: int = 0,
        on_close: Callable[[ParticipantIngest], None] | None = None,
    ) -> None:
        self.bus, self.settings = bus, settings
        self.on_close = on_close
        self.frames = FrameBuffer(settings.frames)
        self.speech = SpeechIngest(
            bus, settings, room, speaker, t0=t0, first_utterance=first_utterance, frames=self._sample
        )

    @property
    def next_utterance(self) -> int:
        """The number the next utterance of this participant gets."""
        return self.speech.segmenter.next_utterance

    async def _sample(self, key: str, start: float, end: float) -> list[FrameRef]:
        return await store_frames(self.bus, key, self.frames.encode(start, end), self.settings.bus.blob_ttl_s)

    async def audio(self, frame: Any) -> list[Message]:
        return await self.speech.push(frame)

    async def audio_many(self, frames: list[Any]) -> list[Message]:
        return await self.speech.push_many(frames)

    def video(self, frame: Any, t: float) -> bool:
        return self.frames.push(frame, t)

    async def close(self) -> list[Message]:
        """End of the participant: the utterance in progress is closed and published."""
        try:
            return await self.speech.flush()
        finally:
            self.speech.close()
            self.frames.clear()
            if self.on_close is not None:
                self.on_close(self)


def open_participant(
    bus: Bus, settings: Settings, room: str, speaker: str, t0: float | None = None
) -> ParticipantIngest:
    """The participant ingest a call track (or ``emostream analyze``'s file) feeds: one definition for
    WHIP, Janus and files. ``t0``: the clock of media time 0 (None: wall clock at the first audio)."""
    return ParticipantIngest(bus, settings, room, speaker, t0)


@dataclass
class PumpStats:
    audio_frames: int = 0
    video_frames: int = 0
    audio_dropped: int = 0
    video_dropped: int = 0
    messages: int = 0
    errors: int = 0


class TrackPump:
    """Bounded queues between a participant's tracks and its ingest; video yields to audio."""

    def __init__(self, ingest: Ingest, options: CallSettings, name: str = "") -> None:
        self.ingest = ingest
        self.name = name
        self.stats = PumpStats()
        self._audio: deque[Any] = deque(maxlen=max(1, options.audio_queue))
        self._video: deque[tuple[Any, float]] = deque(maxlen=max(1, options.video_queue))
        self._backlog = max(2, options.audio_queue // 4)
        self._wake = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    def add_track(self, track: Track) -> None:
        """Start reading ``track`` (audio or video; other kinds are ignored)."""
        if track.kind not in ("audio", "video") or self._closed:
            return
        self._readers.append(asyncio.create_task(self._read(track), name=f"read-{track.kind}-{self.name}"))
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"ingest-{self.name}")

    def offer_audio(self, frame: Any) -> None:
        RECEIVED.labels("audio").inc()
        self.stats.audio_frames += 1
        if len(self._audio) == self._audio.maxlen:
            self._drop("audio", "queue_full")
        self._audio.append(frame)
        self._wake.set()

    def offer_video(self, frame: Any, t: float) -> None:
        RECEIVED.labels("video").inc()
        self.stats.video_frames += 1
        if len(self._video) == self._video.maxlen:
            self._drop("video", "queue_full")
        self._video.append((frame, t))
        self._wake.set()

    def _drop(self, kind: str, reason: str, n: int = 1) -> None:
        DROPPED.labels(kind, reason).inc(n)
        if kind == "audio":
            self.stats.audio_dropped += n
        else:
            self.stats.video_dropped += n

    async def _read(self, track: Track) -> None:
        from aiortc.mediastreams import MediaStreamError

        video = track.kind == "video"
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if video:
                self.offer_video(frame, media_clock())
            else:
                self.offer_audio(frame)

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._drain()
            if self._closed:
                return

    async def _drain(self) -> None:
        while self._audio or self._video:
            if len(self._audio) > self._backlog and self._video:
                self._drop("video", "overload", len(self._video))
                self._video.clear()
            if self._audio:
                frames = list(self._audio)
                self._audio.clear()
                await self._feed_audio(frames)
                continue
            frame, t = self._video.popleft()
            try:
                self.ingest.video(frame, t)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not end the call
                self._error("video", exc)
            await asyncio.sleep(0)

    async def _feed_audio(self, frames: list[Any]) -> None:
        """Everything queued in one go (one VAD pass), not one loop turn per 20 ms frame."""
        try:
            self.stats.messages += len(await self.ingest.audio_many(frames))
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the call
            self._error("audio", exc, len(frames))

    def _error(self, kind: str, exc: Exception, n: int = 1) -> None:
        self.stats.errors += 1
        self._drop(kind, "error", n)
        log.warning("call frame failed", extra={"participant": self.name, "kind": kind, "error": str(exc)})

    async def close(self) -> None:
        """Stop reading, feed what is queued, then close the ingest (flushes the open utterance)."""
        if self._closed:
            return
        self._closed = True
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._worker is not None:
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        await self._drain()
        self.stats.messages += len(await self.ingest.close())


def call_sink(bus: Bus, settings: Settings) -> Callable[[str, str], TrackPump]:
    """The WHIP/Janus sink factory: ``(room, participant) -> TrackPump`` over the participant ingest."""

    numbering = Numbering()

    def make(room: str, participant: str) -> TrackPump:
        ingest = numbering.open(bus, settings, room, participant)
        return TrackPump(ingest, settings.call, f"{room}/{participant}")

    return make


class Numbering:
    """Utterance numbers that go on across a participant's sessions: a participant who rejoins (a
    dropped network, a reload) must not restart at 0, or its new utterances would take the event ids
    of its earlier ones (``schema.event_id`` is room/speaker/number) and be dropped as duplicates.
    Kept per server process; a rejoin while the old session still flushes skips one number."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, str], ParticipantIngest] = {}
        self._next: dict[tuple[str, str], int] = {}

    def open(self, bus: Bus, settings: Settings, room: str, participant: str) -> ParticipantIngest:
        key = (room, participant)
        prev = self._live.get(key)
        first = prev.next_utterance + 1 if prev is not None else self._next.get(key, 0)
        ingest = ParticipantIngest(bus, settings, room, participant, None, first, self._closed)
        self._live[key] = ingest
        return ingest

    def _closed(self, ingest: ParticipantIngest) -> None:
        key = (ingest.speech.room, ingest.speech.speaker)
        self._next[key] = max(self._next.get(key, 0), ingest.next_utterance)
        if self._live.get(key) is ingest:
            del self._live[key]
