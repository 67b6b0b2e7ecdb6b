"""Replay metrics agree with scikit-learn's weighted-F1; unanswered rows count as wrong."""

from __future__ import annotations

import random

from sklearn.metrics import f1_score

from emostream.replay.metrics import RowResult, corpus_wer, summarize, weighted_f1, word_errors
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


def test_weighted_f1_matches_sklearn() -> None:
    rng = random.Random(7)
    for _ in range(20):
        n = rng.randint(1, 80)
        true = [rng.randrange(7) for _ in range(n)]
        pred = [rng.randrange(7) if rng.random() < 0.6 else t for t in true]
        want = f1_score(true, pred, labels=list(range(7)), average="weighted", zero_division=0)
        assert abs(weighted_f1(true, pred) - want) < 1e-12


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
