"""The face expert: one 7-class distribution and a reliability per utterance, from the speaker's frames.

It needs no MELD video and no training: the FER model already reads MELD's 7 classes per frame, so an
utterance's face distribution is the quality-weighted mean of its per-frame readings (every frame of the
speaker's face track, not only the top-k key frames, so a brief expression is not overweighted by the
key-frame picker's preference for confident frames). Frame weights are the products of
:mod:`emostream.workers.face.quality`.

Reliability in [0, 1] = coverage x quality:

* coverage: share of the utterance's usable frames in which the speaker's face was read (a face seen
  in 3 of 30 frames says little about the utterance);
* quality: the weight-weighted mean frame weight ``sum(q^2) / sum(q)``, i.e. the quality of the
  frames that actually shaped the distribution (a few bad frames that barely count do not drag it down).

The top facial cues are the quality-weighted mean blendshapes, largest first (gaze directions and
MediaPipe's ``_neutral`` left out: they describe where someone looks, not their expression).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from emostream.workers.face.quality import Quality

TOP_CUES = 3
_NOT_CUES = ("_neutral", "eyeLook")


@dataclass(slots=True)
class FaceEvidence:
    """What the face says about one utterance (probabilities over schema.EMOTIONS)."""

    probs: npt.NDArray[np.float32]
    reliability: float
    frames_used: int
    coverage: float
    quality: float
    cues: dict[str, float] = field(default_factory=dict)
    """Top blendshapes (quality-weighted means), largest first."""


def top_cues(
    blendshapes: Sequence[Mapping[str, float]], weights: npt.NDArray[np.float64], k: int = TOP_CUES
) -> dict[str, float]:
    total = float(weights.sum())
    if total <= 0 or not blendshapes:
        return {}
    mean: dict[str, float] = {}
    for shapes, w in zip(blendshapes, weights, strict=True):
        for name, value in shapes.items():
            if not name.startswith(_NOT_CUES):
                mean[name] = mean.get(name, 0.0) + float(w) * value / total
    best = sorted(mean.items(), key=lambda kv: -kv[1])[:k]
    return {name: round(v, 2) for name, v in best}


def face_expert(
    probs: npt.NDArray[np.float32],
    qualities: Sequence[Quality],
    frames_usable: int,
    blendshapes: Sequence[Mapping[str, float]] = (),
) -> FaceEvidence | None:
    """Aggregate ``probs`` [n, 7] (the speaker's frames) into one reading; None without a usable frame.

    ``frames_usable`` counts the utterance's decodable frames (with or without a face): the coverage
    denominator.
    """
    q = np.asarray([x.weight for x in qualities], dtype=np.float64)
    if len(q) == 0 or float(q.sum()) <= 0 or frames_usable <= 0:
        return None
    p = np.asarray(probs, dtype=np.float64)
    dist = (q[:, None] * p).sum(axis=0) / q.sum()
    dist = dist / dist.sum()
    coverage = min(1.0, len(q) / frames_usable)
    quality = float((q * q).sum() / q.sum())
    return FaceEvidence(
        probs=dist.astype(np.float32),
        reliability=round(float(np.clip(coverage * quality, 0.0, 1.0)), 4),
        frames_used=int((q > 0).sum()),
        coverage=round(coverage, 4),
        quality=round(quality, 4),
        cues=top_cues(blendshapes, q) if blendshapes else {},
    )
