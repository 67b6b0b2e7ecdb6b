"""Audio normalizer: any input -> 16 kHz mono float32, with its repairs counted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from emostream.errors import UserError
from emostream.ingest.audio import SAMPLE_RATE, AudioNormalizer, iter_file, to_16k_mono


def _peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / x.size


def _tone(hz: float, seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_webrtc_frames_48k_stereo_become_16k_mono_without_clicks() -> None:
    tone = (_tone(440.0, 2.0, 48_000) * 32767).astype(np.int16)
    pcm = np.stack([tone, tone], axis=1).reshape(-1)  # interleaved s16 stereo, as Opus decodes
    frames = []
    for i in range(0, tone.size, 960):  # 20 ms frames
        frame = av.AudioFrame.from_ndarray(pcm[2 * i : 2 * (i + 960)][None, :], format="s16", layout="stereo")
        frame.sample_rate = 48_000
        frames.append(frame)
    norm = AudioNormalizer()
    out = np.concatenate([norm.push(f) for f in frames] + [norm.flush()])
    assert abs(out.size - 2 * SAMPLE_RATE) < 200
    assert out.dtype == np.float32
    assert abs(_peak_hz(out[4000:20000]) - 440.0) < 2.0
    assert abs(float(np.abs(out[4000:20000]).max()) - 0.5) < 0.02
    # frame joins are seamless: no sample-to-sample jump beyond the tone's own slope
    assert float(np.abs(np.diff(out[1000:-1000])).max()) < 0.5 * 2 * np.pi * 440 / SAMPLE_RATE * 1.2


@pytest.mark.parametrize(
    ("array", "rate"),
    [
        ((_tone(300.0, 1.0, 44_100) * 32767).astype(np.int16), 44_100),
        (np.stack([_tone(300.0, 1.0, 8_000)] * 2, axis=1), 8_000),  # (samples, channels)
        (np.stack([_tone(300.0, 1.0, 22_050)] * 2, axis=0), 22_050),  # (channels, samples)
        ((_tone(300.0, 1.0, 32_000) * 2**31 * 0.99).astype(np.int32), 32_000),
    ],
)
def test_numpy_inputs_any_rate_dtype_layout(array: np.ndarray, rate: int) -> None:
    out = to_16k_mono(array, rate)
    assert abs(out.size - SAMPLE_RATE) < 100
    assert abs(_peak_hz(out[2000:14000]) - 300.0) < 3.0
    assert 0.4 < float(np.abs(out[2000:14000]).max()) <= 0.51


def test_repairs_are_counted() -> None:
    x = _tone(200.0, 0.5)
    x[100:110] = np.nan
    x[200] = -np.inf
    x[300:320] = 3.0
    norm = AudioNormalizer()
    out = norm.push(x, SAMPLE_RATE)
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    assert norm.stats.nan_samples == 11 and norm.stats.clipped_samples == 20
    assert norm.push(np.zeros(0, np.float32), SAMPLE_RATE).size == 0
    assert norm.stats.empty_frames == 1


def test_iter_file_decodes_any_container(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "one two three four"], check=True)
    chunks = list(iter_file(wav, chunk_s=0.25))
    assert len(chunks) >= 4 and all(c.dtype == np.float32 for c in chunks)
    with av.open(str(wav)) as c:
        seconds = float(c.duration or 0) / 1e6
    assert abs(sum(c.size for c in chunks) / SAMPLE_RATE - seconds) < 0.05


def test_iter_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        list(iter_file(tmp_path / "missing.wav"))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(UserError) as err:
        list(iter_file(junk))
    assert "\n" not in str(err.value)
