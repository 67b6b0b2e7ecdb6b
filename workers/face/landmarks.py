"""MediaPipe FaceLandmarker (Tasks API): faces, 478 landmarks, 52 blendshapes and head pose per frame.

One landmarker per process (loading it costs ~100 ms); calls are serialised with a lock because a
Tasks-API landmarker is not thread-safe. Close it with ``with`` or ``close()``; one left open is closed
at exit without MediaPipe's shutdown traceback.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from emostream.inference.native_log import quiet_native_stderr

if TYPE_CHECKING:
    from emostream.config import Settings

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
    176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
"""Indices of the 478-point mesh on the face outline (MediaPipe FACEMESH_FACE_OVAL, in order)."""


@dataclass(slots=True)
class Face:
    """One detected face in pixel coordinates of the analysed image."""

    landmarks: npt.NDArray[np.float32]
    """[478, 3]: x, y in pixels, z in (roughly) pixel units relative to the face centre."""
    blendshapes: dict[str, float] = field(default_factory=dict)
    head_pose: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """(yaw, pitch, roll) degrees: yaw > 0 turns toward the image's right, pitch > 0 tilts the chin
    down, roll > 0 tilts the top of the head toward the image's left."""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Landmark bounding box (x, y, w, h) in pixels."""
        xy = self.landmarks[:, :2]
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        return (float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1]))

    @property
    def area(self) -> float:
        _, _, w, h = self.box
        return w * h

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return (x + w / 2, y + h / 2)

    @property
    def outline(self) -> npt.NDArray[np.int32]:
        """Face-oval polygon [36, 2] in integer pixels (for masking)."""
        return np.round(self.landmarks[list(FACE_OVAL), :2]).astype(np.int32)


def head_pose(matrix: npt.NDArray[np.float64]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from MediaPipe's 4x4 facial transformation matrix (R = Rz Ry Rx)."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    yaw = math.degrees(math.asin(float(np.clip(-r[2, 0], -1.0, 1.0))))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return (yaw, pitch, roll)


def _close_landmarker(lm: object) -> None:
    """Close a landmarker, also at interpreter exit, where MediaPipe's own close fails with a traceback
    (its call executor is already shut down); the OS frees the native side then, so forget the handle."""
    try:
        lm.close()  # type: ignore[attr-defined]
    except RuntimeError:
        lm._handle = None  # type: ignore[attr-defined]


class FaceLandmarks:
    """Wrapper around a MediaPipe FaceLandmarker in IMAGE mode (every frame is independent)."""

    def __init__(self, model: Path, max_faces: int = 4, min_confidence: float = 0.5) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        opts = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with quiet_native_stderr():  # load + first run print absl/TFLite chatter on fd 2
            self._lm = vision.FaceLandmarker.create_from_options(opts)
            self._lock = threading.Lock()
            self.detect(np.zeros((64, 64, 3), np.uint8))
        self._finalizer = weakref.finalize(self, _close_landmarker, self._lm)
        self.max_faces = max_faces

    @classmethod
    def from_store(cls, settings: Settings, max_faces: int = 4) -> FaceLandmarks:
        from emostream.store import load

        root = load("face-landmarker", settings)
        return cls(root / "face_landmarker.task", max_faces=max_faces)

    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Face]:
        """Faces in an RGB uint8 [H, W, 3] image (empty list when none)."""
        import mediapipe as mp

        h, w = rgb.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        with self._lock:
            res = self._lm.detect(image)
        faces: list[Face] = []
        for i, points in enumerate(res.face_landmarks):
            arr = np.asarray([(p.x * w, p.y * h, p.z * w) for p in points], dtype=np.float32)
            shapes = res.face_blendshapes[i] if i < len(res.face_blendshapes) else []
            mats = res.facial_transformation_matrixes
            pose = head_pose(np.asarray(mats[i])) if i < len(mats) else (0.0, 0.0, 0.0)
            faces.append(
                Face(
                    landmarks=arr,
                    blendshapes={c.category_name: float(c.score) for c in shapes if c.category_name},
                    head_pose=pose,
                )
            )
        return faces

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> FaceLandmarks:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
