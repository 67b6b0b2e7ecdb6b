"""How much one frame's expression reading can be trusted: detection, size, pose, sharpness.

Each factor is in [0, 1] and the frame's weight is their product (one bad factor is enough to make a
reading worthless: a sharp, frontal, but 20-pixel face says little, and so does a large blurred one).

* detection: BlazeFace's score for a face in the face's own square crop (the short-range detector
  that ships inside MediaPipe's ``face_landmarker.task``), divided by ``FULL_DETECTION`` because the
  detector's scores top out near 0.93 on clear frontal faces.
* size: the face's shorter side in source pixels, 0 at ``MIN_FACE_PX`` and 1 from ``FULL_FACE_PX`` on
  (the FER model reads a 64x64 crop; below that its input is upsampled guesswork).
* frontal: ``1 - (yaw / MAX_YAW)^2`` times ``1 - (pitch / MAX_PITCH)^2`` (clipped at 0); FER was
  trained on near-frontal faces and a profile hides half the mouth.
* sharpness: variance of the Laplacian of the grayscale face at the model's 64x64 input size,
  mapped by ``v / (v + SHARP_HALF)`` (motion blur and defocus flatten the features FER reads).
"""

from __future__ import annotations

import threading
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

from emostream.inference.native_log import quiet_native_stderr

if TYPE_CHECKING:
    from emostream.config import Settings

MIN_FACE_PX, FULL_FACE_PX = 24.0, 64.0
MAX_YAW, MAX_PITCH = 60.0, 45.0
SHARP_HALF = 60.0
"""Laplacian variance (64x64 gray) at which sharpness counts 0.5; webcam faces read 150-600."""
FULL_DETECTION = 0.9


@dataclass(frozen=True, slots=True)
class Quality:
    detection: float = 1.0
    size: float = 1.0
    frontal: float = 1.0
    sharpness: float = 1.0

    @property
    def weight(self) -> float:
        return self.detection * self.size * self.frontal * self.sharpness


def size_quality(short_side_px: float) -> float:
    return float(np.clip((short_side_px - MIN_FACE_PX) / (FULL_FACE_PX - MIN_FACE_PX), 0.0, 1.0))


def frontal_quality(yaw: float, pitch: float) -> float:
    y = max(0.0, 1.0 - (yaw / MAX_YAW) ** 2)
    p = max(0.0, 1.0 - (pitch / MAX_PITCH) ** 2)
    return float(y * p)


def laplacian_variance(rgb: npt.NDArray[np.uint8]) -> float:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(small, cv2.CV_64F).var())


def sharpness_quality(rgb: npt.NDArray[np.uint8]) -> float:
    v = laplacian_variance(rgb)
    return v / (v + SHARP_HALF)


def detection_quality(score: float) -> float:
    return float(np.clip(score / FULL_DETECTION, 0.0, 1.0))


def frame_quality(
    crop: npt.NDArray[np.uint8],
    box_source_px: tuple[float, float, float, float],
    head_pose: tuple[float, float, float],
    detection_score: float | None,
) -> Quality:
    """Quality of one face reading (``crop`` is the expression model's input, ``box`` in source pixels)."""
    _, _, w, h = box_source_px
    yaw, pitch, _ = head_pose
    return Quality(
        detection=1.0 if detection_score is None else detection_quality(detection_score),
        size=size_quality(min(w, h)),
        frontal=frontal_quality(yaw, pitch),
        sharpness=sharpness_quality(crop) if crop.size else 0.0,
    )


def _close(det: object) -> None:
    try:
        det.close()  # type: ignore[attr-defined]
    except (RuntimeError, TypeError):  # at interpreter exit MediaPipe's dispatcher is already gone
        det._handle = None  # type: ignore[attr-defined]


class FaceScorer:
    """BlazeFace (from the landmarker bundle) scoring "is there a face in this crop", thread-safe."""

    def __init__(self, task_bundle: Path) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        with zipfile.ZipFile(task_bundle) as z:
            model = z.read("face_detector.tflite")
        opts = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_buffer=model),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=0.05,
        )
        with quiet_native_stderr():
            self._det = vision.FaceDetector.create_from_options(opts)
            self._lock = threading.Lock()
            self.score(np.zeros((64, 64, 3), np.uint8))
        self._finalizer = weakref.finalize(self, _close, self._det)

    @classmethod
    def from_store(cls, settings: Settings) -> FaceScorer:
        from emostream.store import load

        return cls(load("face-landmarker", settings) / "face_landmarker.task")

    def score(self, rgb_crop: npt.NDArray[np.uint8]) -> float:
        """Best face-detection score in the crop (0 when the detector sees none)."""
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb_crop))
        with self._lock:
            res = self._det.detect(image)
        return max((float(d.categories[0].score) for d in res.detections if d.categories), default=0.0)

    def close(self) -> None:
        self._finalizer()
