"""Follow a stream without a consumer group: every process sees every message (side inputs).

The fusion workers need every visual description and the context workers every transcript, whichever
worker of the group is handed the utterance, so each tails the stream itself in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from emostream import schema
from emostream.bus.base import Bus
from emostream.schema import Message

log = logging.getLogger("emostream.runtime.follow")
M = TypeVar("M", bound=Message)


class Follower(Generic[M]):
    """Tails ``kind``'s stream in a background task and hands each decoded message to ``on_message``.

    Undecodable messages are skipped here: the stream's group consumer dead-letters them. ``after_batch``
    runs after every read (e.g. to expire a cache). Stopping waits for the loop to notice between
    reads, because cancelling a blocked Redis read can hang; cancelling is the last resort.
    """

    def __init__(
        self,
        kind: type[M],
        on_message: Callable[[M], None],
        *,
        from_start: bool,
        block_ms: int,
        after_batch: Callable[[], object] | None = None,
    ) -> None:
        self.kind, self.on_message, self.after_batch = kind, on_message, after_batch
        self.from_start, self.block_ms = from_start, block_ms
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, bus: Bus) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(bus))

    async def _run(self, bus: Bus) -> None:
        stream = self.kind.stream
        # Not "$": a message published between two reads must not be missed.
        last = "0" if self.from_start else await bus.last_id(stream)
        while not self._stopping:
            try:
                entries = await bus.tail({stream: last}, 200, self.block_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bus hiccup must not kill the stage: retry after a pause
                log.warning("stream tail failed, retrying", extra={"stream": stream, "error": str(exc)})
                await asyncio.sleep(1.0)
                continue
            for entry in entries:
                last = entry.id
                try:
                    message = schema.decode_checked(entry.data, self.kind)
                except schema.SchemaError:
                    continue
                self.on_message(message)
            if self.after_batch is not None:
                self.after_batch()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        done, _ = await asyncio.wait([self._task], timeout=self.block_ms / 1000 + 2)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
