"""Late fusion of the text and face experts when no trained fusion head is installed.

The rule (calibrated log-linear pooling, a product of experts)::

    log p(y) = [log p~_text(y) + lam * (log p~_face(y) - log prior(y))] / (1 + lam) + const
    lam      = w * g(r) * h(c)

* ``p~ = (1 - eps) * p + eps / 7``: both experts are floored (``fusion.smoothing``, default 0.1).
  Softmax heads put near-zero mass on classes they merely did not see evidence for; without a floor
  one expert's 1e-6 would veto the other outright, whatever its reliability. The floor is what makes
  the guarantees below hold for *every* input and not only for typical ones.
* ``prior`` is the face model's class prior (``fusion.face_prior``, default uniform). Dividing a
  posterior by its training prior turns it into a likelihood, so the text's prior is not counted
  twice. The default is uniform because FER's training prior (FER2013: 1.5% disgust) would multiply
  FER's least reliable class by ~11 against its best one; set it when the face model's prior is known.
* ``g(r) = clip((r - r_min) / (r_full - r_min), 0, 1)`` ramps the face in with its reliability
  (``fusion.face_min_reliability`` = 0.5, ``fusion.face_full_reliability`` = 0.8): below ``r_min``
  the face takes no part at all (the decision is exactly the text's), from ``r_full`` on it counts
  fully.
* ``h(c) = clip((1 - c) / (1 - c_0), 0, 1)``, with ``c`` the text's top probability, lets the face's
  say shrink as the text grows confident (``fusion.text_confident_from`` = c_0 = 0.5): full weight for
  an uncertain text, 0.4 of it at 0.8, none for a certain one. Without it, the weight that lets a clear
  face move every uncertain text (promise 2 below) would also overturn nearly every confident one: the
  worst uncertain text and a typical confident one differ by only log(0.8 / 0.5) in log-odds against a
  class they both give ~0.
* ``w`` (``fusion.face_weight``, default 3.0) is the weight of a fully reliable face.
* dividing by ``1 + lam`` makes the result a weighted geometric mean of the two experts: the decision
  is the same as without it (a positive scale does not reorder classes), but the fused probabilities
  are no more confident than the experts are (a plain product of a 0.9 text and a 0.9 face would claim
  0.999), and every pairwise log-odds lies between the two experts' log-odds.

Why these defaults: they are the simplest that give the product's two promises as guarantees
(property-tested in tests/fusion/test_late_fusion.py), with the face never deciding alone:

1. a confident text (top p >= 0.8) is never overturned by a face of reliability < 0.5 (g = 0);
2. an uncertain text (top p < 0.5) with a clear face (r >= 0.8, top p >= 0.8) takes the face's
   class. There g = h = 1; with eps = 0.1 the floored text's largest log-odds is log((0.45 + 1/70) / (1/70)) = 3.48
   and a clear face's smallest is log((0.72 + 1/70) / (0.18 + 1/70)) = 1.33, so w must exceed
   3.48 / 1.33 = 2.62; 3 is the next round weight, with a margin for rounding.

A confident text against a clear, reliable face is a weighted vote with face weight w * h(c): 3 for
an uncertain text, 1.2 at c = 0.8 (about an equal vote: a 0.8 face against a 0.8 text wins), 0.6 at
0.9 (the text holds against a 0.9 face) and 0 at 1. What this costs when the face is uninformative
(the synthesized replay's fixed portraits) is measured in docs/fusion.md. Trained on MELD video, the residual
head replaces this rule (``fusion.model``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from emostream.schema import EMOTIONS

FusionMode = Literal["fused", "text", "face"]
Driver = Literal["text", "face", "both", "fused"]


@dataclass(frozen=True, slots=True)
class LateFusion:
    weight: float = 3.0
    smoothing: float = 0.1
    min_reliability: float = 0.5
    full_reliability: float = 0.8
    text_confident_from: float = 0.5
    prior: tuple[float, ...] = ()
    """Face model class prior over EMOTIONS; empty = uniform."""

    @classmethod
    def from_settings(cls, fusion: Any) -> LateFusion:
        return cls(
            weight=fusion.face_weight,
            smoothing=fusion.smoothing,
            min_reliability=fusion.face_min_reliability,
            full_reliability=fusion.face_full_reliability,
            text_confident_from=fusion.text_confident_from,
            prior=tuple(fusion.face_prior),
        )

    def gate(self, reliability: float) -> float:
        """g(r): 0 below ``min_reliability``, 1 from ``full_reliability``, linear in between."""
        span = max(1e-9, self.full_reliability - self.min_reliability)
        return float(np.clip((reliability - self.min_reliability) / span, 0.0, 1.0))

    def yielding(self, text_confidence: float) -> float:
        """h(c): 1 up to ``text_confident_from``, falling linearly to 0 at a certain text."""
        span = max(1e-9, 1.0 - self.text_confident_from)
        return float(np.clip((1.0 - text_confidence) / span, 0.0, 1.0))

    def takes_part(self, reliability: float) -> bool:
        return self.weight > 0 and self.gate(reliability) > 0

    def fuse(
        self, text: npt.ArrayLike, face: npt.ArrayLike | None, reliability: float
    ) -> npt.NDArray[np.float64]:
        """Fused probabilities over EMOTIONS; exactly ``text`` when the face takes no part."""
        t = _probs(text)
        if face is None or not self.takes_part(reliability):
            return t
        f = _probs(face)
        k = len(t)
        eps = self.smoothing
        log_t = np.log((1 - eps) * t + eps / k)
        log_f = np.log((1 - eps) * f + eps / k)
        if self.prior:
            log_f = log_f - np.log(_probs(self.prior))
        lam = self.weight * self.gate(reliability) * self.yielding(float(t.max()))
        z = (log_t + lam * log_f) / (1.0 + lam)
        z = np.exp(z - z.max())
        return np.asarray(z / z.sum(), dtype=np.float64)


def _probs(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    arr = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    total = float(arr.sum())
    if arr.shape != (len(EMOTIONS),) or not np.isfinite(total) or total <= 0:
        raise ValueError(f"expected {len(EMOTIONS)} finite non-negative probabilities, got {arr.tolist()}")
    return arr / total


def _top(probs: Mapping[str, float]) -> str:
    return max(probs, key=lambda e: probs[e])


def driver_of(event: Any) -> Driver:
    """Which modality drove an event's decision (an EmotionEvent or its JSON dict).

    ``text``: the face took no part, or was outvoted; ``face``: the face changed the text's decision
    (or ``fusion.mode = face``); ``both``: text and face agree; ``fused``: the pool chose a class that
    is neither expert's top.
    """
    get = event.get if isinstance(event, Mapping) else lambda k, d=None: getattr(event, k, d)
    label = str(get("label", ""))
    text: Mapping[str, float] = get("text_probs", None) or {}
    face: Mapping[str, float] = get("face_probs", None) or {}
    if get("visual_status", "") != "used" or not face:
        return "text"
    if not text or get("fusion", "") == "face":
        return "face"
    text_top, face_top = _top(text), _top(face)
    if label == text_top == face_top:
        return "both"
    if label == text_top:
        return "text"
    if label == face_top:
        return "face"
    return "fused"


def as_dict(probs: Sequence[float] | npt.NDArray[Any]) -> dict[str, float]:
    """Probabilities over EMOTIONS as the event's {class: p} map (6 decimals)."""
    return {e: round(float(p), 6) for e, p in zip(EMOTIONS, probs, strict=True)}


def cue_strings(cues: Mapping[str, float]) -> list[str]:
    """``{"mouthSmileLeft": 0.82}`` -> ``["mouthSmileLeft 0.82"]`` (the event's readable cues)."""
    return [f"{name} {value:.2f}" for name, value in cues.items()]
