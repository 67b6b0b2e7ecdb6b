"""ASR stage: ``utterances`` (and ``partials``) -> ``transcripts``, faster-whisper on CTranslate2.

One model per process (:meth:`WhisperEngine.shared`), used by every room through one scheduler that
runs model calls in worker threads (``asr.workers`` at once): waiting utterances go first (batched up to
``asr.max_batch``), then partials; a queued partial is dropped when a newer one of the same utterance
arrives (latest wins).

Early partials (``asr.early_partials``), the policy: the segmenter publishes the utterance-so-far as a
PartialAudio once a pause has lasted ``vad.pause_partial_ms``; if the pause lasts the hangover, the
Utterance that follows carries the very same audio blob. So the partial is transcribed *during the
hangover* and the Utterance reuses that result (or waits for the pass already in flight): end of speech
-> transcript costs ``max(0, ASR time - (hangover_ms - pause_partial_ms))`` instead of the full ASR
time. The price is one extra ASR pass per pause that does not end the utterance (the speaker goes on;
~0.7 per utterance on MELD lines), and passes for periodic partials if they are enabled. Measured
numbers: docs/speech.md. No tail-stitching: with short windows (see emostream/inference/whisper.py) a whole 8 s
utterance costs about what a 1 s tail would, and re-decoding keeps full-utterance context. Partials and
their Utterance must reach the same process to reuse work; across Redis consumers a miss just costs a
normal transcription.

An Utterance with ``text`` set (replay with gold text) passes through without ASR.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Histogram

from emostream.config import Settings
from emostream.inference.whisper import Transcription, WhisperEngine, WhisperOptions
from emostream.ingest.audio import SAMPLE_RATE
from emostream.runtime.bounded import remember
from emostream.runtime.errors import BlobExpired
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import Hypothesis, PartialAudio, Transcript, Utterance, Word, derive

RESULTS = Counter("emostream_asr_utterances", "Utterances transcribed, by how", ["how"])
"""how: ``speculative`` (reused a partial's pass), ``fresh``, ``gold`` (text given), ``empty`` (no audio)."""
PARTIALS = Counter("emostream_asr_partials", "Partial audio handled, by outcome", ["result"])
"""result: ``transcribed``, ``superseded`` (a newer partial came first), ``late`` (utterance done)."""
PASSES = Counter("emostream_asr_passes", "Model passes, by beam", ["beam"])
"""beam: ``full`` (``asr.beam_size``) or ``busy`` (``asr.busy_beam_size``: others were waiting)."""
MODEL_SECONDS = Histogram(
    "emostream_asr_model_seconds",
    "Model time per batch",
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2, 5, 10),
)

_CACHE = 512
"""Utterance keys remembered for speculation (bounded: oldest forgotten)."""


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    audio: np.ndarray = field(compare=False, repr=False)
    future: asyncio.Future[Transcription] = field(compare=False, repr=False)
    key: str = field(default="", compare=False)


class Scheduler:
    """Runs model passes in threads, at most ``parallel`` at once (CTranslate2 workers); finals before
    partials; batches finals. One pass alone gets every intra-op thread; two utterances ending together
    run side by side instead of the second waiting for the first."""

    def __init__(
        self, engine: WhisperEngine, max_batch: int = 1, parallel: int = 1, busy_beam: int = 0
    ) -> None:
        self.engine = engine
        self.max_batch = max(1, max_batch)
        self.parallel = max(1, parallel)
        self.busy_beam = busy_beam
        """Beam width of a pass that starts while other passes wait (0: always the engine's own)."""
        self._queue: list[_Job] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, audio: np.ndarray, final: bool, key: str = "") -> asyncio.Future[Transcription]:
        loop = asyncio.get_running_loop()
        if not final and key:  # latest partial of an utterance wins over queued older ones
            for job in [j for j in self._queue if j.priority == 1 and j.key == key]:
                self._queue.remove(job)
                job.future.cancel()
                PARTIALS.labels("superseded").inc()
        self._seq += 1
        job = _Job(0 if final else 1, self._seq, audio, loop.create_future(), key)
        self._queue.append(job)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return job.future

    def promote(self, future: asyncio.Future[Transcription]) -> None:
        """A final now waits on this queued partial's pass: run it with the finals, not after them
        (else the utterance waits behind every other speaker's finals and partials)."""
        for job in self._queue:
            if job.future is future and job.priority == 1:
                job.priority = 0
                self._wake.set()

    async def _run(self) -> None:
        while True:
            self._queue = [j for j in self._queue if not j.future.cancelled()]
            if not self._queue or len(self._running) >= self.parallel:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._queue.sort()
            first = self._queue[0]
            same = [j for j in self._queue if j.priority == first.priority]
            jobs = same[: self.max_batch if first.priority == 0 else 1]
            for j in jobs:
                self._queue.remove(j)
            busy = self.busy_beam > 0 and any(not j.future.cancelled() for j in self._queue)
            PASSES.labels("busy" if busy else "full").inc()
            task = asyncio.create_task(self._pass(jobs, self.busy_beam if busy else 0))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _pass(self, jobs: list[_Job], beam: int = 0) -> None:
        t0 = time.perf_counter()
        try:
            results = await asyncio.to_thread(self.engine.transcribe_batch, [j.audio for j in jobs], beam)
        except Exception as exc:  # the model failed: every waiter sees the error (and retries)
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        MODEL_SECONDS.observe(time.perf_counter() - t0)
        for j, r in zip(jobs, results, strict=True):
            if not j.future.done():
                j.future.set_result(r)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._running) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for j in self._queue:
            j.future.cancel()
        self._queue.clear()


class AsrStage(Stage):
    min_concurrency = 16
    """Handlers only submit to the :class:`Scheduler` (one model pass at a time) and wait: with
    ``stage.concurrency`` (2) two waiting finals would stop every other speaker's pause partial from
    being read, so no speculative pass could run during their hangover."""

    def __init__(self, settings: Settings) -> None:
        super().__init__("asr")
        self.settings = settings
        self.asr = settings.asr
        self.opts = WhisperOptions.from_settings(self.asr)
        self.on(Utterance, self.utterance)
        if self.asr.early_partials:
            self.on(PartialAudio, self.partial)
        self.engine: WhisperEngine | None = None
        self.scheduler: Scheduler | None = None
        self._spec: OrderedDict[str, tuple[int, asyncio.Future[Transcription]]] = OrderedDict()
        """Utterance key -> (pause partial seq, its speculative pass)."""
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._done: OrderedDict[str, None] = OrderedDict()

    async def setup(self, ctx: StageContext) -> None:
        await self.ensure_model()

    async def ensure_model(self) -> WhisperEngine:
        if self.engine is None:
            self.engine = await asyncio.to_thread(WhisperEngine.shared, self.opts, self.settings)
            self.scheduler = Scheduler(
                self.engine, self.asr.max_batch, self.asr.workers, self.asr.busy_beam_size
            )
        return self.engine

    async def utterance(self, message: Utterance, ctx: StageContext) -> list[Emit]:
        return [Emit(await self.transcribe(message, ctx))]

    async def partial(self, message: PartialAudio, ctx: StageContext) -> list[Emit]:
        """Start a speculative pass on partial audio (its result waits for the Utterance)."""
        await self._partial(message, ctx)
        return []

    async def transcribe(self, msg: Utterance, ctx: StageContext) -> Transcript:
        """The Transcript of one utterance (gold text, a speculative result, or a fresh pass)."""
        key = msg.key
        remember(self._done, key, None, _CACHE)
        self._latest.pop(key, None)
        spec = self._spec.pop(key, None)
        if msg.text:
            RESULTS.labels("gold").inc()
            return self._transcript(msg, Transcription(text=msg.text), model="gold")
        await self.ensure_model()
        assert self.scheduler is not None
        result: Transcription | None = None
        if (
            spec is not None
            and msg.partial_seq >= 0
            and spec[0] == msg.partial_seq
            and not spec[1].cancelled()
        ):
            self.scheduler.promote(spec[1])
            try:
                result = await asyncio.shield(spec[1])
                RESULTS.labels("speculative").inc()
            except (asyncio.CancelledError, Exception):
                result = None
        elif spec is not None:  # an older partial's pass nobody will read: drop it if still queued
            spec[1].cancel()
        if result is None:
            audio = await _audio(ctx, msg.audio, msg.sample_rate)
            if audio is None:
                RESULTS.labels("empty").inc()
                raise BlobExpired(f"audio blob {msg.audio!r} of {key} is missing or expired (TTL)")
            result = await self.scheduler.submit(audio, final=True, key=key)
            RESULTS.labels("fresh").inc()
        return self._transcript(msg, result, model=self.opts.model)

    async def _partial(self, msg: PartialAudio, ctx: StageContext) -> None:
        key = msg.key
        if key in self._done:
            PARTIALS.labels("late").inc()
            return
        if self._latest.get(key, -1) > msg.seq:
            PARTIALS.labels("superseded").inc()
            return
        remember(self._latest, key, msg.seq, _CACHE)
        await self.ensure_model()
        assert self.scheduler is not None
        audio = await _audio(ctx, msg.audio, msg.sample_rate)
        if audio is None:
            return
        future = self.scheduler.submit(audio, final=False, key=key)
        future.add_done_callback(_count_partial)
        old = self._spec.get(key)
        if old is not None and not old[1].done():
            old[1].cancel()
        remember(self._spec, key, (msg.seq, future), _CACHE)

    def _transcript(self, msg: Utterance, r: Transcription, model: str) -> Transcript:
        words = [
            Word(start=msg.start + w.start, end=msg.start + w.end, word=w.word, probability=w.probability)
            for w in r.words
        ]
        hypotheses = [Hypothesis(text=t, weight=w) for t, w in r.hypotheses]
        return derive(
            msg,
            Transcript,
            text=r.text,
            words=words,
            language=r.language,
            model=model,
            hypotheses=hypotheses,
        )

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.close()
        self._spec.clear()


def _count_partial(fut: asyncio.Future[Transcription]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        PARTIALS.labels("transcribed").inc()


async def _audio(ctx: StageContext, ref: str, sample_rate: int) -> np.ndarray | None:
    if not ref:
        return None
    data = await ctx.bus.get_blob(ref)
    if data is None:
        return None
    audio = np.frombuffer(data, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        from emostream.ingest.audio import to_16k_mono

        audio = to_16k_mono(audio, sample_rate)
    return audio


def create(settings: Settings) -> Stage:
    """Entry point of ``emostream worker asr``."""
    return AsrStage(settings)
