"""Scores reported everywhere (eval, replay, bench, training), each defined once, on well-kept libraries.

* Classification (scikit-learn): weighted-F1 first, accuracy, per-class F1, in percent; the confusion
  matrix. A row that got no answer (a replay event that never came) is passed as :data:`UNANSWERED`: it
  is wrong for accuracy, a false negative of its true class for F1, and left out of the confusion matrix.
* Speech (jiwer): word edit distance, for WER.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emostream.schema import EMOTIONS

UNANSWERED = -1
"""Prediction of a row that got no answer (never a true positive of any class)."""
LABELS = list(range(len(EMOTIONS)))


def scores(gold: Sequence[int], pred: Sequence[int]) -> dict[str, Any]:
    """weighted_f1 and accuracy in percent (0-100), per_class_f1 by EMOTIONS name."""
    from sklearn.metrics import accuracy_score, f1_score

    if not len(gold):
        return {"weighted_f1": 0.0, "accuracy": 0.0, "per_class_f1": dict.fromkeys(EMOTIONS, 0.0)}
    per = f1_score(gold, pred, labels=LABELS, average=None, zero_division=0)
    weighted = f1_score(gold, pred, labels=LABELS, average="weighted", zero_division=0)
    return {
        "weighted_f1": round(100 * float(weighted), 2),
        "accuracy": round(100 * float(accuracy_score(gold, pred)), 2),
        "per_class_f1": {e: round(100 * float(f), 2) for e, f in zip(EMOTIONS, per, strict=True)},
    }


def confusion(gold: Sequence[int], pred: Sequence[int]) -> np.ndarray:
    """``m[i, j]`` = rows of true class i predicted j (EMOTIONS order); unanswered rows are left out."""
    from sklearn.metrics import confusion_matrix

    if not len(gold):
        return np.zeros((len(LABELS), len(LABELS)), np.int64)
    return np.asarray(confusion_matrix(gold, pred, labels=LABELS), np.int64)


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Word-level Levenshtein distance (substitutions + deletions + insertions) of two word lists."""
    import jiwer

    if not ref:
        return len(hyp)
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return int(out.substitutions + out.deletions + out.insertions)
