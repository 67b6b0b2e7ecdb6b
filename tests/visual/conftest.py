"""Visual-path fixtures: real models from the store (created once per session), real test images and a
generated clip built from them.

The store is the configured one (``EMOSTREAM_HOME``, default ~/.cache/emostream); `make models-test`
pulls face-landmarker, fer-7class and all-MiniLM-L6-v2-onnx. A missing model fails with the pull command.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from emostream.config import Settings, load_settings
from emostream.inference.encoder import SentenceEncoder
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.expression import create_expression_model
from emostream.workers.face.landmarks import FaceLandmarks

CLIP_FPS = 15
CLIP_SECONDS = 4.0


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(env={k: v for k, v in os.environ.items() if k == "EMOSTREAM_HOME"})


@pytest.fixture(scope="session")
def landmarker(settings: Settings) -> Iterator[FaceLandmarks]:
    with FaceLandmarks.from_store(max_faces=settings.fec.max_faces, settings=settings) as lm:
        yield lm


@pytest.fixture(scope="session")
def analyzer(settings: Settings, landmarker: FaceLandmarks) -> FaceAnalyzer:
    from emostream.workers.fec import analyze_options

    return FaceAnalyzer(landmarker, create_expression_model("litert", settings), analyze_options(settings))


@pytest.fixture(scope="session")
def encoder(settings: Settings) -> SentenceEncoder:
    return SentenceEncoder.from_store(settings.vlm.encoder, settings)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """skimage's astronaut (RGB 512x512): a smiling, frontal face."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def hopper() -> np.ndarray:
    """matplotlib's Grace Hopper portrait (RGB)."""
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    bgr = cv2.imread(str(path))
    assert bgr is not None, f"cannot read {path}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


def place(
    canvas_hw: tuple[int, int], image: np.ndarray, angle: float = 0.0, scale: float = 1.0
) -> np.ndarray:
    """``image`` rotated by ``angle`` degrees (counter-clockwise) and scaled, centred on a grey canvas."""
    h, w = canvas_hw
    ih, iw = image.shape[:2]
    m = cv2.getRotationMatrix2D((iw / 2, ih / 2), angle, scale)
    m[0, 2] += w / 2 - iw / 2
    m[1, 2] += h / 2 - ih / 2
    return np.asarray(cv2.warpAffine(image, m, (w, h), borderValue=(90, 90, 90)), dtype=np.uint8)


def clip_frames(astronaut: np.ndarray, hopper: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """4 s at 15 fps, 640x480: the astronaut's head tilting from 0 to 14 degrees over the first 3 s,
    then one second of Grace Hopper (a different face)."""
    frames = []
    for i in range(int(CLIP_SECONDS * CLIP_FPS)):
        t = i / CLIP_FPS
        if t < 3.0:
            img = place((480, 640), astronaut, angle=14.0 * t / 3.0, scale=0.9)
        else:
            img = place((480, 640), hopper, scale=0.8)
        frames.append((t, img))
    return frames


@pytest.fixture(scope="session")
def clip(astronaut: np.ndarray, hopper: np.ndarray) -> list[tuple[float, np.ndarray]]:
    return clip_frames(astronaut, hopper)


@pytest.fixture(scope="session")
def clip_mp4(tmp_path_factory: pytest.TempPathFactory, clip: list[tuple[float, np.ndarray]]) -> Path:
    """The clip written as an H.264 mp4 with PyAV (decoded back into VideoFrames by the tests)."""
    import av

    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        stream.codec_context.time_base = Fraction(1, CLIP_FPS)
        for i, (_, img) in enumerate(clip):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    """RGB (or gray) array -> JPEG bytes."""
    arr = img[:, :, ::-1] if img.ndim == 3 else img
    ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def grid_of_faces(face: np.ndarray, n: int = 20, cols: int = 5, cell: int = 128) -> np.ndarray:
    """``n`` copies of a face in a grid (several people in the picture)."""
    rows = math.ceil(n / cols)
    canvas = np.full((rows * cell, cols * cell, 3), 60, np.uint8)
    small = cv2.resize(face, (cell - 8, cell - 8), interpolation=cv2.INTER_AREA)
    for k in range(n):
        r, c = divmod(k, cols)
        canvas[r * cell + 4 : r * cell + cell - 4, c * cell + 4 : c * cell + cell - 4] = small
    return canvas


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised Qwen2.5-VL checkpoint in a temp dir (built once per session)."""
    from .tiny_qwen import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))
