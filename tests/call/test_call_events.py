"""A live call end to end: two aiortc WHIP publishers speak real prompts with a face, the in-process
pipeline (real models) turns them into EmotionEvents with the right speaker and transcript."""

from __future__ import annotations

import pytest

from emostream.bench.call import run_call
from emostream.bench.netns import Network
from emostream.config import load_settings


@pytest.mark.slow
async def test_two_publishers_get_their_events(private_net: Network) -> None:
    settings = load_settings(env={})
    run = await run_call(
        settings, participants=2, prompts=("agent-pass", "conf-getpin"), pause_s=1.2, drain_s=4.0
    )
    assert {s.speaker for s in run.spoken} == {"speaker1", "speaker2"}
    got = {(m["speaker"], m["prompt"]) for m in run.matched}
    assert got == {(s.speaker, s.prompt) for s in run.spoken}  # every prompt of both speakers, none lost
    assert len(run.events) == len(run.spoken)  # and nothing else (no split, no spurious utterance)
    summary = run.summary(2)
    assert summary["wer"] is not None and summary["wer"] <= 0.15, run.matched
    assert all(m["stages"]["vad"] > 0 for m in run.matched)  # end of speech after the last voiced sample
