"""`emostream up`: docker-compose.yml's topology as real local processes gets every event exactly once.

redis-server with the compose Redis arguments (AOF everysec), one process per worker with two asr
replicas, and the api service once [events]' `serve --redis` is on this branch. The test plays two
participants through the Redis ingest path (SpeechIngest, as the API's ingest does), real espeak-ng
speech segmented by the real Silero VAD.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
import redis

from emostream import schema
from emostream.bus import open_bus
from emostream.config import BusSettings, load_settings
from emostream.healthcheck import check_api, check_worker
from emostream.ingest.audio import iter_file
from emostream.ingest.participant import SpeechIngest
from emostream.localstack import start

from .compose import REPO
from .test_compose import SERVE_LANDED

LINES = {
    "alice": "I just got the job. This is the best day of my life!",
    "bob": "Oh no, I lost my keys again.",
}


def speech(tmp: Path, name: str, text: str) -> Path:
    wav, padded = tmp / f"{name}.wav", tmp / f"{name}-pad.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), text], check=True)
    subprocess.run(["sox", str(wav), str(padded), "pad", "0.3", "1.5"], check=True)
    return padded


@pytest.mark.slow
async def test_up_runs_the_compose_topology_and_every_event_arrives_once(tmp_path: Path) -> None:
    services = None if SERVE_LANDED else ["asr", "fec", "vlm", "context", "fusion"]
    stack = start(REPO / "docker-compose.yml", data_dir=tmp_path / "up", scale={"asr": 2}, services=services)
    try:
        names = sorted(p.name for p in stack.procs)
        expected = ["asr-1", "asr-2", "context-1", "fec-1", "fusion-1", "vlm-1"]
        assert names == sorted(expected + (["api-1"] if SERVE_LANDED else [])), names
        deadline = time.monotonic() + 300  # six model-loading processes on two shared cores
        pending = dict(stack.metrics_ports)
        while pending and time.monotonic() < deadline:
            assert not (problem := stack.check()), problem
            pending = {
                n: p
                for n, p in pending.items()
                if await asyncio.to_thread(check_worker, "127.0.0.1", p, 2, stack.redis_url)
            }
            await asyncio.sleep(1)
        assert not pending, f"workers never became healthy: {sorted(pending)}"
        if SERVE_LANDED:
            assert check_api("127.0.0.1", int(stack.api_url.rsplit(":", 1)[1]), 2) == ""
        r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        assert r.config_get("appendonly")["appendonly"] == "yes"
        assert r.config_get("appendfsync")["appendfsync"] == "everysec"

        settings = load_settings(env={"EMOSTREAM_BUS_URL": stack.redis_url})
        bus = open_bus(stack.redis_url, BusSettings(url=stack.redis_url))
        await bus.ensure_group(schema.EmotionEvent.stream, "observer", "0")
        utterances = []
        for speaker, text in LINES.items():
            ingest = SpeechIngest(bus, settings, "room-1", speaker, t0=0.0)
            for chunk in iter_file(speech(tmp_path, speaker, text), chunk_s=0.1):
                utterances += [m for m in await ingest.push_audio(chunk) if isinstance(m, schema.Utterance)]
            utterances += [m for m in await ingest.flush() if isinstance(m, schema.Utterance)]
        assert len(utterances) == 2, utterances
        want = {schema.event_id(u.room, u.speaker, u.utterance) for u in utterances}

        events: list[schema.EmotionEvent] = []

        async def read(until: float) -> None:
            while time.monotonic() < until:
                assert not (problem := stack.check()), problem
                for d in await bus.read_group([schema.EmotionEvent.stream], "observer", "t", 10, 500):
                    events.append(schema.decode(d.data, schema.EmotionEvent))
                if len(events) >= len(want) and until == deadline:
                    return

        await read(deadline)
        await read(time.monotonic() + 3)  # a duplicate would arrive within the redelivery window
        assert sorted(e.id for e in events) == sorted(want), "every utterance's event exactly once"
        assert {e.speaker for e in events} == set(LINES)
        alive = [p.name for p in stack.procs if p.popen is not None and p.popen.poll() is None]
        assert {"asr-1", "asr-2"} <= set(alive), "both asr replicas ran to the end"
        assert not any(p.restarts for p in stack.procs), "no process crashed and was restarted"
        await bus.close()
        r.close()
    finally:
        codes = stack.stop()
    assert all(c == 0 for c in codes.values()), f"processes did not drain cleanly: {codes}"
