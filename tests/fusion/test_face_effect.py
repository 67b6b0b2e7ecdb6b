"""The replay's account of what the face changed, from the events' own evidence."""

from __future__ import annotations

from emostream.late_fusion import as_dict
from emostream.replay.metrics import RowResult, summarize
from emostream.replay.report import face_lines
from emostream.schema import EMOTIONS


def peaked(cls: str) -> dict[str, float]:
    return as_dict([0.7 if e == cls else 0.05 for e in EMOTIONS])


def row(i: int, true: str, label: str, text_top: str | None, face_top: str | None = None) -> RowResult:
    event = {"label": label, "visual_status": "used" if face_top else "no_face", "modalities": ["text"]}
    if text_top:
        event["text_probs"] = peaked(text_top)
    if face_top:
        event["face_probs"] = peaked(face_top)
    return RowResult(
        dialogue=0, index=i, speaker="a", text="t", true=true, pred=label, source="clip", event=event
    )


def test_decisions_changed_and_text_only_scores() -> None:
    rows = [
        row(0, "joy", "joy", "neutral", "joy"),  # the face fixed it
        row(1, "neutral", "joy", "neutral", "joy"),  # the face spoiled it
        row(2, "sadness", "sadness", "sadness", "joy"),  # the text held
        row(3, "neutral", "neutral", "neutral"),  # no face
        row(4, "anger", "anger", None),  # a v1 event: text-only by definition
        RowResult(dialogue=0, index=5, speaker="a", text="t", true="fear", pred=None, source="clip"),
    ]
    face = summarize(rows)["face"]
    assert (
        face["decisions_changed"] == 2 and face["changed_to_right"] == 1 and face["changed_from_right"] == 1
    )
    assert face["changed_to_wrong"] == 1 and face["drivers"] == {"face": 2, "text": 3}
    assert face["text_only_accuracy"] == round(100 * 4 / 6, 2)  # rows 1, 2, 3, 4 right with text alone
    assert summarize(rows)["accuracy"] == round(100 * 4 / 6, 2)
    assert "decisions the face changed: 2 (1 to right, 1 from right)" in face_lines(face)[0]
