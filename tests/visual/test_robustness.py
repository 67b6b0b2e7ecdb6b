"""Hostile frames never raise: arbitrary shapes, dtypes and bytes are normalised or rejected."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from emostream.ingest.frames import FrameBuffer
from emostream.workers.face.analyze import FaceAnalyzer
from emostream.workers.face.image import MIN_SIDE, decode_jpeg, normalize

shapes = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=70),
    hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=70),
)
dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_])


@settings(max_examples=150, deadline=None)
@given(arr=hnp.arrays(dtype=dtypes, shape=shapes))
def test_normalize_returns_rgb_or_none(arr: np.ndarray) -> None:
    out = normalize(arr, max_side=64)
    if out is not None:
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert MIN_SIDE <= min(out.shape[:2]) and max(out.shape[:2]) <= 64


@settings(max_examples=150, deadline=None)
@given(arr=hnp.arrays(dtype=dtypes, shape=shapes), t=st.floats(allow_nan=True, allow_infinity=True))
def test_frame_buffer_push_never_raises(arr: np.ndarray, t: float) -> None:
    buf = FrameBuffer()
    buf.push(arr, t)
    assert buf.stats.received == 1 and buf.stats.kept + buf.stats.bad + buf.stats.skipped == 1


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300))
def test_decode_jpeg_garbage(data: bytes) -> None:
    out = decode_jpeg(b"\xff\xd8\xff" + data)
    assert out is None or out.dtype == np.uint8


def test_extreme_aspect_ratios_are_rejected_not_crashed(analyzer: FaceAnalyzer) -> None:
    frames = [
        (0.0, np.zeros((100, 4000, 3), np.uint8)),  # a sliver once downscaled to 640 wide
        (0.3, np.zeros((4000, 40, 3), np.uint8)),
        (0.6, np.zeros((64, 64, 3), np.uint8)),
    ]
    result = analyzer.analyze(frames)
    assert result.frames_bad == 2 and result.frames_seen == 3 and not result.face_found
