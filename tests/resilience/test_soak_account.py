"""The soak's per-prompt account (bench/soak_report.py) on a made-up run: a publisher that froze sends
its late prompts in a burst; the server stamps them on the sender's timeline (its clock follows the
pts), so they still match by time, and their latency runs from when they actually left."""

from __future__ import annotations

from emostream.bench.call import Spoken
from emostream.bench.soak import SoakRun
from emostream.bench.soak_report import account
from emostream.schema import EmotionEvent

T0 = 1_000.0


def _event(n: int, start: float, end: float, text: str) -> EmotionEvent:
    return EmotionEvent(
        room="soak", speaker="speaker1", utterance=n, id=f"e{n}", start=start, end=end, label="neutral",
        probabilities={"neutral": 1.0}, confidence=1.0, modalities=["text"], transcript=text,
    )  # fmt: skip


def _run(spoken: list[Spoken], events: list[tuple[float, EmotionEvent]]) -> SoakRun:
    return SoakRun(
        1, T0, 60.0, 0.0, [], spoken, events, [], [], {}, "", [], {}, [], 0, "", {}, [], [], 5.0
    )  # fmt: skip


def test_prompts_sent_late_in_a_burst_match_on_their_slot_and_wait_from_their_send() -> None:
    spoken = [
        Spoken("speaker1", "a", "please hold", T0 + 10.0, 0.0),
        Spoken("speaker1", "b", "thank you for calling", T0 + 20.0, 25.0),  # frozen 25 s, then sent
        Spoken("speaker1", "c", "goodbye now", T0 + 30.0, 15.2),
        Spoken("speaker1", "d", "one more thing", T0 + 40.0, 0.0),  # never answered
    ]
    events = [
        (T0 + 10.8, _event(0, T0 + 8.5, T0 + 10.1, "please hold")),
        (T0 + 46.0, _event(1, T0 + 18.0, T0 + 20.1, "thank you for calling")),
        (T0 + 46.1, _event(2, T0 + 28.0, T0 + 30.1, "goodbye now")),
    ]
    rows, repeats, unmatched = account(_run(spoken, events))
    by = {r["prompt"]: r for r in rows}
    assert (repeats, unmatched) == (0, 0)
    assert [by[p]["events"] for p in "abc"] == [["e0"], ["e1"], ["e2"]]
    assert [by[p]["latency_ms"] for p in "abc"] == [800.0, 1000.0, 900.0]
    assert by["b"]["t"] == 45.0 and by["c"]["t"] == 45.2  # when they really left the publisher
    assert by["d"]["status"] == "silent" and by["d"]["reason"] == "no utterance published"
