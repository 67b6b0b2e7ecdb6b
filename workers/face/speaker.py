"""Which of several on-screen faces is talking: mouth movement during the utterance's speech frames.

The largest-consistent-track rule of :mod:`emostream.workers.face.select` picks the wrong face when the listener
is closer to the camera than the speaker (a MELD two-shot, a meeting-room camera). The VAD already
says *when* this participant speaks (the utterance window), so the face that is speaking is the one
whose mouth moves during those frames.

Per face, mouth opening is measured twice and the larger is kept, so that neither a blendshape model
that misses a small mouth nor a landmark jitter alone decides: MediaPipe's ``jawOpen`` blendshape and
the inner-lip gap (landmarks 13/14) over the face height, scaled by ``LIP_GAP_SCALE`` to the
blendshape's range. A track's *activity* is the standard deviation of its opening over the speech
frames plus the mean absolute frame-to-frame change (talking opens and closes the mouth; a fixed
smile or a gaping mouth does neither).

Rule: only tracks present in at least ``min_presence`` of the frames where the best-present track is
seen compete. If the most active one moves at least ``min_activity`` and ``margin`` times more than
the runner-up, it is the speaker; otherwise (one face, one frame, nobody's mouth moving, or two
people talking) the size/consistency rule decides, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emostream.workers.face.landmarks import Face
from emostream.workers.face.select import link_tracks

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
"""MediaPipe face-mesh indices of the inner lip midpoints."""
LIP_GAP_SCALE = 4.0
"""Inner-lip gap / face height is ~0.1-0.15 for a wide-open mouth; x4 brings it to jawOpen's 0..0.6."""


@dataclass(frozen=True, slots=True)
class SpeakerRule:
    min_presence: float = 0.5
    min_activity: float = 0.03
    margin: float = 1.5
    link_iou: float = 0.3


def mouth_opening(face: Face) -> float:
    """How open the mouth is, roughly 0 (closed) .. 1 (wide open)."""
    jaw = face.blendshapes.get("jawOpen", 0.0)
    _, _, _, h = face.box
    gap = 0.0
    if h > 0 and len(face.landmarks) > LOWER_INNER_LIP:
        upper, lower = face.landmarks[UPPER_INNER_LIP, :2], face.landmarks[LOWER_INNER_LIP, :2]
        gap = float(np.linalg.norm(lower - upper)) / h * LIP_GAP_SCALE
    return max(float(jaw), gap)


def mouth_activity(openings: Sequence[float]) -> float:
    """Std of the opening plus mean absolute change between consecutive frames (0 for < 2 frames)."""
    if len(openings) < 2:
        return 0.0
    arr = np.asarray(openings, dtype=np.float64)
    return float(arr.std() + np.abs(np.diff(arr)).mean())


def active_speaker(
    faces: Sequence[Sequence[Face]],
    speech: Sequence[bool] | None = None,
    rule: SpeakerRule | None = None,
) -> tuple[dict[int, int], list[float]]:
    """The speaker's face per frame ({frame index: face index}) and every track's mouth activity.

    ``faces`` holds the faces of each frame in time order; ``speech[i]`` says whether frame i lies in
    the participant's speech (all frames when None).
    """
    rule = rule or SpeakerRule()
    tracks = link_tracks([[f.box for f in fr] for fr in faces], rule.link_iou)
    if not tracks:
        return {}, []
    in_speech = [True] * len(faces) if speech is None else list(speech)
    activity = []
    for tr in tracks:
        openings = [mouth_opening(faces[fi][k]) for fi, k in sorted(tr.members.items()) if in_speech[fi]]
        activity.append(mouth_activity(openings))
    by_size = max(range(len(tracks)), key=lambda i: (tracks[i].score, -i))
    most_present = max(len(tr.members) for tr in tracks)
    rivals = [i for i, tr in enumerate(tracks) if len(tr.members) >= rule.min_presence * most_present]
    if len(rivals) < 2:
        return tracks[by_size].members, activity
    ranked = sorted(rivals, key=lambda i: -activity[i])
    best, second = activity[ranked[0]], activity[ranked[1]]
    if best >= rule.min_activity and best >= rule.margin * second:
        return tracks[ranked[0]].members, activity
    return tracks[by_size].members, activity
