"""Training-run metrics: the shared scores plus the confusion matrix and the count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emostream.evaluation import scores as shared


def scores(labels: Sequence[int], preds: Sequence[int]) -> dict[str, Any]:
    """weighted_f1, accuracy, per_class_f1 (0-100) and the confusion matrix (rows = gold, EMOTIONS order)."""
    return {
        **shared.scores(labels, preds),
        "confusion": shared.confusion(labels, preds).tolist(),
        "n": len(labels),
    }
