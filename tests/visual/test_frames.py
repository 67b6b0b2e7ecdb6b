"""Frame ring buffer: bounded keep rate, window sampling, input kinds, bad input, blobs on a real bus."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emostream.bus.memory import MemoryBus
from emostream.config import FramesSettings
from emostream.ingest.frames import FrameBuffer, FrameBuffers, to_rgb
from emostream.ingest.participant import store_frames
from emostream.workers.face.image import decode_jpeg

from .conftest import CLIP_FPS


def feed(buf: FrameBuffer, img: np.ndarray, seconds: float, fps: float = 30.0, t0: float = 0.0) -> None:
    for i in range(int(seconds * fps)):
        buf.push(img, t0 + i / fps)


def test_keep_rate_and_ring_are_bounded() -> None:
    buf = FrameBuffer(FramesSettings(fps=3, buffer_s=5))
    img = np.zeros((120, 160, 3), np.uint8)
    feed(buf, img, seconds=12)
    assert buf.stats.received == 360
    assert buf.stats.skipped > 250  # 30 fps in, ~7 fps kept
    oldest, newest = buf.span
    assert newest - oldest <= 5.0 + 1e-6
    assert len(buf) <= 5 * 7 + 2


def test_sample_utterance_window_at_config_fps() -> None:
    buf = FrameBuffer(FramesSettings(fps=3))
    feed(buf, np.zeros((48, 64, 3), np.uint8), seconds=10)
    frames = buf.sample(2.0, 5.6)  # a 3.6 s utterance
    times = [t for t, _ in frames]
    assert 10 <= len(frames) <= 11
    assert times == sorted(times) and len(set(times)) == len(times)
    assert 2.0 - 1 / 6 <= times[0] and times[-1] <= 5.6 + 1 / 6
    assert buf.sample(5.0, 4.0) == []
    assert FrameBuffer().sample(0, 1) == []


def test_color_orders_and_channel_counts() -> None:
    rgb = np.zeros((40, 40, 3), np.uint8)
    rgb[..., 0] = 200  # red
    assert to_rgb(rgb)[0, 0, 0] == 200
    assert to_rgb(rgb[..., ::-1], bgr=True)[0, 0, 0] == 200  # an OpenCV (BGR) red frame
    gray = to_rgb(np.full((40, 40), 77, np.uint8))
    assert gray is not None and gray.shape == (40, 40, 3) and int(gray[0, 0, 1]) == 77
    rgba = to_rgb(np.full((40, 40, 4), 9, np.uint8))
    assert rgba is not None and rgba.shape == (40, 40, 3)
    floats = to_rgb(np.full((40, 40, 3), 0.5, np.float32))
    assert floats is not None and int(floats[0, 0, 0]) == 127


def test_bad_input_is_counted_not_raised() -> None:
    buf = FrameBuffer()
    ok = np.zeros((60, 80, 3), np.uint8)
    assert buf.push(ok, 1.0)
    assert not buf.push("not a frame", 2.0)
    assert not buf.push(np.zeros((1, 1, 3), np.uint8), 3.0)
    assert not buf.push(np.zeros((10, 10, 5), np.uint8), 4.0)
    assert not buf.push(ok)  # numpy frame without a timestamp
    assert not buf.push(ok, 0.5)  # time going backwards
    assert not buf.push(ok, float("nan"))
    assert buf.stats.bad == 6 and buf.stats.kept == 1


def test_4k_frames_are_downscaled_on_arrival() -> None:
    buf = FrameBuffer(FramesSettings(max_side=640))
    buf.push(np.zeros((2160, 3840, 3), np.uint8), 0.0)
    ((_, img),) = buf.sample(0.0, 0.2)
    assert max(img.shape[:2]) == 640 and img.shape[0] == 360


def test_pyav_video_frames_from_a_clip(clip_mp4: Path) -> None:
    import av

    buf = FrameBuffer(FramesSettings(fps=3))
    with av.open(str(clip_mp4)) as container:
        for frame in container.decode(video=0):
            buf.push(frame)  # media time from the frame's own pts
    assert buf.stats.bad == 0
    assert buf.stats.received == int(4.0 * CLIP_FPS)
    frames = buf.sample(0.0, 3.6)
    assert 10 <= len(frames) <= 11
    assert frames[0][1].shape == (480, 640, 3)


async def test_publish_puts_jpeg_blobs_with_refs(astronaut: np.ndarray) -> None:
    bus = MemoryBus()
    buffers = FrameBuffers(FramesSettings(fps=3, max_side=320, jpeg_quality=80))
    bgr = np.ascontiguousarray(astronaut[:, :, ::-1])
    for i in range(30):
        buffers.push("alice", bgr, i / 10, bgr=True)
    refs = await store_frames(bus, "room/alice/1", buffers.get("alice").encode(0.0, 2.0), ttl_s=60)
    assert len(refs) == 6 and [r.t for r in refs] == sorted(r.t for r in refs)
    img = decode_jpeg(await bus.get_blob(refs[0].blob))
    assert img is not None and img.shape == (320, 320, 3)
    # colours survive the BGR input: the astronaut's red/white flag region stays reddish on the left
    ref = cv2.resize(astronaut, (320, 320), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(img.astype(int) - ref).mean() < 8
    assert "alice" in buffers and "bob" not in buffers
    buffers.drop("alice")
    assert "alice" not in buffers
    await bus.close()
