"""`context` stage: Transcript -> TextContext (the text teacher over the room's dialogue so far).

Each room keeps its last ``context.history`` utterances (:class:`emostream.inference.dialogue.DialogueHistory`,
start-time order, past-only). For each new transcript the stage builds the teacher input (speaker tokens,
left-truncated history, "now <sK> feels [MASK]") and runs the INT8 ONNX model off the event loop; a model
with a dialogue model encodes each utterance alone and decides over the window of encodings
(:meth:`emostream.inference.text.TextModel.decide`).

With several context workers on Redis, the consumer group splits a room's transcripts between them, so
every worker also tails the transcripts stream without a group into its histories: each one sees the whole
conversation however the work is split. Adding a turn is idempotent per utterance key (redelivery and the
tail do not duplicate it). ``room_start`` and ``room_end`` forget a room, and so does a silence longer
than ``context.room_idle_s`` (a reused room id starts a new dialogue); beyond ``context.max_rooms`` the
least recently active room is forgotten. Turns are keyed with their ingest session
(:attr:`emostream.schema.Keyed.session`), so a participant who joins again is not taken for a redelivery.

A worker that starts (a restart after a crash, or a new replica) first rebuilds every room's history
from the bus: the retained ``transcripts`` and ``rooms`` entries, in stream order (bounded by
``bus.maxlen`` and ``bus.retention_s``), so it decides exactly as a worker that never stopped.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from emostream import schema
from emostream.bus import Bus
from emostream.config import Settings
from emostream.inference.dialogue import DialogueHistory, Encoding, Window
from emostream.inference.onnx import RuntimeOptions
from emostream.inference.text import TextModel
from emostream.runtime.follow import Follower, id_key
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import Message, RoomControl, TextContext, Transcript


class Rooms:
    """Bounded map room -> DialogueHistory (least recently active room evicted first)."""

    def __init__(self, model: TextModel, history: int, max_rooms: int, idle_s: float = 600.0) -> None:
        self.model = model
        self.history = history
        self.max_rooms = max_rooms
        self.idle_s = idle_s
        self.rooms: OrderedDict[str, DialogueHistory] = OrderedDict()
        self.last_at: dict[str, float] = {}
        """Room -> wall-clock end of speech of its newest turn (a long silence starts a new dialogue)."""

    def get(self, room: str) -> DialogueHistory:
        h = self.rooms.get(room)
        if h is None:
            h = self.rooms[room] = DialogueHistory(self.model.builder, self.history)
            while len(self.rooms) > self.max_rooms:
                gone, _ = self.rooms.popitem(last=False)
                self.last_at.pop(gone, None)
        self.rooms.move_to_end(room)
        return h

    def add(self, t: Transcript) -> Window:
        at = t.eos_at or max(t.trace.values(), default=0.0)
        last = self.last_at.get(t.room, 0.0)
        if at and last and at - last > self.idle_s:
            self.end(t.room)  # a reused room id: the earlier conversation is not this one's context
        if at > last:
            self.last_at[t.room] = at
        heard = [(h.text, h.weight) for h in t.hypotheses]
        return self.get(t.room).add(t.key, t.speaker, t.start, t.text, heard)

    def remember(self, room: str, encodings: dict[str, Encoding]) -> None:
        """Keep turn encodings computed for a decision (a room forgotten meanwhile keeps nothing)."""
        history = self.rooms.get(room)
        if history is not None and encodings:
            history.remember(encodings)

    def end(self, room: str) -> None:
        self.rooms.pop(room, None)
        self.last_at.pop(room, None)

    def control(self, message: RoomControl) -> None:
        """``room_end`` forgets the room; ``room_start`` forgets only turns older than the start: the
        ``rooms`` and ``transcripts`` streams are handled concurrently, so the new session's first
        turns may already be in when its ``room_start`` is handled."""
        if message.action == "room_end":
            self.end(message.room)
        elif message.action == "room_start":
            last = self.last_at.get(message.room)
            if message.at <= 0 or last is None or last < message.at:
                self.end(message.room)


class ContextStage(Stage):
    def __init__(self, settings: Settings, model: TextModel | None = None, follow: bool = True) -> None:
        super().__init__("context")
        self.on(Transcript, self.transcript)
        self.on(RoomControl, self.room_control)
        self.settings = settings
        self.model = model
        self.follow = follow
        self.rooms: Rooms | None = None
        self._follower = Follower(Transcript, self._seen, from_start=False, block_ms=settings.bus.block_ms)
        """Tails every transcript (no group) so this worker's histories hold the whole conversation."""

    async def setup(self, ctx: StageContext) -> None:
        if self.model is None:
            c = self.settings.context
            options = RuntimeOptions.of(self.settings.context)
            self.model = await asyncio.to_thread(
                TextModel.load, c.model, options, self.settings, c.max_tokens
            )
        c = self.settings.context
        self.rooms = Rooms(self.model, c.history, c.max_rooms, c.room_idle_s)
        if self.follow:
            self._follower.start_id = await self.rebuild(ctx.bus)
            self._follower.start(ctx.bus)

    async def rebuild(self, bus: Bus) -> str:
        """Replay retained transcripts and room ends into the histories; returns the last transcript id
        read (where the live tail continues). Undecodable entries are skipped (their group consumer
        dead-letters them)."""
        assert self.rooms is not None
        items: list[tuple[tuple[int, int], Message]] = []
        last_transcript = "0-0"
        for kind in (Transcript, RoomControl):
            last = "0-0"
            while True:
                entries = await bus.tail({kind.stream: last}, 500, 1)
                for e in entries:
                    last = e.id
                    try:
                        items.append((id_key(e.id), schema.decode_checked(e.data, kind)))
                    except Exception:  # noqa: S112 - skipped here, dead-lettered by the group reader
                        continue
                if len(entries) < 500:
                    break
            if kind is Transcript:
                last_transcript = last
        for _, message in sorted(items, key=lambda kv: kv[0]):
            if isinstance(message, Transcript):
                self.rooms.add(message)
            elif isinstance(message, RoomControl):
                self.rooms.control(message)
        return last_transcript

    def _seen(self, transcript: Transcript) -> None:
        if self.rooms is not None:
            self.rooms.add(transcript)

    async def room_control(self, message: RoomControl, ctx: StageContext) -> list[Emit]:
        if self.rooms is not None:
            self.rooms.control(message)
        return []

    async def transcript(self, message: Transcript, ctx: StageContext) -> list[Emit]:
        assert self.model is not None and self.rooms is not None, "setup() was not run"
        window = self.rooms.add(message)
        embedding, logits, encodings = await asyncio.to_thread(self.model.decide, window)
        self.rooms.remember(message.room, encodings)
        out = schema.derive(
            message,
            TextContext,
            text=message.text,
            embedding=embedding.tolist(),
            logits=logits.tolist(),
            model=self.model.name,
        )
        return [Emit(out)]

    async def close(self) -> None:
        await self._follower.stop()


def create(settings: Settings) -> Stage:
    return ContextStage(settings)
