"""The stage runtime every worker uses: decode -> handle -> publish -> ack.

A pipeline stage is a small class (like a pipecat processor): it names the streams it consumes and the
message type of each, loads its models in ``setup``, and turns one input message into zero or more
output messages in ``handle``. The runtime (``run_stage``) does everything else: consumer groups,
N concurrent handlers, publishing outputs *before* acking the input (at-least-once), reclaiming stuck
messages, dead-lettering undecodable ones, metrics, logs and graceful shutdown.

STATUS: interface fixed; the runtime is being implemented under [spine].
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from emostream.schema import Message

if TYPE_CHECKING:
    from emostream.bus.base import Bus
    from emostream.config import Settings


@dataclass(frozen=True, slots=True)
class Emit:
    """An output of a handler: ``message`` goes to ``stream`` (default: the message type's stream)."""

    message: Message
    stream: str = ""

    @property
    def target(self) -> str:
        return self.stream or type(self.message).stream


@dataclass
class StageContext:
    """What a handler may use besides its input: the bus (for blobs), settings and a publish hook."""

    bus: Bus
    settings: Settings
    stage: str
    consumer: str
    extra: dict[str, Any] = field(default_factory=dict)

    async def publish(self, message: Message, stream: str = "") -> None:
        """Publish outside a handler's return value (background emissions, e.g. fusion deadlines)."""
        from emostream.schema import encode

        await self.bus.publish(stream or type(message).stream, encode(message))


class Stage(abc.ABC):
    """One pipeline stage. Subclasses set ``name`` and ``inputs`` and implement ``handle``."""

    name: ClassVar[str]
    inputs: ClassVar[dict[str, type[Message]]]
    """stream name -> message type consumed from it (through the stage's consumer group)."""

    async def setup(self, ctx: StageContext) -> None:  # noqa: B027 - optional hook
        """Load models once per process (shared by all rooms)."""

    @abc.abstractmethod
    async def handle(self, message: Message, ctx: StageContext) -> list[Emit]:
        """Turn one input into outputs. Raise to fail (it is retried, then dead-lettered)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release models and background tasks."""
