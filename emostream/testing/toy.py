"""A toy 3-stage relay pipeline for tests and ``emostream bench bus`` (hidden ``emostream worker toy``).

``toy.0 -> hop 1 -> toy.1 -> hop 2 -> toy.2 -> hop 3 -> toy.3``. Each hop copies the message (same
``id``) and records itself in ``trace``. As a worker process it is configured by plain environment
variables (not ``EMOSTREAM_*``, which are settings): ``TOY_HOP`` (1-3, default 1), ``TOY_DELAY_MS``
(simulated work per message, default 0) and ``TOY_HOPS`` (how many hops exist, default 3).
"""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

from emostream.config import Settings
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import Message, now


class Ping(Message, frozen=True, kw_only=True):
    """One toy message: ``id`` identifies it end to end; ``sent_at`` is the producer's wall clock."""

    stream: ClassVar[str] = "toy.0"
    id: str
    n: int = 0
    sent_at: float = 0.0
    payload: bytes = b""


def stream_of(hop: int) -> str:
    """The stream hop ``hop`` writes (hop 0 is the producer)."""
    return f"toy.{hop}"


class Relay(Stage):
    """Copy a Ping from ``toy.<hop-1>`` to ``toy.<hop>`` after ``delay_s`` of pretend work."""

    name: ClassVar[str] = "toy"
    inputs: ClassVar[dict[str, type[Message]]] = {}
    hop: ClassVar[int] = 1

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    async def handle(self, message: Message, ctx: StageContext) -> list[Emit]:
        assert isinstance(message, Ping)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        trace = {**message.trace, self.name: now()}
        out = Ping(id=message.id, n=message.n, sent_at=message.sent_at, payload=message.payload, trace=trace)
        return [Emit(out, stream_of(self.hop))]


def relay(hop: int, delay_s: float = 0.0) -> Relay:
    """A Relay stage for hop ``hop`` (its own class, so it has its own name and input stream)."""
    cls = type(
        f"Relay{hop}", (Relay,), {"name": f"toy{hop}", "inputs": {stream_of(hop - 1): Ping}, "hop": hop}
    )
    return cls(delay_s)


def pipeline_stages(hops: int = 3, delay_s: float = 0.0) -> list[Relay]:
    return [relay(h, delay_s) for h in range(1, hops + 1)]


def create(settings: Settings) -> Stage:
    """Worker entry point (``emostream worker toy``), configured by TOY_HOP and TOY_DELAY_MS."""
    return relay(int(os.environ.get("TOY_HOP", "1")), float(os.environ.get("TOY_DELAY_MS", "0")) / 1000)
