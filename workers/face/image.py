"""Frame decoding, normalisation, face crops and background masking.

Frames come from other machines and other producers, so every input is distrusted: corrupt JPEGs,
1x1 images, grayscale or RGBA frames and 4K frames are turned into a bounded RGB array or rejected
(``None``), never an exception.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from emostream.ingest.frames import downscale, to_rgb
from emostream.workers.face.landmarks import Face

Image = npt.NDArray[np.uint8]

MIN_SIDE = 32
"""Frames whose shorter side is below this cannot hold an analysable face: rejected as bad."""


def decode_jpeg(data: bytes | None) -> Image | None:
    """JPEG/PNG bytes -> RGB uint8 array, or None when the bytes are not a decodable image."""
    if not data:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def normalize(frame: npt.NDArray[Any] | None, max_side: int = 640) -> Image | None:
    """Any HxW, HxWx1, HxWx3 (RGB) or HxWx4 array -> RGB uint8 with its longer side <= ``max_side``.

    Returns None for frames too small to analyse (< MIN_SIDE, also after downscaling) or of an
    unusable shape/dtype.
    """
    img = to_rgb(frame) if frame is not None else None
    if img is None or min(img.shape[:2]) < 2:
        return None
    out = downscale(img, max_side)
    if min(out.shape[:2]) < MIN_SIDE:  # tiny, or a sliver once downscaled (e.g. 4000x100)
        return None
    return out


def square_box(face: Face, shape: tuple[int, ...], margin: float) -> tuple[int, int, int, int]:
    """Square (x0, y0, x1, y1) around the face, grown by ``margin`` of its size, clipped to the image."""
    x, y, w, h = face.box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(shape[1], cx + side / 2)), int(min(shape[0], cy + side / 2))
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def face_crop(rgb: Image, face: Face, margin: float = 0.1) -> Image:
    """Unmasked square crop around the face (input of the expression model)."""
    x0, y0, x1, y1 = square_box(face, rgb.shape, margin)
    return rgb[y0:y1, x0:x1]


def face_mask(shape: tuple[int, ...], face: Face) -> npt.NDArray[np.bool_]:
    """True inside the face oval (MediaPipe's outline), False elsewhere."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [cv2.convexHull(face.outline)], 1)
    return mask.astype(bool)


def masked_crop(rgb: Image, face: Face, margin: float = 0.15, size: int = 224) -> Image:
    """Spatial masking (Emotion-Qwen FEC): background black, only the face oval kept, square ``size``."""
    masked = np.zeros_like(rgb)
    keep = face_mask(rgb.shape, face)
    masked[keep] = rgb[keep]
    x0, y0, x1, y1 = square_box(face, rgb.shape, margin)
    crop = masked[y0:y1, x0:x1]
    h, w = crop.shape[:2]
    if h != w:  # clipped at the image border: pad with black instead of stretching the face
        side = max(h, w)
        square = np.zeros((side, side, 3), np.uint8)
        square[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = crop
        crop = square
    return np.asarray(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), dtype=np.uint8)


def encode_jpeg(rgb: Image, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
