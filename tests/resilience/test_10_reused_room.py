"""Issue 13 #10: a reused room id must not pick up visual cues of an earlier session.

Before: an event carried fec/vlm traces from 190 s earlier. Two causes, both keyed by room/speaker/
utterance number, which restarts at 0 for a new ingest session (a participant who joins again, a room
id used again):
- the fusion stage tails the descriptions stream from its start, so a (re)starting fusion read old
  descriptions back and, timing its cache by arrival, took them as fresh. Now a cue published longer
  than ``fusion.visual_ttl_s`` ago is counted ``stale`` and never matched;
- within the TTL, and in ASR's speculation cache, the blob keys, the event ids and the context
  worker's per-room dialogue (where the old turn 0 was taken for a redelivery of the new one), the old
  and new utterance had the same key. Now every live ingest session stamps its messages with a
  ``session`` that is part of the key, and a room silent longer than ``context.room_idle_s`` (or
  restarted by ``room_start``) starts a new dialogue.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from emostream import schema
from emostream.bench.speech_data import speak
from emostream.bus import open_bus
from emostream.config import Settings
from emostream.ingest.participant import SpeechIngest
from emostream.runtime.stage import StageContext
from emostream.schema import RoomControl, TextContext, Transcript, Utterance, VisualDescription, encode
from emostream.workers.context import ContextStage
from emostream.workers.fusion import FusionStage


def _cue(utterance: int, age_s: float) -> bytes:
    at = schema.now() - age_s
    return encode(
        VisualDescription(
            room="room-1", speaker="alice", utterance=utterance, text="smiling", trace={"vlm": at}
        )
    )


async def test_descriptions_from_an_earlier_session_are_not_matched() -> None:
    settings = Settings()
    bus = open_bus("memory://", settings.bus)
    await bus.publish(VisualDescription.stream, _cue(0, age_s=190))  # the earlier session's utterance 0
    await bus.publish(VisualDescription.stream, _cue(1, age_s=0.5))  # this session's utterance 1
    stage = FusionStage(settings, load_head=False)
    ctx = StageContext(bus=bus, settings=settings, stage="fusion", consumer="f")
    await stage.setup(ctx)
    try:
        for _ in range(100):
            if stage.counts["received"] + stage.counts["stale"] >= 2:
                break
            await asyncio.sleep(0.02)
        assert stage.counts["stale"] == 1 and stage.counts["received"] == 1
        assert await stage.cache.wait("room-1/alice/0", 0.05) is None  # the reused id finds nothing old
        fresh = await stage.cache.wait("room-1/alice/1", 0.05)
        assert fresh is not None and fresh.text == "smiling"
    finally:
        await stage.close()
        await bus.close()


def _visual(session: str) -> bytes:
    return encode(
        VisualDescription(
            room="room-1",
            speaker="alice",
            utterance=0,
            session=session,
            text="smiling",
            trace={"fec": schema.now() - 1, "vlm": schema.now() - 0.5},
        )
    )


async def test_a_fresh_cue_of_the_previous_session_is_not_matched() -> None:
    """Session "old" of room-1/alice/0 left a cue 0.5 s ago; the new session's utterance 0 must not use it."""
    settings = Settings()
    bus = open_bus("memory://", settings.bus)
    await bus.publish(VisualDescription.stream, _visual("old"))
    stage = FusionStage(settings, load_head=False)
    ctx = StageContext(bus=bus, settings=settings, stage="fusion", consumer="f")
    await stage.setup(ctx)
    try:
        for _ in range(100):
            if stage.counts["received"]:
                break
            await asyncio.sleep(0.02)
        assert stage.counts["received"] == 1
        text = TextContext(
            room="room-1",
            speaker="alice",
            utterance=0,
            session="new",
            start=0.0,
            end=1.0,
            text="hello",
            embedding=[0.0] * 8,
            logits=[1.0, 0, 0, 0, 0, 0, 0],
            trace={"context": schema.now()},
        )
        (out,) = await stage.text_context(text, ctx)
        event = out.message
        assert isinstance(event, schema.EmotionEvent)
        assert event.visual_status == "absent" and not event.visual_description
        assert "vlm" not in event.trace and "fec" not in event.trace
        assert event.id != schema.event_id("room-1", "alice", 0, "old")  # not the old event's id either
    finally:
        await stage.close()
        await bus.close()


async def test_two_sessions_of_one_speaker_in_one_room_never_share_keys_or_media() -> None:
    """The same person joins room-1 twice: both sessions number from 0, yet the keys, blob refs and event
    ids differ, and the second session's audio does not overwrite the first's (still pending) blob."""
    settings = Settings()
    bus = open_bus("memory://", settings.bus)
    await bus.ensure_group(Utterance.stream, "asr", "0")
    speech = speak("I can't believe you did that.")
    silence = np.zeros(16_000, dtype=np.float32)
    firsts: list[Utterance] = []
    for _ in range(2):
        ingest = SpeechIngest(bus, settings, "room-1", "alice", t0=time.time())
        published = await ingest.push_audio(np.concatenate([silence, speech, silence]))
        published += await ingest.flush()
        ingest.close()
        firsts.append(next(m for m in published if isinstance(m, Utterance)))
    a, b = firsts
    assert (a.room, a.speaker, a.utterance) == (b.room, b.speaker, b.utterance) == ("room-1", "alice", 0)
    assert a.session and b.session and a.session != b.session
    assert a.key != b.key and a.audio != b.audio
    assert schema.event_id(a.room, a.speaker, 0, a.session) != schema.event_id(
        b.room, b.speaker, 0, b.session
    )
    assert await bus.get_blob(a.audio) is not None and await bus.get_blob(b.audio) is not None
    await bus.close()


LINES = [
    ("ross", "I can't believe you did that."),
    ("rachel", "Did what? I didn't do anything!"),
    ("ross", "You told her about the ring. You ruined everything!"),
]


async def _decide(stage: ContextStage, ctx: StageContext, t: Transcript) -> list[float]:
    (out,) = await stage.transcript(t, ctx)
    assert isinstance(out.message, TextContext)
    return out.message.logits


async def test_a_reused_room_id_starts_a_new_dialogue() -> None:
    """An argument in room-1 an hour ago (or before a room_start) must not colour the new session's
    first utterance, which also reuses number 0: it is decided as in a room never used before."""
    settings = Settings()
    bus = open_bus("memory://", settings.bus)
    ctx = StageContext(bus=bus, settings=settings, stage="context", consumer="c")
    used = ContextStage(settings, follow=False)
    await used.setup(ctx)
    fresh = ContextStage(settings, model=used.model, follow=False)
    await fresh.setup(ctx)
    hour_ago = time.time() - 3600

    def line(n: int, session: str, at: float, text: str = "") -> Transcript:
        speaker, said = LINES[n]
        return Transcript(
            room="room-1",
            speaker=speaker,
            utterance=n,
            session=session,
            start=float(n),
            end=n + 0.9,
            text=text or said,
            eos_at=at + n,
        )

    for n in range(len(LINES)):
        await _decide(used, ctx, line(n, "old", hour_ago))
    hello = line(0, "new", time.time(), "Hi! Nice to meet you.")
    assert await _decide(used, ctx, hello) == await _decide(fresh, ctx, hello)

    # within the idle time, a room_start (a new session of the room) starts over too
    for n in range(len(LINES)):
        await _decide(used, ctx, line(n, "third", time.time() - 10))
    await used.room_control(RoomControl(room="room-1", action="room_start"), ctx)
    again = line(0, "fourth", time.time(), "Hi! Nice to meet you.")
    assert await _decide(used, ctx, again) == await _decide(fresh, ctx, hello)
    await bus.close()
