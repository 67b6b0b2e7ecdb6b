"""What the face did to a replay's decisions: how many it changed, for better or worse, vs text alone.

Every v2 event carries the text expert's distribution (``text_probs``) next to the decided label, so the
text-only run is known without replaying twice: its prediction is ``argmax(text_probs)``. A decision the
face changed is one whose label differs from that. Events without ``text_probs`` (v1 producers) count as
text-only.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from emostream.evaluation.scores import UNANSWERED, scores
from emostream.late_fusion import driver_of
from emostream.schema import EMOTIONS

if TYPE_CHECKING:
    from emostream.replay.metrics import RowResult


def text_only_label(event: dict[str, Any] | None) -> str | None:
    """The label the text expert alone would have given (the event's own label for v1 events)."""
    if not event:
        return None
    text = event.get("text_probs") or {}
    if not text:
        return str(event.get("label")) if event.get("label") else None
    return max(text, key=lambda e: text[e])


def face_effect(rows: list[RowResult]) -> dict[str, Any]:
    """``decisions_changed`` (label != text-only label), of which ``changed_to_right`` / ``changed_to_wrong``
    (``changed_from_right`` counts right text decisions the face spoiled), the text-only weighted-F1 and
    accuracy (percent) on the same rows, and which modality drove each decision."""
    changed = to_right = from_right = 0
    drivers: Counter[str] = Counter()
    true, text_pred = [], []
    for r in rows:
        text = text_only_label(r.event)
        true.append(EMOTIONS.index(r.true))
        text_pred.append(EMOTIONS.index(text) if text in EMOTIONS else UNANSWERED)
        if r.event is None:
            continue
        drivers[driver_of(r.event)] += 1
        if text is not None and r.pred != text:
            changed += 1
            to_right += r.pred == r.true
            from_right += text == r.true
    text_only = scores(true, text_pred)
    return {
        "decisions_changed": changed,
        "changed_to_right": to_right,
        "changed_from_right": from_right,
        "changed_to_wrong": changed - to_right,
        "text_only_weighted_f1": text_only["weighted_f1"],
        "text_only_accuracy": text_only["accuracy"],
        "drivers": dict(drivers),
    }
