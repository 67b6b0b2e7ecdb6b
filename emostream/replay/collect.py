"""The replay's listening end: a stage that waits for each utterance's EmotionEvent and keeps features.

It is one more consumer group on the bus (like any subscriber), reading events plus the intermediate
streams whose content ``train visual|fusion`` can learn from: transcripts, key frames (FER probabilities,
blendshapes, head pose), visual descriptions with their embeddings, and the text context (embedding and
teacher logits). Media blobs are never kept, only these features.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import (
    EmotionEvent,
    Keyed,
    KeyFrames,
    Message,
    TextContext,
    Transcript,
    VisualDescription,
)

_FEATURE_KINDS: tuple[type[Keyed], ...] = (Transcript, KeyFrames, VisualDescription, TextContext)
"""Besides events, the collector reads these streams for the per-row features."""


def _round(values: list[float] | None, digits: int = 5) -> list[float] | None:
    return None if values is None else [round(float(v), digits) for v in values]


def feature_of(message: Message) -> dict[str, Any]:
    """The trainable part of an intermediate message (no blobs, floats rounded)."""
    if isinstance(message, Transcript):
        out: dict[str, Any] = {"transcript": message.text, "asr_model": message.model}
        if message.hypotheses:
            out["hypotheses"] = [[h.text, h.weight] for h in message.hypotheses]
        return out
    if isinstance(message, KeyFrames):
        frames = [
            {
                "t": round(f.t, 3),
                "expression": _round(f.expression),
                "blendshapes": {k: round(v, 4) for k, v in f.blendshapes.items()},
                "head_pose": list(f.head_pose),
                "score": round(f.score, 4),
            }
            for f in message.frames
        ]
        return {"keyframes": frames, "face_found": message.face_found, "frames_seen": message.frames_seen}
    if isinstance(message, VisualDescription):
        return {
            "description": message.text,
            "description_embedding": _round(message.embedding),
            "description_encoder": message.encoder,
            "visual_confidence": round(message.confidence, 4),
        }
    if isinstance(message, TextContext):
        return {
            "text_embedding": _round(message.embedding),
            "text_logits": _round(message.logits),
            "text_model": message.model,
        }
    return {}


class Collector(Stage):
    """Resolves a future per expected utterance key when its event arrives; gathers features by key."""

    def __init__(self) -> None:
        super().__init__("replay-collector")
        self.on(EmotionEvent, self.event)
        for kind in _FEATURE_KINDS:
            self.on(kind, self.feature)
        self.waiting: dict[str, asyncio.Future[EmotionEvent]] = {}
        self.early: dict[str, EmotionEvent] = {}
        self.features: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()

    async def visual_done(self, keys: list[str], timeout_s: float) -> int:
        """Wait until every key has its visual description (the visual branch may finish after the
        event); return how many are still missing after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            missing = sum("description" not in self.features.get(k, {}) for k in keys)
            left = deadline - loop.time()
            if not missing or left <= 0:
                return missing
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=left)
            except TimeoutError:
                pass

    def expect(self, key: str) -> asyncio.Future[EmotionEvent]:
        """A future resolved with the event of utterance ``key`` (immediately if it already came)."""
        fut: asyncio.Future[EmotionEvent] = asyncio.get_running_loop().create_future()
        if key in self.early:
            fut.set_result(self.early.pop(key))
        else:
            self.waiting[key] = fut
        return fut

    def forget(self, key: str) -> dict[str, Any]:
        """Stop waiting for ``key`` and hand back its features."""
        self.waiting.pop(key, None)
        self.early.pop(key, None)
        return self.features.pop(key, {})

    async def event(self, message: EmotionEvent, ctx: StageContext) -> list[Emit]:
        fut = self.waiting.pop(message.key, None)
        if fut is None:
            self.early[message.key] = message
        elif not fut.done():
            fut.set_result(message)
        return []

    async def feature(self, message: Keyed, ctx: StageContext) -> list[Emit]:
        self.features.setdefault(message.key, {}).update(feature_of(message))
        self.changed.set()
        return []


def event_dict(event: EmotionEvent) -> dict[str, Any]:
    """JSON-ready form of an event (what events.jsonl carries)."""
    return msgspec.to_builtins(event)
