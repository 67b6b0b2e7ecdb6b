"""The call ingest keeps serve's event loop free: WebRTC's s16 stereo frames are normalized in one pass
(the same samples as the general path), the normalizer and VAD run in the ingest thread, and the loop
lag monitor sees a blocked loop (what `bench call` reports as the server's loop lag)."""

from __future__ import annotations

import asyncio
import threading
import time

import av
import numpy as np
from prometheus_client import REGISTRY

from emostream.bench.call_media import RATE, load_prompt
from emostream.bus import open_bus
from emostream.config import load_settings
from emostream.ingest.audio import AudioNormalizer
from emostream.ingest.participant import SpeechIngest
from emostream.runtime import looplag
from emostream.schema import Utterance


def _stereo_frames(seconds: float = 1.0) -> tuple[list[av.AudioFrame], np.ndarray]:
    """20 ms interleaved s16 stereo frames with different left/right (as Opus decodes) + the samples."""
    rng = np.random.default_rng(7)
    pcm = (rng.standard_normal((int(seconds * RATE), 2)) * 6000).clip(-32768, 32767).astype(np.int16)
    n = RATE // 50
    frames = []
    for i in range(0, pcm.shape[0] - n + 1, n):
        f = av.AudioFrame.from_ndarray(pcm[i : i + n].reshape(1, -1), format="s16", layout="stereo")
        f.sample_rate = RATE
        frames.append(f)
    return frames, pcm


def test_s16_stereo_fast_path_equals_float_channel_mean() -> None:
    frames, pcm = _stereo_frames()
    fast = AudioNormalizer()
    got = np.concatenate(
        [fast.push_many(frames[i : i + 7]) for i in range(0, len(frames), 7)] + [fast.flush()]
    )
    ref_norm = AudioNormalizer()  # the general path: float (samples, channels) arrays, one per frame
    floats = pcm.astype(np.float32) / 32768.0
    n = RATE // 50
    ref = np.concatenate(
        [ref_norm.push(floats[i : i + n], RATE) for i in range(0, len(frames) * n, n)] + [ref_norm.flush()]
    )
    assert got.shape == ref.shape and got.dtype == np.float32
    assert float(np.abs(got - ref).max()) < 1e-6
    assert fast.stats.frames == len(frames) and fast.stats.clipped_samples == 0


async def test_vad_runs_in_the_ingest_thread_not_the_loop() -> None:
    settings = load_settings(env={})
    bus = open_bus("memory://", settings.bus)
    ingest = SpeechIngest(bus, settings, "r", "alice")
    threads: set[str] = set()
    push = ingest.segmenter.push

    def spy(audio: np.ndarray) -> list:  # type: ignore[type-arg]
        threads.add(threading.current_thread().name)
        return push(audio)

    ingest.segmenter.push = spy  # type: ignore[method-assign]
    prompt = load_prompt("agent-pass")
    audio = np.concatenate([np.zeros(RATE // 2, np.int16), prompt.audio, np.zeros(RATE, np.int16)])
    n = RATE // 50
    msgs = []
    for i in range(0, audio.size - n + 1, n):
        f = av.AudioFrame.from_ndarray(audio[i : i + n].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate = RATE
        msgs += await ingest.push_many([f])
    ingest.close()
    await bus.close()
    assert threads and all(t.startswith("ingest") for t in threads), threads
    assert threading.main_thread().name not in threads
    assert [type(m) for m in msgs if isinstance(m, Utterance)] == [Utterance]


async def test_loop_lag_monitor_sees_a_blocked_loop() -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("emostream_loop_lag_seconds_count") or 0.0

    stop = asyncio.Event()
    before = count()
    task = asyncio.create_task(looplag.monitor(stop, every_s=0.02))
    await asyncio.sleep(0.1)
    time.sleep(0.3)  # noqa: ASYNC251 - the point: something holds the loop
    await asyncio.sleep(0.1)
    stop.set()
    await task
    assert count() - before >= 3
    assert (REGISTRY.get_sample_value("emostream_loop_lag_max_seconds") or 0.0) >= 0.25
    over = REGISTRY.get_sample_value("emostream_loop_lag_seconds_bucket", {"le": "0.1"}) or 0.0
    assert count() - over >= 1  # that one wake-up was counted as over 100 ms
