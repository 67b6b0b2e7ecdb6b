"""Regression: a clock step during a call (NTP, an operator) must not separate a participant's video
from its speech. Video frames were stamped with ``time.time()`` at arrival while the audio timeline
counts samples from the first one, so after a step every utterance lost its frames (forwards) or its
frames were refused as going back in time (backwards). Real aiortc tracks (speech prompt, portrait)
into the real call pump and participant ingest."""

from __future__ import annotations

import asyncio
import time as _time
from typing import Any

import pytest

from emostream.bus import open_bus
from emostream.config import Settings, load_settings
from emostream.ingest.vad import SileroModel
from emostream.schema import Utterance, decode
from emostream.server import tracks
from emostream.server.tracks import TrackPump, open_participant


@pytest.fixture(scope="module")
def media_settings() -> Settings:
    s = load_settings(env={})
    SileroModel.shared(s)
    return s


class SteppedClock:
    """The ``time`` module as the ingest modules see it, with the wall clock stepped ``step_s`` forward
    from ``at`` on (what NTP or an operator does to a running host); monotonic time is untouched. A
    stand-in for the system clock, which a test cannot step."""

    def __init__(self, step_s: float, after_s: float) -> None:
        self.step_s, self.at = step_s, _time.time() + after_s

    def time(self) -> float:
        now = _time.time()
        return now + self.step_s if now >= self.at else now

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


@pytest.mark.parametrize("step_s", [120.0, -120.0])
async def test_a_clock_step_mid_call_keeps_video_with_its_speech(
    media_settings: Settings, monkeypatch: pytest.MonkeyPatch, step_s: float
) -> None:
    from emostream.bench.call_media import FaceTrack, Program, SpeechTrack, load_prompt, transcripts
    from emostream.ingest import participant

    clock = SteppedClock(step_s, after_s=0.4)  # before the speech starts (lead 1 s)
    monkeypatch.setattr(tracks, "time", clock, raising=False)
    monkeypatch.setattr(participant, "time", clock)
    bus = open_bus("memory://", media_settings.bus)
    pump = TrackPump(open_participant(bus, media_settings, "room", "alice"), media_settings.call, "step")
    speech = SpeechTrack(Program([load_prompt("conf-onlyperson", transcripts())], pause_s=1.0, lead_s=1.0))
    pump.add_track(speech)
    pump.add_track(FaceTrack(fps=10))
    await asyncio.sleep(speech.program.duration + 0.3)
    await pump.close()
    got = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 10, 10)]
    await bus.close()
    assert len(got) == 1, got
    assert len(got[0].frames) >= 3, f"the utterance lost its video after a {step_s:+g} s clock step"
    assert pump.ingest.frames.stats.bad == 0  # type: ignore[attr-defined]
