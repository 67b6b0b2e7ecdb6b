"""Drive a MELD split through the in-process pipeline (memory bus) and collect one result per CSV row.

Each dialogue is a room and each MELD speaker a participant. Within a room, utterances are fed in
speaking order and (as fast as possible) the next one is fed only after the previous one's event came
back, exactly like turns in a call: the context stage sees the same history ``emostream eval meld``
builds. Up to ``jobs`` rooms run at once, which keeps both CPU cores busy. With ``realtime`` the media is
fed at its own pace instead and events are awaited at the end of the dialogue.

Events map back to rows by identity: the ingest numbers each participant's utterances 0, 1, ... in
speaking order and remembers (room, participant, number) -> row. A row whose event does not come within
``timeout_s`` is recorded as unanswered (counted wrong in the metrics).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from emostream.bus import open_bus
from emostream.bus.base import Bus
from emostream.config import Settings
from emostream.errors import UserError
from emostream.evaluation.meld import Utterance as Row
from emostream.replay.collect import Collector, event_dict
from emostream.replay.ingest import DialogueIngest
from emostream.replay.layout import MeldLayout
from emostream.replay.metrics import RowResult
from emostream.replay.state import RunState
from emostream.runtime import topology
from emostream.runtime.pipeline import Pipeline
from emostream.schema import EmotionEvent, RoomControl, encode, now, utterance_key

TextSource = Literal["gold", "asr"]
REPLAY_VISUAL_WAIT_MS = 5_000
"""As-fast-as-possible replays saturate the CPUs, so the face branch falls far behind its real-time pace;
fusion waits this long for it (``fusion.deadline_ms`` still applies to ``--realtime`` replays), so the
decisions are those of a machine that keeps up. Latencies then include the wait."""


@dataclass
class ReplayPlan:
    """What to replay and how (built by the command from its arguments)."""

    layout: MeldLayout
    dialogues: dict[int, list[Row]]
    text: TextSource = "gold"
    realtime: bool = False
    jobs: int = 2
    """Rooms replayed at the same time."""
    timeout_s: float = 60.0
    """Longest wait for one utterance's event before it is recorded as unanswered."""
    media: bool = True
    """False for a CSV-only root (or ``--no-media``): text-only replay."""
    notes: list[str] = field(default_factory=list)


def participant_ids(rows: list[Row]) -> dict[str, str]:
    """MELD speaker name -> participant id (slug, unique within the dialogue)."""
    ids: dict[str, str] = {}
    for r in rows:
        if r.speaker in ids:
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", r.speaker.lower()).strip("-") or "speaker"
        base, n = slug, 2
        while slug in ids.values():
            slug, n = f"{base}-{n}", n + 1
        ids[r.speaker] = slug
    return ids


def room_id(split: str, dialogue: int) -> str:
    return f"meld-{split}-dia{dialogue}"


class Replayer:
    """Runs the pipeline for a plan and writes one finished dialogue at a time into ``state``."""

    def __init__(
        self,
        plan: ReplayPlan,
        settings: Settings,
        state: RunState,
        progress: Callable[[str, int, int], None] | None = None,
        warn: Callable[[str], None] | None = None,
        finished: Callable[[int, list[RowResult]], None] | None = None,
    ) -> None:
        self.plan, self.settings, self.state = plan, settings, state
        self.progress = progress or (lambda *_: None)
        self.warn = warn or (lambda _: None)
        self.finished = finished or (lambda *_: None)
        self.collector = Collector()
        self.answered = 0

    async def run(self, todo: list[int]) -> float:
        """Replay dialogues ``todo``; return the wall seconds from pipeline ready to last event."""
        settings = self.settings
        if not self.plan.media:  # no visual branch runs: fusion must not wait for it
            settings = msgspec.structs.replace(
                settings, fusion=msgspec.structs.replace(settings.fusion, deadline_ms=0)
            )
        elif not self.plan.realtime:  # fed faster than real time, the face lags: wait for it
            deadline = max(settings.fusion.deadline_ms, REPLAY_VISUAL_WAIT_MS)
            settings = msgspec.structs.replace(
                settings, fusion=msgspec.structs.replace(settings.fusion, deadline_ms=deadline)
            )
        bus = open_bus("memory://", settings.bus)
        names = topology.PIPELINE if self.plan.media else topology.TEXT_ONLY
        pipeline = Pipeline(bus, settings)
        for stage in [*topology.build(settings, names), self.collector]:
            pipeline.add(stage, consumer=f"replay-{stage.name}")
        stop, ready = asyncio.Event(), asyncio.Event()
        runner = asyncio.create_task(pipeline.run(stop, ready))
        try:
            await _first(runner, ready.wait())
            sem = asyncio.Semaphore(max(1, self.plan.jobs))

            async def one(d: int) -> None:
                async with sem:
                    await self._dialogue(bus, d)

            t0 = time.perf_counter()
            work = asyncio.gather(*(one(d) for d in todo))
            await _first(runner, work)
            return time.perf_counter() - t0
        finally:
            stop.set()
            try:
                await asyncio.wait_for(runner, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                runner.cancel()
            await bus.close()

    async def _dialogue(self, bus: Bus, dialogue: int) -> None:
        plan, rows = self.plan, self.plan.dialogues[dialogue]
        room = room_id(plan.layout.split, dialogue)
        people = participant_ids(rows)
        await _control(bus, RoomControl(room=room, action="room_start", at=now()))
        for name, pid in people.items():
            await _control(
                bus, RoomControl(room=room, action="join", participant=pid, display_name=name, at=now())
            )
        ingest = DialogueIngest(bus, self.settings, room, realtime=plan.realtime, gold=plan.text == "gold")
        counters: dict[str, int] = {}
        pending: list[_Pending] = []
        fed_all: list[_Pending] = []
        results: list[RowResult] = []
        self.progress(f"dia{dialogue}", 0, len(rows))
        order: list[tuple[Row, str, int, Path | None]] = []
        for row in rows:
            pid = people[row.speaker]
            n = counters[pid] = counters.get(pid, -1) + 1
            order.append((row, pid, n, plan.layout.clip(dialogue, row.index) if plan.media else None))
        # decode row k+1 while row k is in the pipeline (its place on the timeline is known by then)
        upcoming = asyncio.create_task(ingest.prepare(*order[0]))
        try:
            for i, (row, pid, n, _) in enumerate(order):
                prepared = await upcoming
                if i + 1 < len(order):
                    upcoming = asyncio.create_task(ingest.prepare(*order[i + 1]))
                fed = await ingest.finish(prepared)
                if fed.warning:
                    self.warn(fed.warning)
                key = utterance_key(room, pid, n)
                fut = self.collector.expect(key)
                await bus.publish("utterances", encode(fed.utterance))
                pending.append(_Pending(row, key, fed.source, fed.note, fut))
                fed_all.append(pending[-1])
                if not plan.realtime:
                    await self._settle(pending, results)
                self.progress(f"dia{dialogue}", i + 1, len(rows))
            await self._settle(pending, results)
            features = await self._features(fed_all)
        finally:
            upcoming.cancel()
            ingest.close()
        for pid in people.values():
            await _control(bus, RoomControl(room=room, action="leave", participant=pid, at=now()))
        await _control(bus, RoomControl(room=room, action="room_end", at=now()))
        self.state.save(dialogue, results, features)
        self.finished(dialogue, results)

    async def _settle(self, pending: list[_Pending], results: list[RowResult]) -> None:
        for p in pending:
            event = None
            note = p.note
            try:
                event = await asyncio.wait_for(p.future, timeout=self.plan.timeout_s)
            except TimeoutError:
                note = (note + "; " if note else "") + f"no event within {self.plan.timeout_s:.0f} s"
                self.warn(
                    f"dia{p.row.dialogue}_utt{p.row.index}: no event within {self.plan.timeout_s:.0f} s"
                )
            data = event_dict(event) if event is not None else None
            self.answered += data is not None
            row = p.row
            results.append(
                RowResult(
                    dialogue=row.dialogue,
                    index=row.index,
                    speaker=row.speaker,
                    text=row.text,
                    true=row.emotion,
                    pred=data["label"] if data else None,
                    source=p.source,
                    event=data,
                    note=note,
                )
            )
        pending.clear()

    async def _features(self, fed: list[_Pending]) -> list[dict[str, object]]:
        """Features of a finished dialogue, after the visual branch caught up with its clips."""
        visual = [p.key for p in fed if p.source == "clip"]
        if visual:
            missing = await self.collector.visual_done(visual, self.plan.timeout_s)
            if missing:
                self.warn(f"{missing} visual description(s) never arrived; their features lack them")
        out: list[dict[str, object]] = []
        for p in fed:
            row = p.row
            out.append(
                {
                    "dialogue": row.dialogue,
                    "utterance_id": row.index,
                    "speaker": row.speaker,
                    "text": row.text,
                    "emotion": row.emotion,
                    "source": p.source,
                    **self.collector.forget(p.key),
                }
            )
        return out


@dataclass
class _Pending:
    """An utterance fed to the pipeline whose event is awaited."""

    row: Row
    key: str
    source: str
    note: str
    future: asyncio.Future[EmotionEvent]


async def _control(bus: Bus, msg: RoomControl) -> None:
    await bus.publish(RoomControl.stream, encode(msg))


async def _first(runner: asyncio.Task[Any], other: Awaitable[Any]) -> None:
    """Await ``other`` but fail fast if the pipeline task dies first (e.g. a stage's model is missing)."""
    task = asyncio.ensure_future(other)
    done, _ = await asyncio.wait({runner, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        return
    task.cancel()
    exc = runner.exception()
    if exc is not None:
        raise exc
    raise UserError("the pipeline stopped before the replay finished")


def run_replay(
    plan: ReplayPlan,
    settings: Settings,
    state: RunState,
    todo: list[int],
    progress: Callable[[str, int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
    finished: Callable[[int, list[RowResult]], None] | None = None,
) -> float:
    """Replay ``todo`` and return the wall seconds of the replay proper (model loading excluded)."""
    if not todo:
        return 0.0
    return asyncio.run(Replayer(plan, settings, state, progress, warn, finished).run(todo))


def default_out(root: Path, split: str, text: str) -> Path:
    return Path("out") / f"replay-{root.name or 'meld'}-{split}-{text}"
