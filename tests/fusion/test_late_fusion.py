"""Property tests of the late-fusion rule with its default settings, and the event's driver."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from emostream.config import FusionSettings
from emostream.late_fusion import LateFusion, as_dict, driver_of
from emostream.schema import EMOTIONS

RULE = LateFusion.from_settings(FusionSettings())
K = len(EMOTIONS)


@st.composite
def distributions(draw: st.DrawFn, top: int | None = None, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """A probability vector over the 7 classes whose largest entry (at ``top``, or anywhere) is in
    [lo, hi]; the rest of the mass is spread at random (entries may be exactly 0)."""
    k = draw(st.integers(0, K - 1)) if top is None else top
    p_top = draw(st.floats(max(lo, 1.0 / K), hi))
    raw = np.asarray(draw(st.lists(st.floats(0.0, 1.0), min_size=K - 1, max_size=K - 1)), dtype=np.float64)
    rest = (1.0 - p_top) * (raw / raw.sum() if raw.sum() > 0 else np.full(K - 1, 1.0 / (K - 1)))
    p = np.insert(rest, k, p_top)
    assume(int(np.argmax(p)) == k and p.max() <= hi + 1e-12 and p.max() >= lo)
    return p


def test_defaults_are_the_documented_ones() -> None:
    assert (RULE.weight, RULE.smoothing, RULE.min_reliability, RULE.full_reliability) == (3.0, 0.1, 0.5, 0.8)
    assert RULE.text_confident_from == 0.5
    assert RULE.prior == () and FusionSettings().mode == "fused"


@settings(max_examples=400, deadline=None)
@given(
    text=distributions(lo=0.8),
    face=distributions(),
    reliability=st.floats(0.0, 0.5, exclude_max=True),
)
def test_confident_text_is_never_overturned_by_an_unreliable_face(
    text: np.ndarray, face: np.ndarray, reliability: float
) -> None:
    fused = RULE.fuse(text, face, reliability)
    assert int(np.argmax(fused)) == int(np.argmax(text))


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    face_class=st.integers(0, K - 1),
    reliability=st.floats(0.8, 1.0),
)
def test_uncertain_text_takes_a_clear_faces_class(
    data: st.DataObject, face_class: int, reliability: float
) -> None:
    text = data.draw(distributions(hi=0.4999))
    face = data.draw(distributions(top=face_class, lo=0.8))
    fused = RULE.fuse(text, face, reliability)
    assert int(np.argmax(fused)) == face_class


@settings(max_examples=200, deadline=None)
@given(text=distributions())
def test_no_face_gives_exactly_the_text_distribution(text: np.ndarray) -> None:
    assert np.array_equal(RULE.fuse(text, None, 0.0), text / text.sum())
    assert np.array_equal(RULE.fuse(text, None, 1.0), text / text.sum())


@settings(max_examples=200, deadline=None)
@given(text=distributions(), face=distributions(), reliability=st.floats(0.0, 1.0))
def test_fused_is_a_distribution_between_the_experts(
    text: np.ndarray, face: np.ndarray, reliability: float
) -> None:
    fused = RULE.fuse(text, face, reliability)
    assert fused.shape == (K,) and np.all(fused >= 0) and abs(fused.sum() - 1) < 1e-9
    if not RULE.takes_part(reliability):
        return

    # every pairwise log-odds of the fused distribution lies between the (floored) experts' log-odds
    def floored(p: np.ndarray) -> np.ndarray:
        return np.log((1 - RULE.smoothing) * p / p.sum() + RULE.smoothing / K)

    lt, lf, lp = floored(text), floored(face), np.log(fused)
    for i in range(K):
        for j in range(K):
            a, b = lt[i] - lt[j], lf[i] - lf[j]
            assert min(a, b) - 1e-9 <= lp[i] - lp[j] <= max(a, b) + 1e-9


def test_the_gate_ramps_between_the_thresholds() -> None:
    assert RULE.gate(0.49) == 0.0 and RULE.gate(0.8) == 1.0 and RULE.gate(0.65) == pytest.approx(0.5)
    assert not RULE.takes_part(0.5) and RULE.takes_part(0.51)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="7 finite"):
        RULE.fuse([0.5, 0.5], None, 0.0)
    with pytest.raises(ValueError, match="7 finite"):
        RULE.fuse([float("nan")] * 7, None, 0.0)


def _event(
    label: str, text_top: str, face_top: str | None, status: str = "used", fusion: str = "late"
) -> dict:
    def peaked(cls: str) -> dict[str, float]:
        return as_dict([0.7 if e == cls else 0.05 for e in EMOTIONS])

    return {
        "label": label,
        "visual_status": status,
        "text_probs": peaked(text_top),
        "face_probs": peaked(face_top) if face_top else {},
        "fusion": fusion,
    }


@pytest.mark.parametrize(
    ("event", "driver"),
    [
        (_event("joy", "neutral", "joy"), "face"),
        (_event("neutral", "neutral", "joy"), "text"),
        (_event("joy", "joy", "joy"), "both"),
        (_event("surprise", "neutral", "joy"), "fused"),
        (_event("neutral", "neutral", None, status="no_face"), "text"),
        (_event("joy", "neutral", "joy", status="unreliable"), "text"),
        (_event("joy", "neutral", "joy", fusion="face"), "face"),
    ],
)
def test_driver_of_says_which_modality_decided(event: dict, driver: str) -> None:
    assert driver_of(event) == driver


def test_the_face_weighs_less_against_a_more_confident_text() -> None:
    face = np.array([0.02, 0.02, 0.02, 0.02, 0.9, 0.01, 0.01])
    assert RULE.yielding(0.3) == RULE.yielding(0.5) == 1.0 and RULE.yielding(0.9) == pytest.approx(0.2)
    moved = []
    for c in (0.6, 0.8, 0.9, 0.99):
        text = np.array([c] + [(1 - c) / 6] * 6)
        moved.append(RULE.fuse(text, face, 1.0)[4] - text[4])
    assert moved == sorted(moved, reverse=True) and moved[-1] < 0.03
    assert int(np.argmax(RULE.fuse(np.array([0.9] + [0.1 / 6] * 6), face, 1.0))) == 0  # the 0.9 text holds
