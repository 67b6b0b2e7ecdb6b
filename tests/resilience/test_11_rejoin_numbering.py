"""Issue 19 (found by the soak): a participant who rejoins a call must not restart its utterance
numbers at 0.

Before: each WHIP session opened a fresh segmenter numbering from 0, so a rejoined speaker's first
utterances got the event ids of its earlier ones (room/speaker/number) and reached subscribers as
repeats of old ids: lost silently. Now the server's call sink carries the numbering across sessions.
Real recorded speech through the real segmenter on the memory bus.
"""

from __future__ import annotations

from emostream.bus import open_bus
from emostream.config import load_settings
from emostream.schema import EmotionEvent, Utterance, decode
from emostream.server.tracks import call_sink
from tests.call.test_tracks import _audio_frames


async def _say_once(make: object, room: str, name: str) -> None:
    pump = make(room, name)  # type: ignore[operator]
    for f in _audio_frames():  # one prompt, then the session ends (its utterance is flushed)
        pump.offer_audio(f)
    await pump.close()


async def test_a_rejoined_participant_continues_its_utterance_numbers() -> None:
    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    make = call_sink(bus, settings)
    for _ in range(3):  # join, speak, leave; three sessions of the same participant
        await _say_once(make, "r", "alice")
    await _say_once(make, "r", "bob")  # another participant has its own numbers
    utts = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 100, 10)]
    assert [(u.speaker, u.utterance) for u in utts] == [("alice", 0), ("alice", 1), ("alice", 2), ("bob", 0)]
    assert len({u.key for u in utts}) == 4
    await bus.close()


async def test_a_rejoin_while_the_old_session_is_open_skips_a_number() -> None:
    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    make = call_sink(bus, settings)
    old = make("r", "carol")
    new = make("r", "carol")  # the old session has not closed yet (network gone, not noticed)
    for f in _audio_frames():
        old.offer_audio(f)
        new.offer_audio(f)
    await old.close()
    await new.close()
    utts = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 100, 10)]
    assert sorted(u.utterance for u in utts) == [0, 1]
    assert not await bus.tail({EmotionEvent.stream: "0"}, 10, 10)
    await bus.close()
