"""Which face is the speaker's, and which frames are key frames.

Speaker-face rule (several faces in the participant's video, e.g. people behind the speaker or a
poster on the wall): faces are linked across the utterance's frames into tracks (a face joins the
track whose last box it overlaps most, IoU >= ``link_iou``); each track's score is the sum of its face
areas over all frames, so it rewards being both *large* and *consistently present*. The speaker is the
track with the highest score (ties: the earlier track). A face that is large in one frame but absent
in the others loses to a face present throughout.

Key frames (Emotion-Qwen FEC): each speaker frame scores ``confidence + change_weight * change``, where
confidence is the expression model's top probability and change the total-variation distance of its
expression vector from the previous speaker frame. The ``top_k`` best are kept, in time order (near
ties are spread over the utterance; see :func:`top_k_in_time_order`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    members: dict[int, int]
    """frame index -> face index within that frame."""
    last: Box
    score: float = 0.0


def speaker_track(boxes: Sequence[Sequence[Box]], link_iou: float = 0.3) -> dict[int, int]:
    """For per-frame face boxes, the speaker's face per frame: {frame index: face index}."""
    tracks = link_tracks(boxes, link_iou)
    if not tracks:
        return {}
    winner = max(range(len(tracks)), key=lambda i: (tracks[i].score, -i))
    return tracks[winner].members


def link_tracks(boxes: Sequence[Sequence[Box]], link_iou: float = 0.3) -> list[Track]:
    """Faces linked across frames into tracks (in order of first appearance), each scored by its area sum."""
    tracks: list[Track] = []
    for fi, frame in enumerate(boxes):
        taken: set[int] = set()
        # Larger faces pick their track first, so a big face is never stolen by a small neighbour.
        for face_i in sorted(range(len(frame)), key=lambda i: -frame[i][2] * frame[i][3]):
            box = frame[face_i]
            best, best_iou = -1, link_iou
            for ti, tr in enumerate(tracks):
                if ti in taken or fi in tr.members:
                    continue
                o = iou(tr.last, box)
                if o >= best_iou:
                    best, best_iou = ti, o
            if best < 0:
                tracks.append(Track(members={}, last=box))
                best = len(tracks) - 1
            tr = tracks[best]
            tr.members[fi] = face_i
            tr.last = box
            tr.score += box[2] * box[3]
            taken.add(best)
    return tracks


def key_frame_scores(probs: npt.NDArray[np.float32], change_weight: float = 0.5) -> npt.NDArray[np.float32]:
    """Score of each row of [n, 7] expression probabilities (rows in time order)."""
    if len(probs) == 0:
        return np.zeros(0, dtype=np.float32)
    conf = probs.max(axis=1)
    change = np.zeros(len(probs), dtype=np.float32)
    change[1:] = 0.5 * np.abs(np.diff(probs, axis=0)).sum(axis=1)
    return (conf + change_weight * change).astype(np.float32)


def top_k_in_time_order(scores: npt.NDArray[np.float32], k: int, spread: float = 0.05) -> list[int]:
    """Indices of the ``k`` best frames, returned sorted by time.

    Picked greedily: each pick maximises ``score + spread * distance``, where distance is the gap (as a
    fraction of the utterance) to the nearest frame already picked. Clear score differences win; near
    ties (a still face) are spread over the utterance instead of bunching at its start, so the
    describer still sees the beginning and the end. Earlier frames win exact ties.
    """
    n = len(scores)
    if k <= 0 or n == 0:
        return []
    picked: list[int] = []
    for _ in range(min(k, n)):
        best, best_value = -1, -np.inf
        for i in range(n):
            if i in picked:
                continue
            gap = min((abs(i - j) for j in picked), default=0) / max(1, n - 1)
            value = float(scores[i]) + spread * gap
            if value > best_value:
                best, best_value = i, value
        picked.append(best)
    return sorted(picked)
