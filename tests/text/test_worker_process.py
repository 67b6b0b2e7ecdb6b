"""`emostream worker fusion --redis URL` as a real child process against a real redis-server."""

from __future__ import annotations

import asyncio
import time

from emostream import schema
from emostream.bus import open_bus
from emostream.config import BusSettings
from emostream.schema import EmotionEvent, TextContext
from emostream.testing.harness import start_worker, stop_worker


async def test_fusion_worker_process_emits_text_only_events(flush_redis: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"EMOSTREAM_HOME": str(tmp_path), "EMOSTREAM_FUSION_DEADLINE_MS": "100"}
    bus = open_bus(flush_redis, BusSettings(url=flush_redis))
    await bus.ensure_group(EmotionEvent.stream, "sink", "0")
    proc = start_worker("fusion", flush_redis, "f1", env=env)
    try:
        t = schema.now()
        msg = TextContext(
            room="call", speaker="p1", utterance=3, start=0.0, end=1.2, text="That is wonderful!",
            embedding=[0.0] * 384, logits=[0, 0, 0, 0, 4.0, 0, 0], eos_at=t, trace={"asr": t, "context": t},
        )  # fmt: skip
        await bus.publish(TextContext.stream, schema.encode(msg))
        got: EmotionEvent | None = None
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline and proc.poll() is None:
            for d in await bus.read_group([EmotionEvent.stream], "sink", "s", 10, 200):
                got = schema.decode(d.data, EmotionEvent)
        assert got is not None, proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no event"
        assert got.id == schema.event_id("call", "p1", 3) and got.label == "joy"
        assert got.visual_status == "absent" and got.modalities == ["text"]  # no face published: text decides
        assert got.latency_ms["fusion"] >= 0 and got.latency_ms["total"] >= got.latency_ms["asr"]
    finally:
        try:
            stop_worker(proc)
        finally:
            await bus.close()
    await asyncio.sleep(0)
