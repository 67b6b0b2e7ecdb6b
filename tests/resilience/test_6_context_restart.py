"""Issue 13 #6: a context worker killed mid-dialogue decides like one that never stopped.

Before: after kill -9 of context the remaining utterances were decided without their history (one
confidence 0.374 -> 0.896). Now a starting context worker rebuilds every room's history from the
retained ``transcripts`` (and ``rooms``) entries. Real `emostream worker context` processes, the
shipped text model, one MELD-like dialogue played twice: undisturbed (room A) and with a kill -9 of the
worker after its fifth decision (room B).
"""

from __future__ import annotations

import subprocess
import time

import numpy as np

from emostream.bus import Bus, open_bus
from emostream.schema import TextContext, Transcript, decode, encode

from .conftest import emostream

LINES = [
    ("ross", "I can't believe you did that."),
    ("rachel", "Did what? I didn't do anything!"),
    ("ross", "You told her about the ring."),
    ("rachel", "Oh my God, I am so sorry."),
    ("ross", "Great. Just great."),
    ("rachel", "Come on, it's not that bad."),
    ("ross", "She's going to say no now."),
    ("rachel", "She is not going to say no, she loves you!"),
]
ENV = {"EMOSTREAM_BUS_CLAIM_IDLE_MS": "1000", "EMOSTREAM_BUS_BLOCK_MS": "100"}


def _worker(url: str, name: str) -> subprocess.Popen[bytes]:
    return emostream("worker", "context", "--redis", url, "--consumer", name, env=ENV)


async def _say(bus: Bus, room: str, n: int, proc: subprocess.Popen[bytes]) -> TextContext:
    speaker, text = LINES[n]
    t = Transcript(room=room, speaker=speaker, utterance=n, start=float(n), end=n + 0.9, text=text)
    await bus.publish(Transcript.stream, encode(t))
    deadline = time.monotonic() + 90  # the first one waits for the model to load
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        for d in await bus.read_group([TextContext.stream], "check", "c", 1, 100):
            await bus.ack(TextContext.stream, "check", [d.id])
            out = decode(d.data, TextContext)
            assert (out.room, out.utterance) == (room, n)
            return out
    raise AssertionError(f"no context for {room}/{n}")


async def test_kill_9_of_context_mid_dialogue_gives_the_same_labels(flush_redis: str) -> None:
    bus = open_bus(flush_redis)
    await bus.ensure_group(TextContext.stream, "check", "$")
    first = _worker(flush_redis, "ctx-1")
    second: subprocess.Popen[bytes] | None = None
    try:
        calm = [await _say(bus, "room-a", n, first) for n in range(len(LINES))]
        hit = [await _say(bus, "room-b", n, first) for n in range(5)]
        first.kill()  # kill -9 mid-dialogue
        first.wait(10)
        second = _worker(flush_redis, "ctx-2")
        hit += [await _say(bus, "room-b", n, second) for n in range(5, len(LINES))]
        alone = await _say(bus, "room-c", 5, second)  # a line without its dialogue
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.terminate()
                p.wait(20)
        await bus.close()
    labels = [int(np.argmax(c.logits)) for c in calm]
    assert [int(np.argmax(c.logits)) for c in hit] == labels
    np.testing.assert_allclose([c.logits for c in hit], [c.logits for c in calm], atol=1e-4)
    assert not np.allclose(alone.logits, calm[5].logits, atol=1e-3)  # the history matters


async def test_two_context_replicas_decide_like_one(flush_redis: str) -> None:
    """Issue 13 #6, scaled out: two context workers split one dialogue's transcripts through their
    group, yet each decides with the whole conversation (every replica tails all transcripts), so the
    labels equal a single worker's."""
    bus = open_bus(flush_redis)
    await bus.ensure_group(TextContext.stream, "check", "$")
    solo = _worker(flush_redis, "solo")
    pair: list[subprocess.Popen[bytes]] = []
    try:
        calm = [await _say(bus, "room-a", n, solo) for n in range(len(LINES))]
        solo.terminate()
        solo.wait(20)
        pair = [_worker(flush_redis, "rep-1"), _worker(flush_redis, "rep-2")]
        split = [await _say(bus, "room-b", n, pair[n % 2]) for n in range(len(LINES))]
    finally:
        for p in (solo, *pair):
            if p.poll() is None:
                p.terminate()
                p.wait(20)
        await bus.close()
    np.testing.assert_allclose([c.logits for c in split], [c.logits for c in calm], atol=1e-4)
