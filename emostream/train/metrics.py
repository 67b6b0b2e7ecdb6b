"""Training-run metrics: the shared scores plus the confusion matrix and the count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from emostream.evaluation import scores as shared
from emostream.schema import EMOTIONS


def scores(labels: Sequence[int], preds: Sequence[int]) -> dict[str, Any]:
    """weighted_f1, accuracy, per_class_f1 (0-100) and the confusion matrix (rows = gold, EMOTIONS order)."""
    from sklearn.metrics import confusion_matrix

    y, p = np.asarray(labels), np.asarray(preds)
    return {
        **shared.scores(labels, preds),
        "confusion": confusion_matrix(y, p, labels=list(range(len(EMOTIONS)))).tolist(),
        "n": int(len(y)),
    }
