"""Follow a stream without a consumer group: every process sees every message (side inputs).

The fusion workers need every visual description and the context workers every transcript, whichever
worker of the group is handed the utterance, so each tails the stream itself in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from emostream import schema
from emostream.bus.base import Bus
from emostream.runtime import metrics
from emostream.schema import Message

log = logging.getLogger("emostream.runtime.follow")
M = TypeVar("M", bound=Message)


class Follower(Generic[M]):
    """Tails ``kind``'s stream in a background task and hands each decoded message to ``on_message``.

    Undecodable entries (garbage, no ``d`` field, a newer schema) are skipped, counted
    (``emostream_skipped``) and logged: the stream's group consumer dead-letters them; nothing stalls
    on one. ``after_batch`` runs after every read (e.g. to expire a cache). A lost connection is
    retried with backoff; when the stream came back shorter than what was read (a Redis that lost
    data), the tail restarts from its beginning. ``start_id`` resumes after a known entry (e.g. the
    end of a replay). Stopping waits for the loop to notice between reads, because cancelling a
    blocked Redis read can hang; cancelling is the last resort.
    """

    def __init__(
        self,
        kind: type[M],
        on_message: Callable[[M], None],
        *,
        from_start: bool,
        block_ms: int,
        after_batch: Callable[[], object] | None = None,
        start_id: str | None = None,
    ) -> None:
        self.kind, self.on_message, self.after_batch = kind, on_message, after_batch
        self.from_start, self.block_ms, self.start_id = from_start, block_ms, start_id
        self.skipped = 0
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
        last = self.start_id or ("0" if self.from_start else await _retry(bus.last_id, stream))
        pause = 0.2
        while not self._stopping:
            try:
                entries = await bus.tail({stream: last}, 200, self.block_ms)
                pause = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bus hiccup must not kill the stage: retry with backoff
                log.warning("stream tail failed, retrying", extra={"stream": stream, "error": str(exc)})
                await asyncio.sleep(pause)
                pause = min(5.0, pause * 2)
                last = await resume_point(bus, stream, last)
                continue
            for entry in entries:
                last = entry.id
                try:
                    if entry.error:
                        raise schema.SchemaError(entry.error)
                    message = schema.decode_checked(entry.data, self.kind)
                except Exception as exc:  # any shape of bad entry: skip it, counted
                    self.skipped += 1
                    metrics.SKIPPED.labels(stream).inc()
                    log.warning(
                        "skipped undecodable entry",
                        extra={"stream": stream, "id": entry.id, "error": str(exc)},
                    )
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


def id_key(entry_id: str) -> tuple[int, int]:
    """Sortable form of a stream id ``<ms>-<seq>``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


async def resume_point(bus: Bus, stream: str, last: str) -> str:
    """Where to tail from after reconnecting: ``last``, or the start when the stream now ends before it
    (Redis restarted without the data). Errors leave ``last`` for the next try."""
    try:
        newest = await bus.last_id(stream)
    except Exception:
        return last
    if last not in ("0", "0-0", "$") and id_key(newest) < id_key(last):
        log.warning(
            "stream restarted shorter than before; reading it from the start", extra={"stream": stream}
        )
        return "0-0"
    return last


async def _retry(fn: Callable[[str], Awaitable[str]], stream: str) -> str:
    """``fn(stream)`` until it answers (the bus may be down when a follower starts)."""
    pause = 0.2
    while True:
        try:
            return await fn(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("stream tail failed, retrying", extra={"stream": stream, "error": str(exc)})
            await asyncio.sleep(pause)
            pause = min(5.0, pause * 2)
