"""Refinement rules and the `landmarks` describer (real key frames of the astronaut, synthetic motion)."""

from __future__ import annotations

import re

import numpy as np

from emostream.schema import FaceFrame, KeyFrames
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.vlm.landmarks import LandmarksDescriber
from emostream.workers.vlm.refine import EMOTION_WORDS, emotion_words_in, refine, split_sentences


def keyframes_of(frames: list[FaceFrame]) -> KeyFrames:
    return KeyFrames(
        room="r", speaker="s", utterance=1, start=0.0, end=3.6, frames=frames, face_found=bool(frames)
    )


def test_refine_removes_or_drops_emotion_words() -> None:
    raw = (
        "1. The person looks happy. The lips are curving into a happy smile. "
        "- The eyebrows are rising while the jaw drops open. She appears surprised and angry."
    )
    out = refine(raw)
    assert emotion_words_in(out) == []
    assert split_sentences(out) == [
        "The lips are curving into a smile.",
        "The eyebrows are rising while the jaw drops open.",
    ]
    assert refine("An angry grimace is forming around the mouth.") == "A grimace is forming around the mouth."


def test_refine_dedupes_and_caps_sentences() -> None:
    s = "The head is tilting to the left."
    raw = f"{s} {s.upper()} The head is tilting to the left side. The eyes are blinking. The jaw is moving. The gaze is lowering."
    out = split_sentences(refine(raw, max_sentences=3))
    assert out == ["The head is tilting to the left.", "The eyes are blinking.", "The jaw is moving."]
    assert refine("") == "" and refine("Happy.") == ""


def test_lexicon_covers_meld_classes() -> None:
    for word in (
        "neutral",
        "surprise",
        "fear",
        "sadness",
        "joy",
        "disgust",
        "anger",
        "happy",
        "sad",
        "angry",
    ):
        assert word in EMOTION_WORDS
    for action in ("smile", "frown", "laugh", "rising", "open"):
        assert action not in EMOTION_WORDS


async def test_astronaut_description_mentions_smile_and_no_emotion(
    analyzer: FaceAnalyzer, clip: list
) -> None:
    from emostream.workers.fec import FecStage  # noqa: F401 - the stage module builds the same FaceFrames

    result = analyzer.analyze([f for f in clip if f[0] < 3.0][::5])
    frames = [
        FaceFrame(t=k.t, box=k.box, expression=k.expression.tolist(), blendshapes=k.face.blendshapes,
                  head_pose=k.face.head_pose)
        for k in result.key_frames
    ]  # fmt: skip
    text = await LandmarksDescriber().describe(keyframes_of(frames), [])
    sentences = split_sentences(text)
    assert 2 <= len(sentences) <= 3
    low = text.lower()
    assert "mouth corners are pulling outward and upward" in low and "smile" in low
    for part in ("eyes", "eyebrows", "jaw", "head", "gaze"):
        assert part in low, part
    assert "across the utterance" in low and "tilts toward the left of the frame" in low  # the clip's roll
    assert emotion_words_in(text) == []
    assert all(re.search(r"\b(is|are) \w+ing\b", s) for s in sentences)  # present progressive
    assert refine(text) == text  # already clean


def synthetic(t: float, **bs: float) -> FaceFrame:
    return FaceFrame(
        t=t, box=(0, 0, 100, 100), expression=[1 / 7] * 7, blendshapes=bs, head_pose=(0.0, 0.0, 0.0)
    )


def test_movement_across_the_utterance() -> None:
    frames = [
        synthetic(0.0, jawOpen=0.05, browInnerUp=0.05),
        synthetic(1.0, jawOpen=0.3, browInnerUp=0.4),
        synthetic(2.0, jawOpen=0.7, browInnerUp=0.6),
    ]
    text = LandmarksDescriber().describe_sync(keyframes_of(frames))
    assert (
        "the eyebrows are rising while the jaw drops open" in text
        or "the jaw drops open while the eyebrows are rising" in text
    )
    assert emotion_words_in(text) == []
    still = LandmarksDescriber().describe_sync(keyframes_of([synthetic(0.0), synthetic(1.0)]))
    assert "holding this position" in still and "The lips are resting" in still
    assert LandmarksDescriber().describe_sync(keyframes_of([])) == ""


def test_expression_channels_change_the_words() -> None:
    d = LandmarksDescriber()
    frown = d.describe_sync(
        keyframes_of(
            [synthetic(0.0, mouthFrownLeft=0.6, mouthFrownRight=0.6, browDownLeft=0.5, browDownRight=0.5)]
        )
    )
    assert "pulling downward" in frown and "drawing down and together" in frown
    wide = d.describe_sync(
        keyframes_of(
            [
                synthetic(
                    0.0, eyeWideLeft=0.6, eyeWideRight=0.6, jawOpen=0.6, eyeLookUpLeft=0.6, eyeLookUpRight=0.6
                )
            ]
        )
    )
    assert "opening wide" in wide and "jaw is dropping wide open" in wide and "gaze is lifting upward" in wide
    turned = FaceFrame(t=0, box=(0, 0, 1, 1), expression=[1 / 7] * 7, head_pose=(25.0, 0.0, -12.0))
    assert "turning toward the right of the frame" in d.describe_sync(keyframes_of([turned]))
    assert np.isfinite(len(frown))
