"""`vlm` stage: KeyFrames -> refined factual description + sentence embedding (VisualDescription).

The configured describer (``vlm.backend``) writes about the masked key-frame crops; its text is
refined (no emotion words, no duplicates, 2-3 sentences) and embedded with the torch-free sentence
encoder. When the chosen backend fails (server down, timeout) or leaves nothing after refinement, the
embedded ``landmarks`` describer answers instead (``backend`` then reads e.g. ``landmarks<-openai``),
so fusion is never left waiting. No face in the utterance: a VisualDescription saying so, without
embedding and with ``face_found=False``. Embeddings are remembered by text (``_EMBEDDINGS`` of them):
the landmarks describer composes its sentences from fixed phrases, so a steady face repeats its
description and the encoder runs once for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

import msgspec
from prometheus_client import Counter

from emostream import schema
from emostream.config import Settings
from emostream.runtime.bounded import remember
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import KeyFrames, VisualDescription
from emostream.workers.vlm.base import Describer, create_describer
from emostream.workers.vlm.landmarks import LandmarksDescriber
from emostream.workers.vlm.refine import refine

if TYPE_CHECKING:
    from emostream.inference.encoder import SentenceEncoder

log = logging.getLogger("emostream.vlm")

DESCRIPTIONS = Counter(
    "emostream_vlm_descriptions", "Visual descriptions published, by backend that wrote them", ["backend"]
)
"""``landmarks<-openai`` etc. count fallbacks; ``none`` counts no-face utterances."""

EMBEDDED = Counter("emostream_vlm_embeddings", "Description embeddings, by how", ["how"])
"""how: ``encoded`` (the sentence encoder ran) or ``remembered`` (the same text was embedded before)."""
_EMBEDDINGS = 512
"""Description texts whose embedding is kept (oldest forgotten)."""

NO_FACE = "No face is visible in the video during this utterance."


class VlmStage(Stage):
    def __init__(
        self,
        settings: Settings,
        describer: Describer | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> None:
        super().__init__("vlm")
        self.on(KeyFrames, self.keyframes)
        self.settings = settings
        self.describer = describer
        self.encoder = encoder
        self.fallback = LandmarksDescriber()
        self.fallbacks = 0
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()
        """Utterances answered by the landmarks describer because the configured one failed."""

    async def setup(self, ctx: StageContext) -> None:
        if self.describer is None:
            self.describer = await asyncio.to_thread(create_describer, self.settings)
        if self.encoder is None:
            from emostream.inference.encoder import SentenceEncoder

            self.encoder = await asyncio.to_thread(
                SentenceEncoder.from_store, self.settings.vlm.encoder, self.settings
            )

    async def keyframes(self, message: KeyFrames, ctx: StageContext) -> list[Emit]:
        if self.describer is None or self.encoder is None:
            await self.setup(ctx)
        assert self.describer is not None and self.encoder is not None
        if not message.face_found or not message.frames:
            DESCRIPTIONS.labels("none").inc()
            gone = message.frames_seen > 0 and message.frames_expired == message.frames_seen
            out = self._message(message, text=NO_FACE, face_found=False, backend=self.describer.name)
            return [Emit(msgspec.structs.replace(out, media_expired=gone))]
        text, backend = await self.describe(message, ctx)
        DESCRIPTIONS.labels(backend).inc()
        embedding = await self._embed(text)
        confidence = sum(max(f.expression, default=0.0) for f in message.frames) / len(message.frames)
        out = self._message(
            message,
            text=text,
            embedding=embedding,
            encoder=self.encoder.name,
            backend=backend,
            face_found=True,
            confidence=round(confidence, 4),
        )
        return [Emit(out)]

    async def _embed(self, text: str) -> list[float]:
        assert self.encoder is not None
        vector = self._vectors.get(text)
        if vector is None:
            vector = [float(x) for x in (await asyncio.to_thread(self.encoder.encode, [text]))[0]]
            EMBEDDED.labels("encoded").inc()
        else:
            EMBEDDED.labels("remembered").inc()
        remember(self._vectors, text, vector, _EMBEDDINGS)
        return vector

    def _message(
        self,
        kf: KeyFrames,
        *,
        text: str,
        backend: str,
        face_found: bool,
        embedding: list[float] | None = None,
        encoder: str = "",
        confidence: float = 0.0,
    ) -> VisualDescription:
        return schema.derive(
            kf,
            VisualDescription,
            text=text,
            embedding=embedding,
            encoder=encoder,
            backend=backend,
            face_found=face_found,
            confidence=confidence,
            face=kf.face if face_found else None,
        )

    async def describe(self, message: KeyFrames, ctx: StageContext) -> tuple[str, str]:
        """Refined text and the name of the backend that produced it."""
        assert self.describer is not None
        max_s = self.settings.vlm.max_sentences
        name = self.describer.name
        if name != LandmarksDescriber.name:
            crops = [b for b in [await ctx.bus.get_blob(f.crop) for f in message.frames if f.crop] if b]
            try:
                text = refine(await self.describer.describe(message, crops), max_s)
            except Exception as exc:  # a remote/optional backend must not stall the pipeline
                log.warning("vlm backend failed, using landmarks", extra={"backend": name, "error": str(exc)})
                text = ""
            if text:
                return text, name
            self.fallbacks += 1
            name = f"{LandmarksDescriber.name}<-{name}"
        return refine(self.fallback.describe_sync(message), max_s), name

    async def close(self) -> None:
        if self.describer is not None:
            await self.describer.close()


def create(settings: Settings) -> Stage:
    return VlmStage(settings)
