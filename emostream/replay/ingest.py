"""Feed MELD rows into the pipeline the way a live call's ingest does: one Utterance per CSV row.

A clip is decoded with PyAV and its audio and video go, per participant, through the same pieces a live
call uses beside its ingest: the audio segmenter (:mod:`emostream.ingest.segmenter`, Silero VAD) and the
video frame ring buffer (:mod:`emostream.ingest.frames`). Each dialogue has one media timeline: clip k
of a room starts where clip k-1 ended, so utterance times are monotonic per room as in a call.

Segmentation policy (a MELD clip is exactly one utterance of one speaker): the clip's audio runs through
the real segmenter and the replay forces an utterance boundary at clip end (flush). The speech segments
the segmenter found in the clip are merged into ONE Utterance spanning the first segment's start to the
last one's end (pauses inside kept); when it found none (music, laughter, a whisper), the whole clip is
the utterance. So every row yields exactly one Utterance and its event maps back by identity.

With gold text the CSV text rides along in ``Utterance.text`` (the ASR stage passes it through). A row
without a clip, or whose clip cannot be decoded, is fed text-only from the CSV (``source = "csv"`` or
``"fallback"`` with a warning), so the dialogue's history stays whole.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import av

from emostream.bus.base import Bus
from emostream.config import Settings
from emostream.evaluation.meld import Utterance as Row
from emostream.ingest import participant
from emostream.replay.media import ClipMedia, Participant, decode_clip
from emostream.schema import FrameRef, Utterance, utterance_key


@dataclass
class Fed:
    """What the ingest produced for one row."""

    utterance: Utterance
    source: str
    """``clip``, ``csv`` (no clip / text-only run) or ``fallback`` (clip unusable, CSV text used)."""
    note: str = ""
    warning: str = ""


def csv_seconds(stamp: str) -> float | None:
    """``"00:12:43,012"`` -> 763.012 (MELD's StartTime/EndTime), None when unparsable."""
    try:
        hms, _, ms = stamp.strip().partition(",")
        h, m, s = (int(x) for x in hms.split(":"))
        return h * 3600 + m * 60 + s + (int(ms) / 1000 if ms else 0.0)
    except ValueError:
        return None


def csv_duration(row: Row, default: float = 2.0) -> float:
    """Length of a row's utterance from its CSV times (``default`` when missing or nonsense)."""
    a, b = csv_seconds(row.start), csv_seconds(row.end)
    if a is None or b is None or not 0 < b - a < 60:
        return default
    return b - a


@dataclass
class Prepared:
    """A row placed on the room timeline, its clip decoded (``media``) or not (text-only)."""

    row: Row
    speaker: str
    number: int
    source: str
    start: float
    end: float
    clock: float
    """Room time when this row is over (real-time pacing waits for it)."""
    media: ClipMedia | None = None
    note: str = ""
    warning: str = ""


@dataclass
class DialogueIngest:
    """The ingest of one room: a participant (segmenter + frame buffer) per speaker, one timeline."""

    bus: Bus
    settings: Settings
    room: str
    realtime: bool = False
    gold: bool = True
    clock: float = 0.0
    """Media time (s) of the room timeline where the next clip starts."""
    participants: dict[str, Participant] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    async def prepare(self, row: Row, speaker: str, number: int, clip: Path | None) -> Prepared:
        """Decode ``row``'s clip (in a thread) and place it on the room timeline. Call in row order;
        the replay prepares row k+1 while row k is still in the pipeline."""
        offset = self.clock
        if clip is None:
            return self._text_only(row, speaker, number, "csv", "no clip")
        part = self.participants.get(speaker)
        if part is None:
            part = self.participants[speaker] = Participant(self.settings, self.room, speaker)
        try:
            media = await asyncio.to_thread(decode_clip, clip, part, offset)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            warning = f"{clip.name}: cannot decode ({reason}); replayed from its CSV text"
            return self._text_only(row, speaker, number, "fallback", f"bad clip: {reason}", warning)
        if media.audio.size == 0:
            warning = f"{clip.name}: no audio stream; replayed from its CSV text"
            return self._text_only(row, speaker, number, "fallback", "no audio", warning)
        self.clock = offset + media.duration
        return Prepared(row, speaker, number, "clip", media.start, media.end, self.clock, media, media.note)

    async def finish(self, prep: Prepared) -> Fed:
        """Wait for the clip's end in real time (if asked), store its media as blobs, build the Utterance."""
        await self._pace(prep.clock)
        row, media = prep.row, prep.media
        audio_ref = ""
        frames: list[FrameRef] = []
        if media is not None:
            ttl = self.settings.bus.blob_ttl_s
            key = utterance_key(self.room, prep.speaker, prep.number)
            audio_ref = await participant.store_audio(self.bus, key, media.audio, ttl)
            frames = await participant.store_frames(self.bus, key, media.frames, ttl)
        message = participant.utterance(
            self.room,
            prep.speaker,
            prep.number,
            prep.start,
            prep.end,
            audio=audio_ref,
            frames=frames,
            text=row.text if (self.gold or media is None) else "",
        )
        return Fed(message, prep.source, prep.note, prep.warning)

    def _text_only(
        self, row: Row, speaker: str, number: int, source: str, note: str, warning: str = ""
    ) -> Prepared:
        start = self.clock
        self.clock += csv_duration(row)
        return Prepared(row, speaker, number, source, start, self.clock, self.clock, None, note, warning)

    async def _pace(self, media_time: float) -> None:
        """In real time, wait until the wall clock reaches ``media_time`` of this room."""
        if self.realtime:
            delay = self.started + media_time - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    def close(self) -> None:
        for part in self.participants.values():
            part.close()
        self.participants.clear()
