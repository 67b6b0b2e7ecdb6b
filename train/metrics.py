"""Classification metrics reported everywhere: weighted-F1 (primary), accuracy, per-class F1 (percent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emostream.schema import EMOTIONS


def scores(labels: Sequence[int], preds: Sequence[int]) -> dict[str, Any]:
    """weighted_f1, accuracy, per_class_f1 (0-100) and the confusion matrix (rows = gold, EMOTIONS order)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    y, p = np.asarray(labels), np.asarray(preds)
    classes = list(range(len(EMOTIONS)))
    per = f1_score(y, p, labels=classes, average=None, zero_division=0)
    return {
        "weighted_f1": round(
            100 * float(f1_score(y, p, labels=classes, average="weighted", zero_division=0)), 2
        ),
        "accuracy": round(100 * float(accuracy_score(y, p)), 2),
        "per_class_f1": {e: round(100 * float(f), 2) for e, f in zip(EMOTIONS, per, strict=True)},
        "confusion": confusion_matrix(y, p, labels=classes).tolist(),
        "n": int(len(y)),
    }
