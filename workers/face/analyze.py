"""Per-utterance facial analysis (Emotion-Qwen FEC): frames in, key frames of the speaker's face out.

Pure computation, no bus: the ``fec`` stage, the benchmark and the tests all call
:meth:`FaceAnalyzer.analyze` with decoded frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from workers.face.expression import ExpressionModel
from workers.face.image import Image, encode_jpeg, face_crop, masked_crop, normalize
from workers.face.landmarks import Face, FaceLandmarks
from workers.face.select import key_frame_scores, speaker_track, top_k_in_time_order


@dataclass(frozen=True, slots=True)
class AnalyzeOptions:
    top_k: int = 4
    """Key frames kept per utterance."""
    mask_background: bool = True
    """Black out everything but the face oval in the key-frame crops."""
    max_side: int = 640
    """Frames are analysed at most this large (4K inputs are downscaled first)."""
    crop_size: int = 224
    """Side of the square key-frame crop (what a VLM sees)."""
    change_weight: float = 0.5
    """Weight of expression change vs confidence in the key-frame score."""
    jpeg_quality: int = 90


@dataclass(slots=True)
class KeyFrame:
    """One chosen frame of the speaker's face."""

    t: float
    face: Face
    expression: np.ndarray
    """Probabilities over schema.EMOTIONS."""
    score: float
    crop_jpeg: bytes
    box: tuple[float, float, float, float]
    """Face box in the source frame's pixels (before the analysis downscale)."""


@dataclass(slots=True)
class Analysis:
    key_frames: list[KeyFrame] = field(default_factory=list)
    """In time order."""
    frames_seen: int = 0
    frames_bad: int = 0
    """Undecodable or unusable frames (corrupt JPEG, 1x1, wrong shape)."""
    frames_with_face: int = 0
    faces_max: int = 0
    """Most faces seen in one frame (several people in the picture)."""

    @property
    def face_found(self) -> bool:
        return bool(self.key_frames)


class FaceAnalyzer:
    """Landmarks + expression per frame, speaker-face selection, top-k key frames with masked crops."""

    def __init__(
        self, landmarks: FaceLandmarks, expression: ExpressionModel, options: AnalyzeOptions | None = None
    ) -> None:
        self.landmarks = landmarks
        self.expression = expression
        self.options = options or AnalyzeOptions()

    def analyze(self, frames: Sequence[tuple[float, np.ndarray | None]]) -> Analysis:
        """``frames`` = (media time, image or None for an undecodable frame), in any order."""
        out = Analysis(frames_seen=len(frames))
        images: list[tuple[float, Image, float]] = []
        for t, raw in sorted(frames, key=lambda f: f[0]):
            img = normalize(raw, self.options.max_side)
            if img is None or raw is None:
                out.frames_bad += 1
                continue
            images.append((t, img, raw.shape[1] / img.shape[1]))
        faces: list[list[Face]] = []
        for _, img, _ in images:
            found = self.landmarks.detect(img)
            faces.append(found)
            out.faces_max = max(out.faces_max, len(found))
        out.frames_with_face = sum(1 for f in faces if f)
        chosen = speaker_track([[f.box for f in fr] for fr in faces])
        order = sorted(chosen)
        if not order:
            return out
        probs = np.stack(
            [self.expression.probs(face_crop(images[i][1], faces[i][chosen[i]])) for i in order]
        ).astype(np.float32)
        scores = key_frame_scores(probs, self.options.change_weight)
        for j in top_k_in_time_order(scores, self.options.top_k):
            i = order[j]
            t, img, scale = images[i]
            face = faces[i][chosen[i]]
            crop = (
                masked_crop(img, face, size=self.options.crop_size)
                if self.options.mask_background
                else face_crop(img, face, margin=0.15)
            )
            x, y, w, h = face.box
            out.key_frames.append(
                KeyFrame(
                    t=t,
                    face=face,
                    expression=probs[j],
                    score=float(scores[j]),
                    crop_jpeg=encode_jpeg(crop, self.options.jpeg_quality),
                    box=(x * scale, y * scale, w * scale, h * scale),
                )
            )
        return out
