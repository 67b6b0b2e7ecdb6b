"""`landmarks` describer (embedded default): factual sentences from blendshapes, head pose and gaze.

No model, a few microseconds: the key frames' MediaPipe blendshapes (52 action-unit-like scores) and
head pose are averaged into a facial state, and the first vs last key frame give the movement over the
utterance. Three present-progressive sentences:

1. lips and jaw ("The mouth corners are pulling outward and upward into a wide smile while the jaw
   stays closed."),
2. eyebrows, eyes and gaze,
3. head pose plus the strongest movements across the utterance ("...; across the utterance the
   eyebrows are rising while the jaw drops open.").

Directions are in image terms (left/right of the frame), since the camera may mirror the person.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from emostream.schema import FaceFrame, KeyFrames

State = dict[str, float]


def _avg(bs: dict[str, float], *names: str) -> float:
    return sum(bs.get(n, 0.0) for n in names) / len(names)


def facial_state(frame: FaceFrame) -> State:
    """Blendshapes and pose folded into the channels the sentences talk about."""
    b = frame.blendshapes
    yaw, pitch, roll = frame.head_pose
    return {
        "smile": _avg(b, "mouthSmileLeft", "mouthSmileRight"),
        "frown": _avg(b, "mouthFrownLeft", "mouthFrownRight"),
        "press": _avg(b, "mouthPressLeft", "mouthPressRight"),
        "stretch": _avg(b, "mouthStretchLeft", "mouthStretchRight"),
        "pucker": max(b.get("mouthPucker", 0.0), b.get("mouthFunnel", 0.0)),
        "upper_lip": _avg(b, "mouthUpperUpLeft", "mouthUpperUpRight"),
        "jaw": b.get("jawOpen", 0.0),
        "brow_up": max(b.get("browInnerUp", 0.0), _avg(b, "browOuterUpLeft", "browOuterUpRight")),
        "brow_down": _avg(b, "browDownLeft", "browDownRight"),
        "blink": _avg(b, "eyeBlinkLeft", "eyeBlinkRight"),
        "squint": _avg(b, "eyeSquintLeft", "eyeSquintRight"),
        "wide": _avg(b, "eyeWideLeft", "eyeWideRight"),
        "sneer": _avg(b, "noseSneerLeft", "noseSneerRight"),
        # Image-right gaze: the subject's left eye looking out + right eye looking in (unmirrored view).
        "gaze_x": _avg(b, "eyeLookOutLeft", "eyeLookInRight") - _avg(b, "eyeLookInLeft", "eyeLookOutRight"),
        "gaze_y": _avg(b, "eyeLookUpLeft", "eyeLookUpRight") - _avg(b, "eyeLookDownLeft", "eyeLookDownRight"),
        "yaw": yaw,
        "pitch": pitch,
        "roll": roll,
    }


def mean_state(states: Sequence[State]) -> State:
    return {k: sum(s[k] for s in states) / len(states) for k in states[0]}


def mouth_sentence(s: State) -> str:
    if s["smile"] >= 0.5:
        lips = "The mouth corners are pulling outward and upward into a wide smile"
        if s["upper_lip"] >= 0.3:
            lips += " that lifts the upper lip"
    elif s["smile"] >= 0.2:
        lips = "The mouth corners are lifting slightly into a small smile"
    elif s["frown"] >= 0.25:
        lips = "The mouth corners are pulling downward"
    elif s["press"] >= 0.3:
        lips = "The lips are pressing together"
    elif s["pucker"] >= 0.35:
        lips = "The lips are pushing forward into a rounded shape"
    elif s["stretch"] >= 0.25:
        lips = "The lips are stretching sideways"
    elif s["sneer"] >= 0.3:
        lips = "The upper lip is lifting as the nose wrinkles"
    else:
        lips = "The lips are resting in a loose, closed line"
    if s["jaw"] >= 0.4:
        jaw = "while the jaw is dropping wide open"
    elif s["jaw"] >= 0.12:
        jaw = "while the jaw is hanging slightly open"
    else:
        jaw = "while the jaw is staying closed"
    return f"{lips} {jaw}."


def eyes_sentence(s: State) -> str:
    if s["brow_up"] >= 0.35:
        brows = "The eyebrows are raised high"
    elif s["brow_down"] >= 0.3:
        brows = "The eyebrows are drawing down and together"
    elif s["brow_up"] >= 0.15:
        brows = "The eyebrows are lifting slightly"
    else:
        brows = "The eyebrows are staying level"
    if s["blink"] >= 0.55:
        eyes = "the eyes are closing"
    elif s["wide"] >= 0.3:
        eyes = "the eyes are opening wide"
    elif s["squint"] >= 0.3:
        eyes = "the eyes are narrowing"
    else:
        eyes = "the eyes are open"
    gx, gy = s["gaze_x"], s["gaze_y"]
    if abs(gx) < 0.2 and abs(gy) < 0.2:
        gaze = "the gaze is holding on the camera"
    elif abs(gx) >= abs(gy):
        gaze = f"the gaze is shifting toward the {'right' if gx > 0 else 'left'} of the frame"
    else:
        gaze = "the gaze is lifting upward" if gy > 0 else "the gaze is lowering"
    return f"{brows}, {eyes} and {gaze}."


def head_phrase(s: State) -> str:
    parts = []
    if abs(s["yaw"]) >= 12:
        parts.append(f"turning toward the {'right' if s['yaw'] > 0 else 'left'} of the frame")
    if s["pitch"] >= 20:
        parts.append("tilting down")
    elif s["pitch"] <= -12:
        parts.append("tilting up")
    if abs(s["roll"]) >= 8:
        parts.append(f"leaning toward the {'left' if s['roll'] > 0 else 'right'} side of the frame")
    if not parts:
        return "The head is facing the camera"
    return "The head is " + " and ".join(parts)


_MOVES: dict[str, tuple[float, str, str]] = {
    # channel: (min change, phrase when it grows, phrase when it shrinks)
    "jaw": (0.15, "the jaw drops open", "the jaw closes"),
    "smile": (0.15, "the mouth corners pull up into a smile", "the smile fades"),
    "brow_up": (0.15, "the eyebrows are rising", "the eyebrows are lowering"),
    "brow_down": (0.15, "the brows knit together", "the brows relax"),
    "blink": (0.3, "the eyes close", "the eyes open"),
    "squint": (0.2, "the eyes narrow", "the eyes widen"),
    "press": (0.2, "the lips press together", "the lips part"),
    "pucker": (0.2, "the lips push forward", "the lips draw back"),
    "yaw": (
        8.0,
        "the head turns toward the right of the frame",
        "the head turns toward the left of the frame",
    ),
    "pitch": (6.0, "the head nods downward", "the head lifts upward"),
    "roll": (
        6.0,
        "the head tilts toward the left of the frame",
        "the head tilts toward the right of the frame",
    ),
}


def movements(first: State, last: State, limit: int = 2) -> list[str]:
    """The strongest changes between the first and the last key frame, largest first."""
    found = []
    for ch, (minimum, up, down) in _MOVES.items():
        delta = last[ch] - first[ch]
        if abs(delta) >= minimum:
            found.append((abs(delta) / minimum, up if delta > 0 else down))
    found.sort(key=lambda x: -x[0])
    return [phrase for _, phrase in found[:limit]]


def describe_states(states: Sequence[State]) -> str:
    """Three sentences for key-frame states in time order (at least one)."""
    mean = mean_state(states)
    moves = movements(states[0], states[-1]) if len(states) > 1 else []
    if moves:
        motion = "across the utterance " + " while ".join(moves)
    else:
        motion = "across the utterance the face is holding this position with only small shifts of the lips"
    return f"{mouth_sentence(mean)} {eyes_sentence(mean)} {head_phrase(mean)}; {motion}."


class LandmarksDescriber:
    """Rule-based describer over KeyFrames' blendshapes and head pose (ignores the crops)."""

    name: ClassVar[str] = "landmarks"

    async def describe(self, frames: KeyFrames, crops: Sequence[bytes]) -> str:
        return self.describe_sync(frames)

    def describe_sync(self, frames: KeyFrames) -> str:
        if not frames.frames:
            return ""
        return describe_states([facial_state(f) for f in frames.frames])

    async def close(self) -> None:
        return None
