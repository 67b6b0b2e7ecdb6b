"""Replay metrics agree with scikit-learn's weighted-F1; unanswered rows count as wrong."""

from __future__ import annotations

from sklearn.metrics import f1_score

from emostream.evaluation.scores import UNANSWERED, confusion, scores
from emostream.replay.metrics import RowResult, corpus_wer, summarize, word_errors
from emostream.schema import EMOTIONS


def _row(i: int, true: str, pred: str | None, latency: float = 10.0) -> RowResult:
    event = None
    if pred is not None:
        event = {
            "label": pred,
            "modalities": ["text", "visual"] if i % 2 else ["text"],
            "visual_status": "used" if i % 2 else "no_face",
            "latency_ms": {"asr": latency, "total": 2 * latency},
        }
    return RowResult(
        dialogue=i // 5, index=i % 5, speaker="a", text="x", true=true, pred=pred, source="csv", event=event
    )


def test_unanswered_rows_are_wrong_and_left_out_of_the_confusion() -> None:
    true, pred = [0, 0, 1], [0, UNANSWERED, 1]  # class 0: tp 1, fn 1 -> F1 2/3; class 1: F1 1
    s = scores(true, pred)
    assert s["weighted_f1"] == round(100 * (2 / 3 * 2 + 1) / 3, 2) and s["accuracy"] == 66.67
    m = confusion(true, pred)
    assert m[0, 0] == 1 and m[1, 1] == 1 and m.sum() == 2


def test_summary_fields_and_unanswered_rows() -> None:
    rows = [
        _row(0, "joy", "joy"),
        _row(1, "joy", None),
        _row(2, "anger", "neutral", 30.0),
        _row(3, "neutral", "neutral"),
    ]
    m = summarize(rows)
    assert m["utterances"] == 4 and m["answered"] == 3
    assert m["accuracy"] == 50.0
    true = [EMOTIONS.index(r.true) for r in rows]
    pred = [EMOTIONS.index(r.pred) if r.pred else 0 for r in rows]
    pred[1] = EMOTIONS.index("fear")  # any wrong class gives the same F1 for joy's missed row
    want = f1_score(true, pred, labels=[0, 1, 3, 4, 5, 6], average="weighted", zero_division=0)
    assert m["weighted_f1"] == round(100 * want, 2)
    assert m["per_class_f1"]["joy"] == round(100 * 2 / 3, 2)
    assert m["confusion"]["matrix"][EMOTIONS.index("anger")][0] == 1
    assert sum(map(sum, m["confusion"]["matrix"])) == 3
    assert m["latency_ms"]["asr"]["p50"] == 10.0 and m["latency_ms"]["total"]["n"] == 3
    assert m["modalities"] == {"text": 2, "text+visual": 1}
    assert set(m["per_class_f1"]) == set(EMOTIONS)
    assert m["per_speaker"] == {"a": {"utterances": 4, "accuracy": 50.0}}


def test_word_error_rate() -> None:
    assert word_errors("Oh my God, he’s lost it.", "oh my god he's lost it") == (0, 6)
    assert word_errors("You're a genius!", "Your tea is...") == (3, 3)
    assert word_errors("Hey.", "") == (1, 1)
    rows = [_row(0, "joy", "joy"), _row(1, "joy", "joy")]
    assert corpus_wer(rows) is None  # no clip rows
    for r, said in zip(rows, ("x", "y z"), strict=True):
        r.source, r.text = "clip", "x y"
        assert r.event is not None
        r.event["transcript"] = said
    assert corpus_wer(rows) == 75.0  # 1 deletion + 2 substitutions over 4 reference words
