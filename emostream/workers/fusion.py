"""`fusion` stage: TextContext (+ VisualDescription of the same utterance) -> EmotionEvent.

TextContext is consumed through the stage's consumer group (each utterance is decided once). Visual
descriptions must be visible to every fusion worker, so each worker tails the descriptions stream without
a group into a TTL cache (:class:`emostream.workers.fusion_cache.VisualCache`). When the text is ready the stage
waits for the visual cue at most ``fusion.deadline_ms`` after the TextContext was published, then runs the
fusion head, or lets the text head decide alone (no usable visual cue, or no fusion model installed).
The event says which modalities contributed (``visual_status``) and the per-stage latency from end of speech.
A visual result arriving after its utterance was decided is counted as ``late``; one whose utterance never
shows up is dropped after ``fusion.visual_ttl_s`` and counted as ``unmatched``.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import numpy as np

from emostream import schema
from emostream.config import Settings
from emostream.inference.fusion import FusionHead, load_fusion
from emostream.inference.onnx import RuntimeOptions
from emostream.inference.text import softmax
from emostream.runtime.follow import Follower
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import EMOTIONS, EmotionEvent, TextContext, VisualDescription
from emostream.workers.fusion_cache import VisualCache

VisualStatus = Literal["used", "absent", "late", "no_face", "disabled"]


def latencies(trace: dict[str, float], eos_at: float, done: float) -> dict[str, float]:
    """Milliseconds from end of speech to each stage's output, plus ``total``."""
    origin = eos_at or min(trace.values(), default=done)
    out = {stage: round((t - origin) * 1000, 2) for stage, t in trace.items() if t >= origin}
    out["total"] = round((done - origin) * 1000, 2)
    return out


class FusionStage(Stage):
    def __init__(self, settings: Settings, head: FusionHead | None = None, load_head: bool = True) -> None:
        super().__init__("fusion")
        self.on(TextContext, self.text_context)
        self.settings = settings
        self.head = head
        self.load_head = load_head and head is None
        f = settings.fusion
        self.cache = VisualCache(ttl_s=f.visual_ttl_s, max_entries=max(1024, settings.bus.maxlen))
        self._follower = Follower(
            VisualDescription,
            self.cache.put,
            from_start=True,
            block_ms=settings.bus.block_ms,
            after_batch=self.cache.expire,
        )
        """Tails every visual description (no group) into the cache; expires unmatched ones."""

    @property
    def counts(self) -> dict[str, int]:
        return self.cache.counts

    async def setup(self, ctx: StageContext) -> None:
        if self.load_head:
            self.head = await asyncio.to_thread(
                load_fusion,
                self.settings.fusion.model,
                RuntimeOptions.of(self.settings.fusion),
                self.settings,
            )
            self.load_head = False
        self._follower.start(ctx.bus)

    async def text_context(self, message: TextContext, ctx: StageContext) -> list[Emit]:
        key = message.key
        visual: VisualDescription | None = None
        if self.head is not None:
            budget = self.settings.fusion.deadline_ms / 1000
            ready = message.trace.get("context", schema.now())  # when the text was ready
            wait = min(budget, max(0.0, ready + budget - schema.now()))  # capped: clocks may disagree
            visual = await self.cache.wait(key, wait)
        else:
            visual = self.cache.get(key)
        status = self.status(visual)
        self.cache.decided(key, status)
        logits = np.asarray(message.logits, dtype=np.float32)
        modalities: list[schema.Modality] = ["text"]
        if status == "used" and visual is not None and self.head is not None:
            fuse = self.head.fuse
            logits = await asyncio.to_thread(
                fuse, message.embedding, message.logits, visual.embedding or [], visual.confidence
            )
            modalities.append("visual")
        probs = softmax(logits)
        best = int(probs.argmax())
        done = schema.now()
        trace = {**(visual.trace if visual is not None else {}), **message.trace}
        used_head = self.head.name if status == "used" and self.head is not None else ""
        event = schema.derive(
            message,
            EmotionEvent,
            id=schema.event_id(message.room, message.speaker, message.utterance),
            label=EMOTIONS[best],
            probabilities={e: round(float(p), 6) for e, p in zip(EMOTIONS, probs, strict=True)},
            confidence=round(float(probs[best]), 6),
            modalities=modalities,
            visual_status=status,
            transcript=message.text,
            visual_description=visual.text if visual is not None else "",
            model="+".join(n for n in (message.model, used_head) if n),
            latency_ms=latencies({**trace, self.name: done}, message.eos_at, done),
            emitted_at=done,
            trace=trace,
        )
        return [Emit(event)]

    def status(self, visual: VisualDescription | None) -> VisualStatus:
        if self.head is None:
            return "disabled"
        if visual is None:
            return "absent"
        if not visual.face_found:
            return "no_face"
        return "used" if self.head.usable(visual.embedding) else "absent"

    async def close(self) -> None:
        await self._follower.stop()


def create(settings: Settings) -> Stage:
    return FusionStage(settings)
