"""Issue 13 #10: a reused room id must not pick up visual cues of an earlier session.

Before: an event carried fec/vlm traces from 190 s earlier. The fusion stage tails the descriptions
stream from its start, so a (re)starting fusion read old descriptions back and, timing its cache by
arrival, took them as fresh: the next utterance with the same room/speaker/index matched one. Now a
cue published longer than ``fusion.visual_ttl_s`` ago is counted ``stale`` and never matched.
"""

from __future__ import annotations

import asyncio

from emostream import schema
from emostream.bus import open_bus
from emostream.config import Settings
from emostream.runtime.stage import StageContext
from emostream.schema import VisualDescription, encode
from emostream.workers.fusion import FusionStage


def _cue(utterance: int, age_s: float) -> bytes:
    at = schema.now() - age_s
    return encode(
        VisualDescription(
            room="room-1", speaker="alice", utterance=utterance, text="smiling", trace={"vlm": at}
        )
    )


async def test_descriptions_from_an_earlier_session_are_not_matched() -> None:
    settings = Settings()
    bus = open_bus("memory://", settings.bus)
    await bus.publish(VisualDescription.stream, _cue(0, age_s=190))  # the earlier session's utterance 0
    await bus.publish(VisualDescription.stream, _cue(1, age_s=0.5))  # this session's utterance 1
    stage = FusionStage(settings, load_head=False)
    ctx = StageContext(bus=bus, settings=settings, stage="fusion", consumer="f")
    await stage.setup(ctx)
    try:
        for _ in range(100):
            if stage.counts["received"] + stage.counts["stale"] >= 2:
                break
            await asyncio.sleep(0.02)
        assert stage.counts["stale"] == 1 and stage.counts["received"] == 1
        assert await stage.cache.wait("room-1/alice/0", 0.05) is None  # the reused id finds nothing old
        fresh = await stage.cache.wait("room-1/alice/1", 0.05)
        assert fresh is not None and fresh.text == "smiling"
    finally:
        await stage.close()
        await bus.close()
