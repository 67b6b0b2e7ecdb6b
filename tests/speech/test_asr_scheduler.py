"""ASR's model scheduler: finals before partials, a final's own partial promoted, parallel passes.

The engine here is a recorder (no model): these tests are about order and concurrency only; the real
model's passes are covered in test_asr.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np

from emostream.inference.whisper import Transcription
from emostream.workers.asr import Scheduler


class Recorder:
    """Stands in for WhisperEngine: each pass takes ``pass_s``; records the order and overlap."""

    def __init__(self, pass_s: float = 0.05) -> None:
        self.pass_s = pass_s
        self.order: list[float] = []
        self.beams: list[int] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def transcribe_batch(self, audios: list[Any], beam: int = 0) -> list[Transcription]:
        with self._lock:
            self.beams.append(beam)
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(self.pass_s)
        with self._lock:
            self.running -= 1
            self.order += [float(a[0]) for a in audios]
        return [Transcription(text=str(a[0])) for a in audios]


def _audio(tag: int) -> np.ndarray:
    return np.full(160, tag, np.float32)


async def test_a_final_waiting_on_its_partial_runs_that_partial_before_other_partials() -> None:
    engine = Recorder()
    sched = Scheduler(engine)  # type: ignore[arg-type]
    busy = sched.submit(_audio(0), final=False, key="a")  # running while the rest queue up
    await asyncio.sleep(0.01)
    others = [sched.submit(_audio(i), final=False, key=f"o{i}") for i in (1, 2, 3)]
    mine = sched.submit(_audio(9), final=False, key="me")
    sched.promote(mine)  # the utterance of key "me" ended and waits on this partial's pass
    await asyncio.gather(busy, mine, *others)
    assert engine.order == [0, 9, 1, 2, 3]
    await sched.close()


async def test_a_final_jumps_queued_partials_but_not_the_running_pass() -> None:
    engine = Recorder()
    sched = Scheduler(engine)  # type: ignore[arg-type]
    futures = [sched.submit(_audio(0), final=False, key="k0")]
    await asyncio.sleep(0.01)  # k0 is running
    futures += [sched.submit(_audio(i), final=False, key=f"k{i}") for i in (1, 2)]
    futures.append(sched.submit(_audio(5), final=True, key="f"))
    await asyncio.gather(*futures)
    assert engine.order == [0, 5, 1, 2]  # the final jumps the queued partials, not the running one
    await sched.close()


async def test_parallel_passes_overlap_up_to_the_limit() -> None:
    for parallel in (1, 2):
        engine = Recorder(pass_s=0.1)
        sched = Scheduler(engine, parallel=parallel)  # type: ignore[arg-type]
        t0 = time.monotonic()
        await asyncio.gather(*[sched.submit(_audio(i), final=True) for i in range(4)])
        took = time.monotonic() - t0
        assert engine.most == parallel
        assert sorted(engine.order) == [0, 1, 2, 3]
        assert took >= 0.4 / parallel - 0.02
        await sched.close()


async def test_cancelled_jobs_never_run() -> None:
    engine = Recorder()
    sched = Scheduler(engine)  # type: ignore[arg-type]
    first = sched.submit(_audio(0), final=True)
    dropped = sched.submit(_audio(1), final=False, key="x")
    dropped.cancel()
    await first
    await asyncio.sleep(0.1)
    assert engine.order == [0]
    await sched.close()


async def test_the_stage_reuses_its_partial_ahead_of_other_speakers_partials() -> None:
    from emostream.bus.memory import MemoryBus
    from emostream.config import Settings
    from emostream.runtime.stage import StageContext
    from emostream.schema import PartialAudio, Utterance
    from emostream.workers.asr import AsrStage

    bus = MemoryBus()
    ctx = StageContext(bus=bus, settings=Settings(), stage="asr", consumer="t")
    stage = AsrStage(Settings())
    engine = Recorder()
    stage.engine = engine  # type: ignore[assignment]
    stage.scheduler = Scheduler(engine)  # type: ignore[arg-type]

    async def partial(speaker: str, tag: int, seq: int = 0) -> PartialAudio:
        ref = await bus.put_blob(f"{speaker}{seq}", _audio(tag).tobytes(), 60)
        return PartialAudio(room="r", speaker=speaker, utterance=0, start=0, end=1, seq=seq, audio=ref)

    for speaker, tag in (("a", 0), ("b", 1), ("c", 2), ("me", 9)):
        await stage.handle(await partial(speaker, tag), ctx)
        await asyncio.sleep(0.005)  # "a" starts running, the rest queue
    ref = await bus.put_blob("u", _audio(7).tobytes(), 60)
    utt = Utterance(room="r", speaker="me", utterance=0, start=0, end=1, audio=ref, partial_seq=0)
    (emit,) = await stage.handle(utt, ctx)
    assert emit.message.text == "9.0"  # type: ignore[attr-defined]  # the partial's pass, reused
    assert engine.order[:2] == [0, 9]  # promoted past b's and c's queued partials
    # an utterance whose partial is not the one transcribed: the queued pass is dropped, a fresh one runs
    await stage.handle(await partial("d", 3), ctx)
    ref = await bus.put_blob("u2", _audio(8).tobytes(), 60)
    other = Utterance(room="r", speaker="d", utterance=0, start=0, end=1, audio=ref, partial_seq=4)
    (emit,) = await stage.handle(other, ctx)
    assert emit.message.text == "8.0"  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    assert 3.0 not in engine.order
    await stage.close()


async def test_a_pass_started_while_others_wait_uses_the_busy_beam() -> None:
    engine = Recorder()
    sched = Scheduler(engine, busy_beam=1)  # type: ignore[arg-type]
    await sched.submit(_audio(0), final=True, key="alone")  # nobody waiting: the configured beam
    first = sched.submit(_audio(1), final=True, key="a")
    await asyncio.sleep(0.01)  # running; two more queue behind it
    rest = [sched.submit(_audio(i), final=True, key=f"k{i}") for i in (2, 3)]
    await asyncio.gather(first, *rest)
    # 0 alone, 1 started with nothing queued yet, 2 started with 3 waiting, 3 started last and alone
    assert engine.order == [0, 1, 2, 3]
    assert engine.beams == [0, 0, 1, 0]
    await sched.close()


async def test_busy_beam_off_keeps_the_configured_beam() -> None:
    engine = Recorder()
    sched = Scheduler(engine)  # type: ignore[arg-type]
    await asyncio.gather(*[sched.submit(_audio(i), final=True, key=f"k{i}") for i in range(3)])
    assert engine.beams == [0, 0, 0]
    await sched.close()
