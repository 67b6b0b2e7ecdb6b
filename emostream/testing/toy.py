"""A toy 3-stage relay pipeline for tests and ``emostream bench bus`` (hidden ``emostream worker toy``).

``toy.0 -> hop 1 -> toy.1 -> hop 2 -> toy.2 -> hop 3 -> toy.3``. Each hop copies the message (same
``id``); the runtime records the hop in ``trace``. As a worker process it is configured by plain environment
variables (not ``EMOSTREAM_*``, which are settings): ``TOY_HOP`` (1-3, default 1), ``TOY_DELAY_MS``
(simulated work per message, default 0) and ``TOY_HOPS`` (how many hops exist, default 3).
"""

from __future__ import annotations

import asyncio
import os
from typing import ClassVar

import msgspec

from emostream.config import Settings
from emostream.runtime.stage import Emit, Stage, StageContext
from emostream.schema import Message


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

    def __init__(self, hop: int = 1, delay_s: float = 0.0) -> None:
        super().__init__(f"toy{hop}")
        self.hop, self.delay_s = hop, delay_s
        self.on(Ping, self.relay, stream=stream_of(hop - 1))

    async def relay(self, message: Ping, ctx: StageContext) -> list[Emit]:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out = msgspec.structs.replace(message, trace=dict(message.trace))  # same id; the runtime stamps
        return [Emit(out, stream_of(self.hop))]


def relay(hop: int, delay_s: float = 0.0) -> Relay:
    """The Relay stage for hop ``hop`` (its own name and input stream)."""
    return Relay(hop, delay_s)


def pipeline_stages(hops: int = 3, delay_s: float = 0.0) -> list[Relay]:
    return [relay(h, delay_s) for h in range(1, hops + 1)]


def create(settings: Settings) -> Stage:
    """Worker entry point (``emostream worker toy``), configured by TOY_HOP and TOY_DELAY_MS."""
    return relay(int(os.environ.get("TOY_HOP", "1")), float(os.environ.get("TOY_DELAY_MS", "0")) / 1000)
