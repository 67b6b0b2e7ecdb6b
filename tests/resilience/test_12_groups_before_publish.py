"""Issue 13, the last hole: media published before a worker's group exists.

A blob is kept for each consumer group that exists when a message referring to it is published, so a
worker that created its group later (compose starting `serve` before `fec`) found the frames of the
first utterances gone, and fec reported "no face" without a word. Now every producer of utterances
(`serve --redis`, `analyze --redis`, `join janus`) creates the groups of the stages that read them
before its first publish (``topology.ensure_readers``), so that work waits for the worker; and media
gone anyway (TTL) is said: fec counts the frames as expired and the event's ``visual_status`` reads
``expired`` (tests/visual/test_fec_stage.py, tests/visual/test_vlm_stage.py,
tests/fusion/test_fusion_stage.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from emostream.bus import open_bus
from emostream.config import load_settings
from emostream.runtime.topology import ensure_readers, readers
from emostream.schema import FrameRef, PartialAudio, RoomControl, Utterance, encode
from tests.server.helpers import ServeProc, start_serve


def _groups(url: str) -> dict[str, set[str]]:
    client = redis.Redis.from_url(url)
    try:
        out: dict[str, set[str]] = {}
        for stream in (RoomControl.stream, PartialAudio.stream, Utterance.stream):
            key = f"emostream:{stream}"
            out[stream] = (
                {g["name"].decode() for g in client.xinfo_groups(key)} if client.exists(key) else set()
            )
        return out
    finally:
        client.close()


@pytest.fixture
def serve(flush_redis: str, tmp_path: Path) -> Iterator[ServeProc]:
    proc = start_serve(flush_redis, str(tmp_path / "serve.log"))
    yield proc
    assert proc.stop() == 0, open(proc.log).read()[-2000:]


def test_serve_creates_the_workers_groups_before_any_worker_runs(serve: ServeProc, flush_redis: str) -> None:
    assert _groups(flush_redis) == {
        "rooms": {"context"},
        "partials": {"asr", "fec"},
        "utterances": {"asr", "fec"},
    }


def test_a_text_only_topology_has_no_face_group() -> None:
    text = load_settings(env={"EMOSTREAM_FUSION_MODE": "text"})
    assert readers(Utterance.stream, text) == ["asr"]
    assert readers(Utterance.stream, load_settings(env={})) == ["asr", "fec"]
    assert readers("descriptions", load_settings(env={})) == []  # fusion tails it: no group


async def test_frames_published_before_fec_starts_wait_for_it(flush_redis: str) -> None:
    """The compose start-up race: serve publishes, asr reads and acks, fec starts only afterwards."""
    settings = load_settings(env={})
    bus = open_bus(flush_redis, settings.bus)
    try:
        assert ("utterances", "fec") in await ensure_readers(bus, settings)
        audio = await bus.put_blob("audio/r/alice/0", np.ones(1600, np.float32).tobytes(), 60)
        frame = await bus.put_blob("frame/r/alice/0/0", b"\xff\xd8 a jpeg", 60)
        utt = Utterance(room="r", speaker="alice", utterance=0, start=0, end=1, audio=audio,
                        frames=[FrameRef(t=0.5, blob=frame)])  # fmt: skip
        await bus.publish(Utterance.stream, encode(utt))
        (asr,) = await bus.read_group([Utterance.stream], "asr", "asr-1", 10, 100)
        await bus.ack(Utterance.stream, "asr", [asr.id])
        assert await bus.get_blob(frame) is not None  # before: deleted here, fec had no group yet
        await bus.ensure_group(Utterance.stream, "fec", "0")  # what the fec worker does when it starts
        (fec,) = await bus.read_group([Utterance.stream], "fec", "fec-1", 10, 100)
        assert fec.id == asr.id and await bus.get_blob(frame) == b"\xff\xd8 a jpeg"
        await bus.ack(Utterance.stream, "fec", [fec.id])
        assert await bus.get_blob(frame) is None and await bus.get_blob(audio) is None  # then it goes
    finally:
        await bus.close()
