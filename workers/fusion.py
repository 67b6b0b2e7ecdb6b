"""`fusion` stage: TextContext (+ VisualDescription of the same utterance) -> EmotionEvent.

TextContext is consumed through the stage's consumer group (each utterance is decided once). Visual
descriptions must be visible to every fusion worker, so each worker tails the descriptions stream without
a group into a TTL cache (:class:`emostream.workers.fusion_cache.VisualCache`). When the text is ready the stage
waits for the visual cue at most ``fusion.deadline_ms`` after the TextContext was published, then decides,
in order of preference: the trained fusion head (``fusion.model``, when installed), else log-linear late
fusion of the text expert with the face expert (:mod:`emostream.late_fusion`), else the text alone (no
face reading, or one too unreliable). ``fusion.mode = text`` never waits for nor uses the face; ``face``
decides from the face reading alone (text when there is none). The event says which modalities
contributed (``visual_status``), carries both experts' evidence so a subscriber can re-fuse, and the
per-stage latency from end of speech.
A visual result arriving after its utterance was decided is counted as ``late``; one whose utterance never
shows up is dropped after ``fusion.visual_ttl_s`` and counted as ``unmatched``.
"""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np

from emostream import schema
from emostream.config import Settings
from emostream.inference.fusion import FusionHead, load_fusion
from emostream.inference.onnx import RuntimeOptions
from emostream.inference.text import softmax
from emostream.late_fusion import LateFusion, as_dict, cue_strings, driver_of
from emostream.runtime.follow import Follower
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import EMOTIONS, EmotionEvent, TextContext, VisualDescription, VisualStatus
from emostream.workers.fusion_cache import VisualCache


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
        self.load_head = load_head and head is None and settings.fusion.mode == "fused"
        f = settings.fusion
        self.late = LateFusion.from_settings(f)
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
        if self.settings.fusion.mode != "text":
            budget = self.settings.fusion.deadline_ms / 1000
            ready = message.trace.get("context", schema.now())  # when the text was ready
            wait = min(budget, max(0.0, ready + budget - schema.now()))  # capped: clocks may disagree
            visual = await self.cache.wait(key, wait)
        else:
            visual = self.cache.get(key)
        head = self.head  # checked once per decision: usable() scans the embedding
        if head is None or visual is None or not head.usable(visual.embedding, message.embedding):
            head = None
        status = self.status(visual, head is not None)
        self.cache.decided(key, status)
        text_probs = softmax(np.asarray(message.logits, dtype=np.float32))
        face = visual.face if visual is not None and visual.face_found else None
        probs, rule = text_probs, "text"
        if status == "used" and visual is not None:
            if self.settings.fusion.mode == "face" and face is not None:
                probs, rule = np.asarray(face.probs, dtype=np.float64), "face"
            elif head is not None:
                fuse = head.fuse
                logits = await asyncio.to_thread(
                    fuse, message.embedding, message.logits, visual.embedding or [], visual.confidence
                )
                probs, rule = softmax(logits), "head"
            elif face is not None:
                probs, rule = self.late.fuse(text_probs, face.probs, face.reliability), "late"
        modalities: list[schema.Modality] = ["text"] if rule != "face" else []
        if rule != "text":
            modalities.append("visual")
        best = int(probs.argmax())
        done = schema.now()
        trace = {**(visual.trace if visual is not None else {}), **message.trace}
        used_head = self.head.name if rule == "head" and self.head is not None else ""
        event = schema.derive(
            message,
            EmotionEvent,
            id=schema.event_id(message.room, message.speaker, message.utterance, message.session),
            label=EMOTIONS[best],
            probabilities=as_dict(probs),
            confidence=round(float(probs[best]), 6),
            modalities=modalities,
            visual_status=status,
            transcript=message.text,
            visual_description=visual.text if visual is not None else "",
            model="+".join(n for n in (message.model, used_head) if n),
            latency_ms=latencies({**trace, self.name: done}, message.eos_at, done),
            emitted_at=done,
            trace=trace,
            text_probs=as_dict(text_probs),
            face_probs=as_dict(face.probs) if face is not None else {},
            face_reliability=face.reliability if face is not None else 0.0,
            face_frames=face.frames if face is not None else 0,
            face_cues=cue_strings(face.cues) if face is not None else [],
            fusion=rule,
        )
        return [Emit(msgspec.structs.replace(event, driver=driver_of(event)))]

    def status(self, visual: VisualDescription | None, head_usable: bool) -> VisualStatus:
        """``used`` when the face takes part in this decision (head, late fusion or face mode)."""
        mode = self.settings.fusion.mode
        if mode == "text":
            return "disabled"
        if visual is None:
            return "absent"
        if not visual.face_found:
            return "expired" if visual.media_expired else "no_face"
        if mode == "fused" and head_usable:
            return "used"
        if visual.face is None:
            return "absent"
        if mode == "face" or self.late.takes_part(visual.face.reliability):
            return "used"
        return "unreliable"

    async def close(self) -> None:
        await self._follower.stop()


def create(settings: Settings) -> Stage:
    return FusionStage(settings)
