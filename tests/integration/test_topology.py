"""The docker-compose topology as real processes: redis-server + one `emostream worker` per stage.

No docker engine runs on our machines, so this test starts exactly what docker-compose.yml starts:
a password-protected redis-server and the asr, fec, vlm, context and fusion workers as separate
processes. The test process plays the ingest: it segments a spoken espeak-ng sentence with the real
Silero VAD and samples real face frames (skimage's astronaut) into the Utterance, then waits for the
emotion event and the visual description that the workers produce.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis.exceptions import ResponseError
from skimage import data

from emostream import schema
from emostream.bus import open_bus
from emostream.config import BusSettings, load_settings
from emostream.ingest.audio import iter_file
from emostream.ingest.frames import FrameBuffer
from emostream.ingest.participant import SpeechIngest, store_frames
from emostream.runtime.errors import GroupMissing
from emostream.runtime.topology import PIPELINE
from emostream.schema import EmotionEvent, FrameRef, Transcript, VisualDescription
from emostream.testing.harness import start_worker
from emostream.testing.redis_server import free_port, start_redis

STAGES = PIPELINE  # the one stage registry
PASSWORD = "topology-test-secret"
SENTENCE = "I just got the job. This is the best day of my life!"


@pytest.fixture
def secured_redis() -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, "--requirepass", PASSWORD)
    yield f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def speech_wav(tmp_path: Path) -> Path:
    wav = tmp_path / "speech.wav"
    silence = tmp_path / "silence.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), SENTENCE], check=True)
    # Trailing silence, so the VAD sees the end of speech as it would on a live track.
    subprocess.run(["sox", str(wav), str(silence), "pad", "0.3", "1.5"], check=True)
    return silence


def start_workers(url: str) -> list[subprocess.Popen[bytes]]:
    env = {"EMOSTREAM_FUSION_DEADLINE_MS": "1000", "EMOSTREAM_STAGE_LOG_FORMAT": "json"}
    return [start_worker(name, url, f"{name}-1", env=env) for name in STAGES]


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> list[int | None]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(30))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(None)
    return codes


def died(procs: list[subprocess.Popen[bytes]]) -> str:
    for name, p in zip(STAGES, procs, strict=True):
        if p.poll() is not None:
            err = p.stderr.read().decode(errors="replace") if p.stderr else ""
            return f"worker {name} exited {p.returncode}: {err[-1500:]}"
    return ""


async def test_compose_topology_turns_speech_and_face_into_an_event(
    secured_redis: str, speech_wav: Path
) -> None:
    settings = load_settings(env={"EMOSTREAM_BUS_URL": secured_redis})
    bus = open_bus(secured_redis, BusSettings(url=secured_redis))
    for stream in (EmotionEvent.stream, VisualDescription.stream, Transcript.stream):
        await bus.ensure_group(stream, "observer", "0")
    procs = start_workers(secured_redis)
    try:
        # Media is reference-counted per consumer group that exists at publish time, so the workers'
        # groups must exist before the ingest publishes (docs/resilience.md, "Media lifetime").
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert not died(procs), died(procs)
            try:
                for group in ("asr", "fec"):
                    await bus.group_cursor(schema.Utterance.stream, group)
                break
            except (GroupMissing, ResponseError):  # no group yet, or no stream yet
                await asyncio.sleep(0.2)
        frames = FrameBuffer(settings.frames)
        face = data.astronaut()
        for i in range(80):  # 8 s of video at 10 fps covers the utterance window
            frames.push(face, t=i / 10)

        async def frame_source(key: str, start: float, end: float) -> list[FrameRef]:
            return await store_frames(bus, key, frames.encode(start, end), settings.bus.blob_ttl_s)

        ingest = SpeechIngest(bus, settings, "room-1", "alice", t0=0.0, frames=frame_source)
        published = []
        for chunk in iter_file(speech_wav, chunk_s=0.1):
            published += await ingest.push_audio(chunk)
        published += await ingest.flush()
        utterances = [m for m in published if isinstance(m, schema.Utterance)]
        assert len(utterances) == 1, published
        assert utterances[0].frames, "the utterance carries sampled frames"

        got: dict[str, object] = {}
        deadline = time.monotonic() + 240  # five workers load their models on two shared cores
        while len(got) < 3 and time.monotonic() < deadline:
            assert not died(procs), died(procs)
            deliveries = await bus.read_group(
                [EmotionEvent.stream, VisualDescription.stream, Transcript.stream], "observer", "t", 10, 500
            )
            for d in deliveries:
                kind = schema.STREAM_TYPES[d.stream]
                got[d.stream] = schema.decode(d.data, kind)
        assert set(got) == {"events", "descriptions", "transcripts"}, f"got only {sorted(got)}"

        transcript = got["transcripts"]
        assert isinstance(transcript, Transcript)
        words = transcript.text.lower()
        assert "job" in words and "best day" in words, transcript.text

        visual = got["descriptions"]
        assert isinstance(visual, VisualDescription)
        assert visual.face_found and visual.embedding is not None and len(visual.embedding) == 384
        assert "smil" in visual.text.lower() or "lip" in visual.text.lower(), visual.text

        event = got["events"]
        assert isinstance(event, EmotionEvent)
        assert event.id == schema.event_id("room-1", "alice", 0, utterances[0].session)
        assert event.transcript == transcript.text
        assert "text" in event.modalities
        assert abs(sum(event.probabilities.values()) - 1.0) < 1e-3
        assert event.label == max(event.probabilities, key=lambda k: event.probabilities[k])
        for stage in ("asr", "context", "fusion", "total"):
            assert event.latency_ms[stage] >= 0, event.latency_ms
        assert np.isfinite(event.latency_ms["total"])
    finally:
        codes = stop_workers(procs)
        await bus.close()
    assert codes == [0] * len(STAGES), f"workers did not drain cleanly on SIGTERM: {codes}"
    await asyncio.sleep(0)
