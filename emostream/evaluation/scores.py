"""Classification scores reported everywhere (eval, bench, training): weighted-F1 first, in percent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emostream.schema import EMOTIONS


def scores(gold: Sequence[int], pred: Sequence[int]) -> dict[str, Any]:
    """weighted_f1 and accuracy in percent (0-100), per_class_f1 by EMOTIONS name."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = list(range(len(EMOTIONS)))
    per = f1_score(gold, pred, labels=labels, average=None, zero_division=0)
    weighted = f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)
    return {
        "weighted_f1": round(100 * float(weighted), 2),
        "accuracy": round(100 * float(accuracy_score(gold, pred)), 2),
        "per_class_f1": {e: round(100 * float(f), 2) for e, f in zip(EMOTIONS, per, strict=True)},
    }
