"""A two-person clip built from real portraits: one listens, the other talks (its mouth animated).

The talker's jaw is opened and closed by a smooth vertical displacement of the lower face (MediaPipe
landmarks of the still locate the lips and chin) with a dark mouth interior drawn into the gap, at a
syllable-like 3 Hz. The listener is placed larger, i.e. closer to the camera, so the old
largest-track rule would pick the wrong face.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from emostream.workers.face.landmarks import FaceLandmarks

UPPER_LIP, LOWER_LIP, MOUTH_LEFT, MOUTH_RIGHT, CHIN = 13, 14, 61, 291, 152


def open_mouth(face: np.ndarray, points: np.ndarray, opening_px: float) -> np.ndarray:
    """``face`` (RGB) with the jaw dropped by ``opening_px`` pixels (0 returns it unchanged)."""
    if opening_px <= 0.5:
        return face.copy()
    h, w = face.shape[:2]
    y_mid = float(points[UPPER_LIP, 1] + points[LOWER_LIP, 1]) / 2
    x_left, x_right = float(points[MOUTH_LEFT, 0]), float(points[MOUTH_RIGHT, 0])
    cx, half = (x_left + x_right) / 2, (x_right - x_left) / 2
    chin = float(points[CHIN, 1])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    across = np.exp(-(((xs - cx) / (1.6 * half)) ** 2) * 2)
    below = np.clip((ys - y_mid) / max(1.0, opening_px), 0.0, 1.0)
    fade = np.clip(1.0 - (ys - chin) / max(1.0, 0.6 * (chin - y_mid)), 0.0, 1.0)
    shift = opening_px * across * below * fade
    out = cv2.remap(face, xs, ys - shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    centre = (int(round(cx)), int(round(y_mid + opening_px / 2)))
    axes = (max(1, int(half * 0.8)), max(1, int(opening_px / 2)))
    cv2.ellipse(out, centre, axes, 0, 0, 360, (40, 10, 15), -1, cv2.LINE_AA)
    return out


def framed(landmarker: FaceLandmarks, portrait: np.ndarray, face_px: int, side: int) -> np.ndarray:
    """A ``side`` x ``side`` window of ``portrait`` scaled so the face is ``face_px`` tall, centred on it."""
    faces = landmarker.detect(portrait)
    assert faces, "no face found in the portrait"
    _, _, _, h = faces[0].box
    scale = face_px / h
    img = cv2.resize(portrait, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cx, cy = (c * scale for c in faces[0].centre)
    pad = side
    img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(70, 70, 70))
    x0, y0 = int(cx + pad - side / 2), int(cy + pad - side / 2)
    return np.ascontiguousarray(img[y0 : y0 + side, x0 : x0 + side])


def two_person_clip(
    landmarker: FaceLandmarks,
    listener: np.ndarray,
    talker: np.ndarray,
    seconds: float = 2.0,
    fps: int = 10,
) -> tuple[list[tuple[float, np.ndarray]], tuple[float, float]]:
    """Frames (t, RGB 640x360) with the listener on the left (face 170 px tall) and the talker on the
    right (face 110 px), and the talker's face centre in frame pixels."""
    listener = framed(landmarker, listener, 170, 300)
    talker = framed(landmarker, talker, 110, 200)
    faces = landmarker.detect(talker)
    assert faces, "no face found in the framed talker"
    points = faces[0].landmarks
    lip_span = float(points[MOUTH_RIGHT, 0] - points[MOUTH_LEFT, 0])
    frames = []
    for i in range(int(seconds * fps)):
        t = i / fps
        opening = 0.45 * lip_span * abs(math.sin(math.pi * 3.0 * t))
        canvas = np.full((360, 640, 3), 70, np.uint8)
        canvas[30:330, 10:310] = listener
        canvas[80:280, 400:600] = open_mouth(talker, points, opening)
        frames.append((t, canvas))
    return frames, (500.0, 180.0)
