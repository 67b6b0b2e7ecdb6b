"""Pictures people would rather see than read: shared by replay reports and training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emostream.schema import EMOTIONS


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display here, in CI or on an edge box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: Any, out: Path, title: str) -> Path:
    """Confusion matrix (true rows, predicted columns): colour = share of the true row, cell = count.

    Colours are row-normalised so rare classes stay readable next to neutral; the colorbar and the
    title say so, and the numbers in the cells are raw utterance counts.
    """
    plt = pyplot()
    cm = np.asarray(confusion, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.2, 5.8))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("share of the true class's utterances (row-normalised)")
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            color = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", color=color)
    ax.set_title(f"{title}\ncells: utterance counts; colour: share of the row", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
