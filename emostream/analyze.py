"""`emostream analyze`: recordings as participants of one room, through the participant ingest and the
stage runtime (embedded pipeline, or a Redis topology), printing each event as it is decided.

:func:`ingest_file` is the one place that turns a file into a participant's messages. An audio file
goes through the speech ingest (emostream/ingest/participant.py); a file with a video stream goes
through the same participant ingest a live call uses (``server.tracks.open_participant``: audio to the
segmenter, frames to the ring buffer, each utterance's frames stored with ``store_frames``), so the face
takes part (the visual stages run then).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from emostream.bus import open_bus
from emostream.bus.base import Bus
from emostream.config import Settings
from emostream.errors import UserError
from emostream.runtime.pipeline import Pipeline
from emostream.runtime.topology import TEXT_ONLY, build, ensure_readers
from emostream.schema import (
    EmotionEvent,
    Message,
    RoomControl,
    SchemaError,
    Utterance,
    decode_checked,
    encode,
    now,
)

STAGES = TEXT_ONLY
"""Stages of an audio analysis (the visual branch needs the participant ingest's frames)."""


async def ingest_file(
    path: Path, bus: Bus, settings: Settings, room: str, speaker: str, realtime: bool
) -> list[Message]:
    """Feed one recording as participant ``speaker`` of ``room``; returns the messages published."""
    from emostream.ingest.participant import segment_file

    if has_video(path):
        return await _ingest_av(path, bus, settings, room, speaker, realtime)
    return await segment_file(path, bus, settings, room, speaker, t0=0.0, realtime=realtime)


def has_video(path: Path) -> bool:
    """Whether ``path`` has a video stream (False for unreadable files: the audio path says why)."""
    import av

    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video) and bool(container.streams.audio)
    except (av.error.FFmpegError, OSError):
        return False


async def _ingest_av(
    path: Path, bus: Bus, settings: Settings, room: str, speaker: str, realtime: bool
) -> list[Message]:
    """Audio and video frames, in file order, into one participant ingest on media time (t0 = 0)."""
    import av

    from emostream.server.tracks import open_participant

    ingest = open_participant(bus, settings, room, speaker, t0=0.0)
    out: list[Message] = []
    audio: list[object] = []
    started = time.monotonic()
    try:
        with av.open(str(path)) as container:
            streams = [container.streams.audio[0], container.streams.video[0]]
            for frame in container.decode(*streams):
                if not isinstance(frame, av.AudioFrame | av.VideoFrame) or frame.time is None:
                    continue
                if realtime and (delay := started + float(frame.time) - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                if isinstance(frame, av.AudioFrame):
                    audio.append(frame)
                    if len(audio) >= 8:  # a few frames per VAD pass, not a loop turn per frame
                        out += await ingest.audio_many(audio)
                        audio = []
                else:
                    out += await ingest.audio_many(audio)
                    audio = []
                    ingest.video(frame, float(frame.time))
                    await asyncio.sleep(0)
        out += await ingest.audio_many(audio)
    except av.error.FFmpegError as exc:
        raise UserError(f"cannot decode {path}: {exc.strerror or exc}; pass a decodable media file") from None
    finally:
        out += await ingest.close()
    return out


def speaker_names(files: list[Path], names: list[str]) -> list[str]:
    """``--speaker`` names in file order, the rest from the file stems (unique slugs)."""
    out: list[str] = []
    for i, f in enumerate(files):
        base = (
            names[i]
            if i < len(names)
            else (re.sub(r"[^a-z0-9]+", "-", f.stem.lower()).strip("-") or "speaker")
        )
        name, n = base, 2
        while name in out:
            name, n = f"{base}-{n}", n + 1
        out.append(name)
    return out


@dataclass
class Result:
    events: list[EmotionEvent] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Speaker -> one-line reason for files that could not be analysed."""
    missing: int = 0
    """Utterances whose event did not arrive within the timeout."""


async def analyze(
    files: list[Path],
    speakers: list[str],
    settings: Settings,
    room: str,
    *,
    realtime: bool = False,
    timeout_s: float = 120.0,
    on_event: Callable[[EmotionEvent], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Result:
    """Analyse ``files`` (one participant each) in ``room``; events in the order they were decided.
    ``on_progress(phase, events, utterances)`` follows the work (for a bar on a terminal)."""
    progress = on_progress or (lambda *_: None)
    embedded = settings.bus.url.startswith("memory")
    video = any(has_video(f) for f in files)
    if embedded and not video:  # no visual branch runs here: fusion must not wait for it
        settings = msgspec.structs.replace(
            settings, fusion=msgspec.structs.replace(settings.fusion, deadline_ms=0)
        )
    bus = open_bus(settings.bus.url, settings.bus)
    await bus.ping()
    await ensure_readers(bus, settings)  # --redis: the workers' groups exist before the first utterance
    result = Result()
    stop = asyncio.Event()
    runner: asyncio.Task[object] | None = None
    try:
        if embedded:
            pipeline = Pipeline(bus, settings)
            for stage in build(settings) if video else build(settings, STAGES):
                pipeline.add(stage, consumer=f"analyze-{stage.name}")
            ready = asyncio.Event()
            runner = asyncio.create_task(pipeline.run(stop, ready))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({runner, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if runner.done():
                waiter.cancel()
                runner.result()
                raise UserError("the pipeline stopped while starting")
        progress("feeding the recordings", 0, 0)
        start = await bus.last_id(EmotionEvent.stream)
        await bus.publish(RoomControl.stream, encode(RoomControl(room=room, action="room_start", at=now())))
        expected: set[str] = set()

        async def one(path: Path, speaker: str) -> None:
            await bus.publish(
                RoomControl.stream,
                encode(
                    RoomControl(room=room, action="join", participant=speaker, display_name=speaker, at=now())
                ),
            )
            try:
                msgs = await ingest_file(path, bus, settings, room, speaker, realtime)
            except UserError as exc:
                result.failed[speaker] = str(exc)
                if on_error:
                    on_error(f"{path}: {exc}")
                return
            expected.update(m.key for m in msgs if isinstance(m, Utterance))
            if not any(isinstance(m, Utterance) for m in msgs) and on_error:
                on_error(f"{path}: no speech found (nothing above the VAD threshold)")

        feeding = asyncio.gather(*(one(f, s) for f, s in zip(files, speakers, strict=True)))
        seen: set[str] = set()
        last = start
        deadline: float | None = None
        while True:
            progress("events" if feeding.done() else "feeding the recordings", len(seen), len(expected))
            if feeding.done() and deadline is None:
                feeding.result()
                deadline = time.monotonic() + timeout_s
            if deadline is not None and (expected <= seen or time.monotonic() > deadline):
                break
            if runner is not None and runner.done():
                runner.result()
                raise UserError("the pipeline stopped before the analysis finished")
            for entry in await bus.tail({EmotionEvent.stream: last}, count=100, block_ms=200):
                last = entry.id
                try:
                    event = decode_checked(entry.data, EmotionEvent)
                except SchemaError:
                    continue
                if event.room != room or event.key in seen:
                    continue
                seen.add(event.key)
                result.events.append(event)
                if on_event:
                    on_event(event)
        result.missing = len(expected - seen)
        for s in speakers:
            await bus.publish(
                RoomControl.stream, encode(RoomControl(room=room, action="leave", participant=s, at=now()))
            )
        await bus.publish(RoomControl.stream, encode(RoomControl(room=room, action="room_end", at=now())))
    finally:
        stop.set()
        if runner is not None:
            try:
                await asyncio.wait_for(runner, 30)
            except (TimeoutError, asyncio.CancelledError):
                runner.cancel()
        await bus.close()
    return result


def summary(events: list[EmotionEvent]) -> dict[str, dict[str, object]]:
    """Per speaker: utterances, label counts, mean confidence."""
    out: dict[str, dict[str, object]] = {}
    for speaker in sorted({e.speaker for e in events}):
        mine = [e for e in events if e.speaker == speaker]
        out[speaker] = {
            "utterances": len(mine),
            "labels": dict(Counter(e.label for e in mine).most_common()),
            "mean_confidence": round(sum(e.confidence for e in mine) / len(mine), 3),
        }
    return out
