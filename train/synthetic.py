"""Generated feature caches for testing the visual and fusion stages without MELD video.

Labels are drawn with MELD-like class imbalance; teacher features are class centroids plus noise (so the
teacher is good but imperfect), description embeddings a noisier, differently-rotated view of the same
classes (so a student can learn from them, and fusion has something to add).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emostream.train.features import save_cache

MELD_PRIOR = (0.47, 0.12, 0.027, 0.068, 0.174, 0.027, 0.111)


def make_caches(out: str | Path, n: int, split: str, dim: int = 32, seed: int = 0) -> tuple[Path, Path]:
    """Write ``<out>/teacher_<split>.npz`` and ``<out>/visual_<split>.npz``; returns both paths."""
    rng = np.random.default_rng(seed)
    structure = np.random.default_rng(1234)  # same class geometry for every split
    centroids = structure.normal(size=(7, dim))
    rotation, _ = np.linalg.qr(structure.normal(size=(dim, dim)))
    readout = structure.normal(size=(dim, 7)) * 0.2 + centroids.T * 0.3
    labels = rng.choice(7, size=n, p=np.asarray(MELD_PRIOR) / sum(MELD_PRIOR))
    h = centroids[labels] + rng.normal(scale=3.0, size=(n, dim))
    logits = (h @ readout) * 0.4
    emb = (centroids[labels] + rng.normal(scale=1.5, size=(n, dim))) @ rotation
    keys = np.stack([np.arange(n) // 8, np.arange(n) % 8], axis=1)
    order = rng.permutation(n)  # the visual cache need not share the teacher's row order
    out = Path(out)
    t = save_cache(
        out / f"teacher_{split}.npz",
        keys=keys,
        h=h.astype(np.float32),
        logits=logits.astype(np.float32),
        labels=labels,
    )
    v = save_cache(
        out / f"visual_{split}.npz",
        keys=keys[order],
        emb=emb[order].astype(np.float32),
        confidence=rng.uniform(0.5, 1.0, size=n)[order].astype(np.float32),
    )
    return t, v


def make_dialogue_cache(path: str | Path, dialogues: int, seed: int = 0, dim: int = 16) -> Path:
    """A teacher cache whose dialogues carry emotional inertia: each speaker mostly keeps one emotion.

    The per-utterance logits are a weak, noisy view of the label, so a model that pools a speaker's
    turns (emostream.train.dialogue) beats them; one that ignores the dialogue cannot.
    """
    rng = np.random.default_rng(seed)
    prior = np.asarray(MELD_PRIOR) / sum(MELD_PRIOR)
    keys, speakers, labels = [], [], []
    for d in range(dialogues):
        mood = rng.choice(7, size=3, p=prior)
        for u in range(int(rng.integers(3, 12))):
            s = int(rng.integers(0, 3))
            keys.append((d, u))
            speakers.append(s)
            labels.append(int(mood[s]) if rng.random() < 0.85 else int(rng.choice(7, p=prior)))
    y = np.asarray(labels)
    logits = np.eye(7)[y] * 1.2 + rng.normal(scale=1.0, size=(len(y), 7))
    h = np.concatenate([logits, rng.normal(size=(len(y), dim - 7))], axis=1)
    return save_cache(
        path,
        keys=np.asarray(keys),
        h=h.astype(np.float32),
        logits=logits.astype(np.float32),
        labels=y,
        speakers=np.asarray(speakers),
    )
