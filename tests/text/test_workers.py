"""Context and fusion stages end to end on the buses, with the real (tiny) ONNX text model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from emostream import schema
from emostream.bus import Bus, open_bus
from emostream.config import BusSettings, ContextSettings, FusionSettings, Settings, StageSettings
from emostream.inference.fusion import FusionHead, load_fusion
from emostream.inference.onnx import RuntimeOptions
from emostream.inference.text import TextModel, softmax
from emostream.runtime.pipeline import Pipeline
from emostream.runtime.stage import Stage
from emostream.schema import EmotionEvent, TextContext, Transcript, VisualDescription
from emostream.workers.context import ContextStage
from emostream.workers.fusion import FusionStage

from .helpers import TinyModels, build_fusion_head

SINK = "test-sink"


def settings_for(
    url: str = "memory://",
    deadline_ms: int = 150,
    ttl_s: float = 30.0,
    history: int = 3,
    mode: Literal["fused", "text", "face"] = "fused",
) -> Settings:
    return Settings(
        bus=BusSettings(url=url, block_ms=50, claim_idle_ms=2_000, maxlen=10_000),
        stage=StageSettings(concurrency=4, claim_every_ms=200, shutdown_grace_s=3, lag_every_s=0.5),
        context=ContextSettings(history=history),
        fusion=FusionSettings(deadline_ms=deadline_ms, visual_ttl_s=ttl_s, mode=mode),
    )


@asynccontextmanager
async def running(bus: Bus, settings: Settings, *stages: Stage) -> AsyncIterator[None]:
    await bus.ensure_group(EmotionEvent.stream, SINK, "0")
    pipeline = Pipeline(bus, settings)
    for stage in stages:
        pipeline.add(stage, consumer=f"{stage.name}-test")
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(pipeline.run(stop, ready))
    await asyncio.wait_for(ready.wait(), 20)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        for stage in stages:
            await stage.close()


async def events(bus: Bus, n: int, timeout_s: float = 30.0) -> dict[int, EmotionEvent]:
    out: dict[int, EmotionEvent] = {}
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        assert time.monotonic() < deadline, f"only {len(out)} of {n} events arrived"
        for d in await bus.read_group([EmotionEvent.stream], SINK, "sink", 100, 50):
            e = schema.decode(d.data, EmotionEvent)
            out[e.utterance] = e
            await bus.ack(d.stream, SINK, [d.id])
    return out


async def until(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def visual(utterance: int, face: bool = True, room: str = "r", speaker: str = "alice") -> VisualDescription:
    rng = np.random.default_rng(utterance)
    return VisualDescription(
        room=room,
        speaker=speaker,
        utterance=utterance,
        text="The mouth corners are pulling outward.",
        embedding=rng.standard_normal(384).astype(np.float32).tolist(),
        face_found=face,
        confidence=0.8,
        trace={"vlm": schema.now()},
    )


def transcript(utterance: int, speaker: str, text: str, room: str = "r") -> Transcript:
    t = schema.now()
    return Transcript(
        room=room, speaker=speaker, utterance=utterance, start=float(utterance), end=utterance + 0.9,
        text=text, eos_at=t, trace={"asr": t},
    )  # fmt: skip


def text_context(utterance: int, logits: list[float], room: str = "r") -> TextContext:
    t = schema.now()
    return TextContext(
        room=room, speaker="alice", utterance=utterance, start=0.0, end=1.0, text="hi",
        embedding=[0.1] * 64, logits=logits, eos_at=t - 0.2, trace={"context": t},
    )  # fmt: skip


@pytest.fixture(scope="module")
def fusion_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fusion_head(tmp_path_factory.mktemp("fusion") / "tiny-fusion", hidden=64)


async def test_context_then_fusion_end_to_end(bus: Bus, tiny_models: TinyModels, fusion_dir: Path) -> None:
    settings = settings_for(bus.url)
    model = TextModel.from_dir(tiny_models.woq_integer)
    context = ContextStage(settings, model=model)
    fusion = FusionStage(settings, head=FusionHead.from_dir(fusion_dir))
    for v in (visual(0), visual(1, face=False, speaker="bob"), visual(2)):
        await bus.publish(VisualDescription.stream, schema.encode(v))
    await bus.publish(schema.VisualDescription.stream, b"garbage")  # skipped by the tail, never fatal
    lines = ["I can't believe it!", "What happened?", "We won the lottery!", "Oh no.", "Really?"]
    async with running(bus, settings, context, fusion):
        for i, text in enumerate(lines):
            await bus.publish(Transcript.stream, schema.encode(transcript(i, ("alice", "bob")[i % 2], text)))
            await asyncio.sleep(0.05)  # turns in order, as in a call
        got = await events(bus, len(lines))
        assert context.rooms is not None and len(context.rooms.get("r")) == 3  # bounded history

    status = {u: e.visual_status for u, e in got.items()}
    assert status == {0: "used", 1: "no_face", 2: "used", 3: "absent", 4: "absent"}
    assert got[0].modalities == ["text", "visual"] and got[3].modalities == ["text"]
    assert got[0].visual_description and not got[3].visual_description
    for u, e in got.items():
        assert e.id == schema.event_id("r", e.speaker, u) and e.transcript == lines[u]
        assert abs(sum(e.probabilities.values()) - 1) < 1e-4 and e.label == max(
            e.probabilities, key=e.probabilities.get
        )  # type: ignore[arg-type]
        assert {"asr", "context", "fusion", "total"} <= set(e.latency_ms) and e.latency_ms[
            "total"
        ] >= e.latency_ms["context"] >= 0
    # text-only decisions equal the teacher run exactly as `emostream eval meld` runs it
    history = __import__("emostream.inference.dialogue", fromlist=["DialogueHistory"]).DialogueHistory(
        model.builder, 3
    )
    for i, text in enumerate(lines):
        prompt = history.add(
            f"r/{('alice', 'bob')[i % 2]}/{i}", ("alice", "bob")[i % 2], float(i), text
        ).prompt
        if i == 3:
            expected = softmax(model.run([prompt])[1][0])
            assert np.allclose([got[3].probabilities[k] for k in schema.EMOTIONS], expected, atol=1e-5)
    assert got[3].latency_ms["fusion"] - got[3].latency_ms["context"] >= 140  # waited for the deadline
    assert fusion.counts["used"] == 2 and fusion.counts["absent"] == 2 and fusion.counts["no_face"] == 1


async def test_deadline_emits_text_only_and_counts_a_late_visual(fusion_dir: Path) -> None:
    settings = settings_for(deadline_ms=150)
    bus = open_bus("memory://", settings.bus)
    fusion = FusionStage(settings, head=FusionHead.from_dir(fusion_dir))
    logits = [0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0]
    async with running(bus, settings, fusion):
        sent = schema.now()
        await bus.publish(TextContext.stream, schema.encode(text_context(7, logits)))
        got = (await events(bus, 1))[7]
        waited = got.emitted_at - sent
        assert got.visual_status == "absent" and got.modalities == ["text"] and got.label == "joy"
        assert 0.14 <= waited < 1.0, waited
        assert got.probabilities["joy"] == pytest.approx(float(softmax(np.array(logits))[4]), abs=1e-5)
        await bus.publish(VisualDescription.stream, schema.encode(visual(7)))
        await until(lambda: fusion.counts["late"] == 1)
    await bus.close()


async def test_visual_for_unknown_utterance_is_dropped_and_counted(fusion_dir: Path) -> None:
    settings = settings_for(ttl_s=0.3)
    bus = open_bus("memory://", settings.bus)
    fusion = FusionStage(settings, head=FusionHead.from_dir(fusion_dir))
    async with running(bus, settings, fusion):
        await bus.publish(VisualDescription.stream, schema.encode(visual(99, room="nobody")))
        await until(lambda: fusion.counts["received"] == 1)
        assert "nobody/alice/99" in fusion.cache.entries
        await until(lambda: fusion.counts["unmatched"] == 1, timeout_s=5)
        assert not fusion.cache.entries
    await bus.close()


async def test_text_mode_the_text_head_decides_at_once() -> None:
    assert (
        load_fusion("no-such-fusion-model", RuntimeOptions.cpu(1), Settings()) is None
    )  # not installed: no error, late fusion or text
    settings = settings_for(deadline_ms=2_000, mode="text")
    bus = open_bus("memory://", settings.bus)
    fusion = FusionStage(settings, head=None, load_head=False)
    async with running(bus, settings, fusion):
        await bus.publish(TextContext.stream, schema.encode(text_context(1, [5.0, 0, 0, 0, 0, 0, 0])))
        got = (await events(bus, 1))[1]
    assert got.visual_status == "disabled" and got.modalities == ["text"] and got.label == "neutral"
    assert got.latency_ms["fusion"] - got.latency_ms["context"] < 1000  # did not wait for the 2 s deadline
    await bus.close()


async def test_room_end_and_the_room_bound_forget_histories(tiny_models: TinyModels) -> None:
    from emostream.runtime.stage import StageContext
    from emostream.schema import RoomControl

    settings = settings_for()
    settings.context.max_rooms = 2
    bus = open_bus("memory://", settings.bus)
    stage = ContextStage(settings, model=TextModel.from_dir(tiny_models.woq_dq), follow=False)
    ctx = StageContext(bus=bus, settings=settings, stage="context", consumer="c")
    await stage.setup(ctx)
    assert stage.rooms is not None
    for room in ("a", "b", "c"):
        (out,) = await stage.handle(transcript(0, "alice", "hello", room=room), ctx)
        assert isinstance(out.message, TextContext) and out.message.room == room
    assert list(stage.rooms.rooms) == ["b", "c"]  # least recently active room forgotten
    assert await stage.handle(RoomControl(room="b", action="room_end"), ctx) == []
    assert list(stage.rooms.rooms) == ["c"]
    await stage.close()
    await bus.close()
