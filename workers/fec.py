"""`fec` stage: an utterance's sampled frames -> key frames of the speaker's face (KeyFrames).

Per frame: MediaPipe FaceLandmarker (faces, 478 landmarks, 52 blendshapes, head pose) and 7-class
expression probabilities (FER on LiteRT, or DeepFace when configured and present). The speaker's face
is the track whose mouth moves during the utterance's speech frames when several faces compete, else the
largest, most consistently present one (:mod:`emostream.workers.face.speaker`). The face expert
(:mod:`emostream.workers.face.expert`) turns all the speaker's frames into one quality-weighted 7-class reading
with a reliability (``KeyFrames.face``), which fusion combines with the text. The top-k
frames by expression confidence and change are kept in time order, each with a masked face crop
(background black) stored as a JPEG blob for the VLM. Bad frames (expired blob, corrupt JPEG, tiny or
odd images) are counted in ``frames_bad`` and skipped; an utterance with no usable face still yields a
KeyFrames with ``face_found=False`` so the downstream stages never wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import msgspec
import numpy as np
from prometheus_client import Counter

from emostream import schema
from emostream.config import Settings
from emostream.runtime.bounded import remember
from emostream.runtime.niceness import lower_this_thread
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import FaceFrame, FaceReading, KeyFrames, PartialAudio, Utterance
from emostream.workers.face.analyze import Analysis, AnalyzeOptions, FaceAnalyzer

FRAMES = Counter("emostream_fec_frames", "Utterance frames seen by the fec stage, by outcome", ["outcome"])
"""outcome: ``face`` (at least one face found), ``no_face``, ``bad`` (expired, corrupt, tiny or odd)."""
EXPIRED = Counter(
    "emostream_fec_frames_expired", "Frames whose media blob was gone when read (also counted as bad)"
)
UTTERANCES = Counter("emostream_fec_utterances", "Utterances analysed, by whether a face was found", ["face"])
EARLY = Counter(
    "emostream_fec_early", "Pause partials whose frames fec read ahead of end of speech", ["outcome"]
)
log = logging.getLogger("emostream.fec")


def analyze_options(settings: Settings) -> AnalyzeOptions:
    return AnalyzeOptions(
        top_k=settings.fec.top_k,
        mask_background=settings.fec.mask_background,
        max_side=settings.frames.max_side,
        crop_size=settings.fec.crop_size,
        memo_frames=settings.fec.memo_frames,
        nice=settings.fec.nice,
    )


def build_analyzer(settings: Settings) -> FaceAnalyzer:
    """Load the landmarker and the expression model from the store (once per process)."""
    from emostream.workers.face.expression import create_expression_model
    from emostream.workers.face.landmarks import FaceLandmarks
    from emostream.workers.face.quality import FaceScorer

    expression = create_expression_model(settings.fec.backend, settings)
    pool = [
        FaceLandmarks.from_store(max_faces=settings.fec.max_faces, settings=settings)
        for _ in range(max(1, settings.fec.threads))
    ]
    return FaceAnalyzer(pool, expression, analyze_options(settings), FaceScorer.from_store(settings))


class FecStage(Stage):
    def __init__(self, settings: Settings, analyzer: FaceAnalyzer | None = None) -> None:
        super().__init__("fec")
        self.on(Utterance, self.utterance)
        self.on(PartialAudio, self.partial)
        self.settings = settings
        self.analyzer = analyzer
        self._owns_analyzer = analyzer is None
        self._early: OrderedDict[str, asyncio.Future[Analysis]] = OrderedDict()
        """Utterance key -> the pause partial's pass (its utterance waits for it while it runs)."""
        self._runner = ThreadPoolExecutor(
            max(1, settings.stage.concurrency),
            "fec-run",
            initializer=lower_this_thread,
            initargs=(settings.fec.nice,),
        )
        """Where analyses run: threads at ``fec.nice`` (the default executor serves everything else)."""
        self._done: OrderedDict[str, None] = OrderedDict()
        """Utterances already read: a partial delivered after its utterance is not read any more."""

    async def setup(self, ctx: StageContext) -> None:
        if self.analyzer is None:
            self.analyzer = await asyncio.to_thread(build_analyzer, self.settings)

    async def partial(self, message: PartialAudio, ctx: StageContext) -> list[Emit]:
        """The pause partial's frames, read during the hangover: the analyzer remembers each frame, so
        the Utterance that follows has only its newest frames left to read. Publishes nothing."""
        running = self._early.get(message.key)
        if not message.frames or message.key in self._done or (running is not None and not running.done()):
            EARLY.labels("skipped").inc()
            return []
        if self.analyzer is None:
            await self.setup(ctx)
        assert self.analyzer is not None
        blobs = [await ctx.bus.get_blob(f.blob) for f in message.frames]
        frames = [(f.t, b) for f, b in zip(message.frames, blobs, strict=True) if b is not None]
        run = asyncio.ensure_future(self._analyze(frames, (message.start, message.end)))
        remember(self._early, message.key, run, 64)  # bounded: a pause that did not end its utterance
        try:
            await asyncio.shield(run)
            EARLY.labels("read").inc()
        except Exception as exc:  # the utterance's own pass will meet (and report) the same problem
            EARLY.labels("failed").inc()
            log.warning("early face pass failed", extra={"utterance": message.key, "error": str(exc)})
        return []

    async def utterance(self, message: Utterance, ctx: StageContext) -> list[Emit]:
        if self.analyzer is None:
            await self.setup(ctx)
        assert self.analyzer is not None
        remember(self._done, message.key, None, 256)
        early = self._early.pop(message.key, None)
        if early is not None:  # its frames are being read right now: wait, then reuse them
            await asyncio.wait([early])
        blobs = [await ctx.bus.get_blob(f.blob) for f in message.frames]
        expired = sum(b is None for b in blobs)
        if expired:
            EXPIRED.inc(expired)
            log.warning(
                "face frames' media gone before the face expert read them (blob TTL, or published before "
                "the fec group existed): counted as bad frames",
                extra={"utterance": message.key, "expired": expired, "frames": len(blobs)},
            )
        frames = [(f.t, b) for f, b in zip(message.frames, blobs, strict=True)]  # decoded in the pool
        analysis = await self._analyze(frames, (message.start, message.end))
        FRAMES.labels("face").inc(analysis.frames_with_face)
        FRAMES.labels("bad").inc(analysis.frames_bad)
        FRAMES.labels("no_face").inc(analysis.frames_seen - analysis.frames_bad - analysis.frames_with_face)
        UTTERANCES.labels("yes" if analysis.face_found else "no").inc()
        out = await to_keyframes(message, analysis, ctx, self.settings.bus.blob_ttl_s)
        return [Emit(msgspec.structs.replace(out, frames_expired=expired))]

    async def _analyze(
        self, frames: Sequence[tuple[float, bytes | None]], speech: tuple[float, float]
    ) -> Analysis:
        assert self.analyzer is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._runner, self.analyzer.analyze, frames, speech)

    async def close(self) -> None:
        await asyncio.to_thread(self._runner.shutdown, True)
        if self._owns_analyzer and self.analyzer is not None:
            self.analyzer.close()
            self.analyzer = None


async def to_keyframes(utt: Utterance, analysis: Analysis, ctx: StageContext, ttl_s: float) -> KeyFrames:
    """Store the masked crops as blobs and build the KeyFrames message (key frames in time order)."""
    frames: list[FaceFrame] = []
    for i, kf in enumerate(analysis.key_frames):
        ref = await ctx.bus.put_blob(f"face/{utt.key}/{i}", kf.crop_jpeg, ttl_s)
        frames.append(
            FaceFrame(
                t=kf.t,
                box=kf.box,
                expression=[round(float(p), 5) for p in np.asarray(kf.expression)],
                blendshapes={k: round(v, 4) for k, v in kf.face.blendshapes.items()},
                head_pose=tuple(round(float(a), 2) for a in kf.face.head_pose),  # type: ignore[arg-type]
                crop=ref,
                score=round(kf.score, 5),
                quality=round(kf.quality, 4),
            )
        )
    ev = analysis.evidence
    reading = None
    if ev is not None:
        probs = [round(float(p), 5) for p in ev.probs]
        reading = FaceReading(probs=probs, reliability=ev.reliability, frames=ev.frames_used, cues=ev.cues)
    return schema.derive(
        utt,
        KeyFrames,
        frames=frames,
        frames_seen=analysis.frames_seen,
        frames_bad=analysis.frames_bad,
        face_found=analysis.face_found,
        face=reading,
    )


def create(settings: Settings) -> Stage:
    return FecStage(settings)
