"""The stage runtime every worker uses: decode -> handle -> publish -> ack.

A pipeline stage is a small class (like a pipecat processor): it names the streams it consumes and the
message type of each, loads its models in ``setup``, and turns one input message into zero or more
output messages in ``handle``. The runtime (``run_stage``) does everything else: consumer groups,
N concurrent handlers, publishing outputs *before* acking the input (at-least-once), reclaiming stuck
messages, dead-lettering undecodable ones (any shape) and oversized ones (``bus.max_message_bytes``,
``bus.max_text_chars``), reconnecting with backoff, metrics, logs and graceful shutdown.

Delivery is at-least-once: an input is acked only after its outputs are published (on Redis both in
one Lua script, so a crash never leaves outputs without the ack). A handler can still run twice for
one input (a slow consumer's message reclaimed by another), so handlers derive output ids from the
input: duplicates carry the same id.
Setting ``stop`` drains gracefully (stop reading, let in-flight handlers finish within
``stage.shutdown_grace_s``, release the rest un-acked for other consumers). Cancelling ``run_stage``
is a crash: in-flight work stays pending on this consumer until another one reclaims it after
``bus.claim_idle_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from emostream.runtime import metrics
from emostream.runtime.errors import GroupMissing, Reject
from emostream.schema import Message, SchemaError, SchemaVersionError, decode_checked, encode, now

if TYPE_CHECKING:
    from emostream.bus.base import Bus, Delivery
    from emostream.config import Settings

log = logging.getLogger("emostream.runtime.stage")

BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0
"""Retry pauses of a read loop whose bus is unreachable (doubling, capped)."""


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
    """What a handler may use besides its input: the bus (for blobs) and settings."""

    bus: Bus
    settings: Settings
    stage: str
    consumer: str


M = TypeVar("M", bound=Message)
Handler = Callable[[M, StageContext], Awaitable[list[Emit]]]
"""A typed handler: one input message type in, outputs out."""


class Stage:
    """One pipeline stage. Identity is per instance: ``name`` and ``inputs`` are set by ``__init__``
    (two instances of one class may differ), and each input type has its own typed handler::

        class Asr(Stage):
            def __init__(self) -> None:
                super().__init__("asr")
                self.on(Utterance, self.utterance)  # consumes Utterance.stream

            async def utterance(self, msg: Utterance, ctx: StageContext) -> list[Emit]: ...

    The runtime stamps ``trace[name]`` on every output (:meth:`process`); handlers build outputs with
    :func:`emostream.schema.derive`, which carries the input's identity and trace.
    """

    name: str
    inputs: dict[str, type[Message]]
    """stream name -> message type consumed from it (through the stage's consumer group)."""
    min_concurrency: int = 1
    """Handlers in flight at least this many, whatever ``stage.concurrency`` says: for a stage whose
    handlers mostly wait on a queue of its own (ASR's model scheduler), so a waiting final never keeps
    the next speaker's partial from being read."""

    def __init__(self, name: str = "") -> None:
        if name:  # a subclass may still declare name/inputs as class attributes and override handle()
            self.name = name
        self.inputs = dict(getattr(type(self), "inputs", {}))
        self._handlers: dict[type[Message], Handler[Any]] = {}

    def on(self, kind: type[M], handler: Handler[M], stream: str = "") -> None:
        """Consume ``kind`` from ``stream`` (default: its own stream) and hand each one to ``handler``."""
        self.inputs[stream or kind.stream] = kind
        self._handlers[kind] = handler

    async def setup(self, ctx: StageContext) -> None:
        """Load models once per process (shared by all rooms)."""

    async def handle(self, message: Message, ctx: StageContext) -> list[Emit]:
        """Turn one input into outputs with the handler of its type. A handler raises :class:`Reject`
        for a message that can never be handled (dead-lettered at once); any other exception fails it
        (retried, then dead-lettered)."""
        handler = getattr(self, "_handlers", {}).get(type(message))
        if handler is None:
            raise TypeError(f"stage {self.name} has no handler for {type(message).__name__}")
        return await handler(message, ctx)

    async def process(self, message: Message, ctx: StageContext) -> list[Emit]:
        """:meth:`handle`, then stamp ``trace[name]`` (the wall clock at publish) on every output."""
        emits = await self.handle(message, ctx)
        stamp = now()  # after the handler: a stage's stamp is when its output was ready, not when it began
        return [
            Emit(msgspec.structs.replace(e.message, trace={**e.message.trace, self.name: stamp}), e.stream)
            for e in emits
        ]

    async def close(self) -> None:
        """Release models and background tasks."""


@dataclass
class StageStats:
    """What one ``run_stage`` call did (also exported as Prometheus metrics)."""

    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    released: int = 0
    orphaned: int = 0
    """Deliveries whose reply never reached this process, handed back for a claim."""


async def run_stage(
    stage: Stage,
    bus: Bus,
    settings: Settings,
    *,
    consumer: str,
    group: str | None = None,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
) -> StageStats:
    """Consume the stage's input streams as ``consumer`` of ``group`` (default: the stage name) until
    ``stop`` is set; ``ready`` is set once the consumer groups exist. Returns the run's counts."""
    return await _Runner(stage, bus, settings, consumer, group or stage.name).run(stop, ready)


class _Runner:
    def __init__(self, stage: Stage, bus: Bus, settings: Settings, consumer: str, group: str) -> None:
        self.stage, self.bus, self.settings = stage, bus, settings
        self.consumer, self.group = consumer, group
        self.streams = list(stage.inputs)
        self.ctx = StageContext(bus=bus, settings=settings, stage=stage.name, consumer=consumer)
        self.concurrency = max(1, stage.min_concurrency, settings.stage.concurrency)
        every = settings.stage.claim_every_ms or min(5_000, max(100, settings.bus.claim_idle_ms // 2))
        self.claim_every_s = every / 1000
        self.inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.errors: dict[tuple[str, str], str] = {}
        self.stats = StageStats()
        self.outputs: set[str] = set()
        """Streams this stage published to (swept for retention with its inputs)."""
        name = stage.name  # metric children resolved once: labels() is too slow per message
        self._inflight_gauge = metrics.INFLIGHT.labels(name)
        self._handle_hist = {s: metrics.HANDLE_SECONDS.labels(name, s) for s in self.streams}
        self._processed = {s: metrics.PROCESSED.labels(name, s) for s in self.streams}

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None) -> StageStats:
        await self.stage.setup(self.ctx)
        await self._ensure_groups()
        await self._take_back()
        if ready is not None:
            ready.set()
        log.info("stage started", extra={"stage": self.stage.name, "consumer": self.consumer})
        lag_task = asyncio.create_task(self._lag_loop(stop))
        try:
            await self._read_loop(stop)
        except asyncio.CancelledError:
            for task in self.inflight.values():  # a crash: leave in-flight work pending, un-acked
                task.cancel()
            raise
        else:
            await self._drain()
        finally:
            lag_task.cancel()
            await self.stage.close()
        log.info("stage stopped", extra={"stage": self.stage.name, **vars(self.stats)})
        return self.stats

    async def _ensure_groups(self) -> None:
        for stream in self.streams:
            await self.bus.ensure_group(stream, self.group, "0")

    async def _take_back(self) -> None:
        """A restart under the same consumer name (compose's ``asr-1``) finds what the crashed process
        had taken and not acked: hand it back for the first claim now instead of after
        ``bus.claim_idle_ms`` (30 s) of idleness."""
        for stream in self.streams:
            ids = await self.bus.pending_ids(stream, self.group, self.consumer, 10_000)
            if ids:
                await self.bus.release(stream, self.group, ids)
                log.info("taking back unfinished work", extra={"stage": self.stage.name, "count": len(ids)})

    async def _take_back_orphans(self) -> None:
        """Hand back what the bus delivered to this consumer but this process never received.

        A read whose reply is lost (the process paused past the client's socket timeout, a dropped
        connection) leaves its entries pending on this consumer while nobody handles them; the
        client's retry reads past them. They would wait ``bus.claim_idle_ms`` (30 s) for a reclaim.
        Called between reads, so every entry of ours that is neither in flight nor a known failure
        (retried on the normal ``claim_idle_ms`` schedule) is such an orphan."""
        for stream in self.streams:
            # Known before the query: a handler that acks and leaves while XPENDING is in flight is
            # not an orphan (no read runs meanwhile, so nothing new can join).
            known = {i for s, i in (*self.inflight, *self.errors) if s == stream}
            ids = await self.bus.pending_ids(stream, self.group, self.consumer, 10_000)
            if lost := [i for i in ids if i not in known]:
                await self.bus.release(stream, self.group, lost)
                metrics.ORPHANED.labels(self.stage.name, stream).inc(len(lost))
                self.stats.orphaned += len(lost)
                log.warning(
                    "taking back deliveries this process never received (reply lost)",
                    extra={"stage": self.stage.name, "stream": stream, "count": len(lost)},
                )

    async def _read_loop(self, stop: asyncio.Event) -> None:
        next_claim = 0.0
        block_s = self.settings.bus.block_ms / 1000
        pause = BACKOFF_MIN_S
        while not stop.is_set():
            free = self.concurrency - len(self.inflight)
            if free <= 0:
                await self._wait_slot(stop)
                continue
            try:
                deliveries: list[Delivery] = []
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + self.claim_every_s
                    deliveries = await self._claim(free)
                if not deliveries:
                    wait_s = min(block_s, max(0.001, next_claim - time.monotonic()))
                    deliveries = await self.bus.read_group(
                        self.streams, self.group, self.consumer, free, int(wait_s * 1000)
                    )
                pause = BACKOFF_MIN_S
            except asyncio.CancelledError:
                raise
            except GroupMissing as exc:  # the stream was deleted (e.g. FLUSHALL): recreate the groups
                log.error("bus read failed", extra={"stage": self.stage.name, "error": str(exc)})
                await _sleep_or_stop(stop, pause)
                pause = min(BACKOFF_MAX_S, pause * 2)
                with contextlib.suppress(Exception):
                    await self._ensure_groups()
                continue
            except Exception as exc:  # bus down: retry with backoff until stopped
                log.error(
                    "bus read failed, retrying",
                    extra={"stage": self.stage.name, "error": str(exc), "retry_in_s": pause},
                )
                await _sleep_or_stop(stop, pause)
                pause = min(BACKOFF_MAX_S, pause * 2)
                continue
            for d in deliveries:
                key = (d.stream, d.id)
                if key not in self.inflight:
                    self.inflight[key] = asyncio.create_task(self._process(d))

    async def _claim(self, free: int) -> list[Delivery]:
        await self._take_back_orphans()
        out: list[Delivery] = []
        for stream in self.streams:
            if len(out) >= free:
                break
            got = await self.bus.claim_stale(
                stream, self.group, self.consumer, self.settings.bus.claim_idle_ms, free - len(out)
            )
            got = [d for d in got if (d.stream, d.id) not in self.inflight]  # our own slow handlers
            if got:
                metrics.RECLAIMED.labels(self.stage.name, stream).inc(len(got))
                self.stats.reclaimed += len(got)
                log.info("reclaimed stale messages", extra={"stage": self.stage.name, "count": len(got)})
            out += got
        return out

    async def _wait_slot(self, stop: asyncio.Event) -> None:
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *self.inflight.values()], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()

    async def _process(self, d: Delivery) -> None:
        key = (d.stream, d.id)
        name = self.stage.name
        self._inflight_gauge.inc()
        try:
            limit = self.settings.bus.max_deliveries
            if d.deliveries > limit:
                last = self.errors.pop(key, "unknown (it failed or crashed on another consumer)")
                reason = f"delivered {d.deliveries} times (max {limit}); last error: {last}"
                await self._dead(d, reason, "max_deliveries")
                return
            if d.error:  # an entry of another shape (e.g. no `d` field): it can never succeed
                await self._dead(d, d.error, "undecodable")
                return
            bus_opts = self.settings.bus
            if len(d.data) > bus_opts.max_message_bytes:
                reason = (
                    f"too large: {len(d.data)} bytes > bus.max_message_bytes={bus_opts.max_message_bytes}"
                )
                await self._dead(d, reason, "too_large")
                return
            try:
                message = decode_checked(d.data, self.stage.inputs[d.stream])
            except Exception as exc:  # SchemaError, or anything a decoder should not have raised
                reason = str(exc) if isinstance(exc, SchemaError) else f"undecodable: {exc!r}"
                kind = "schema_version" if isinstance(exc, SchemaVersionError) else "undecodable"
                await self._dead(d, reason, kind)
                return
            text = getattr(message, "text", None)
            if isinstance(text, str) and len(text) > bus_opts.max_text_chars:
                reason = f"text too long: {len(text)} chars > bus.max_text_chars={bus_opts.max_text_chars}"
                await self._dead(d, reason, "too_large")
                return
            t0 = time.perf_counter()
            try:
                emits = await self.stage.process(message, self.ctx)
                outputs = [(e.target, encode(e.message)) for e in emits]
                self.outputs.update(t for t, _ in outputs)
                await self.bus.publish_and_ack(outputs, d.stream, self.group, d.id)
            except asyncio.CancelledError:
                raise
            except Reject as exc:  # retrying cannot help: dead-letter now, with the handler's reason
                await self._dead(d, exc.reason, exc.kind)
                self.errors.pop(key, None)
                return
            except Exception as exc:
                self._failed(d, exc)
                if d.deliveries >= limit:
                    await self._dead(d, f"failed {d.deliveries} times (max {limit}): {self.errors.pop(key)}")
                return
            self._handle_hist[d.stream].observe(time.perf_counter() - t0)
            self._processed[d.stream].inc()
            self.stats.processed += 1
            self.errors.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # dead-lettering itself failed (bus down): it stays pending
            log.error("dead-letter failed", extra={"stage": name, "id": d.id, "error": str(exc)})
        finally:
            self._inflight_gauge.dec()
            self.inflight.pop(key, None)

    def _failed(self, d: Delivery, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if len(self.errors) >= 10_000:
            self.errors.pop(next(iter(self.errors)))
        self.errors[(d.stream, d.id)] = error
        metrics.FAILED.labels(self.stage.name, d.stream).inc()
        self.stats.failed += 1
        log.warning(
            "handler failed; will retry",
            extra={
                "stage": self.stage.name,
                "stream": d.stream,
                "id": d.id,
                "deliveries": d.deliveries,
                "error": error,
            },
            exc_info=exc,
        )

    async def _dead(self, d: Delivery, reason: str, kind: str = "failed") -> None:
        await self.bus.dead_letter(d, self.group, reason)
        metrics.DEAD_LETTERED.labels(self.stage.name, d.stream, kind).inc()
        self.stats.dead_lettered += 1
        log.warning(
            "dead-lettered",
            extra={"stage": self.stage.name, "stream": d.stream, "id": d.id, "reason": reason},
        )

    async def _drain(self) -> None:
        """Graceful stop: in-flight handlers get the grace period, the rest go back un-acked."""
        if not self.inflight:
            return
        tasks = dict(self.inflight)
        _, late = await asyncio.wait(tasks.values(), timeout=self.settings.stage.shutdown_grace_s)
        if not late:
            return
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        by_stream: dict[str, list[str]] = {}
        for (stream, entry_id), task in tasks.items():
            if task in late:
                by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            await self.bus.release(stream, self.group, ids)
            self.stats.released += len(ids)
        log.warning("released unfinished work", extra={"stage": self.stage.name, "count": len(late)})

    async def _lag_loop(self, stop: asyncio.Event) -> None:
        """Refresh the lag/pending gauges; now and then forget consumers of gone workers."""
        ttl_ms = self.settings.bus.consumer_ttl_ms
        next_prune = time.monotonic()
        while not stop.is_set():
            prune = bool(ttl_ms) and time.monotonic() >= next_prune
            if prune:
                next_prune = time.monotonic() + min(600.0, ttl_ms / 10_000)
            for stream in self.streams:
                try:
                    metrics.LAG.labels(self.stage.name, stream).set(await self.bus.lag(stream, self.group))
                    pending = await self.bus.pending_count(stream, self.group)
                    metrics.PENDING.labels(self.stage.name, stream).set(pending)
                    if prune and (gone := await self.bus.prune_consumers(stream, self.group, ttl_ms)):
                        log.info("forgot idle consumers", extra={"stage": self.stage.name, "count": gone})
                except Exception as exc:  # bookkeeping must never stop the stage
                    log.debug("lag refresh failed", extra={"error": str(exc)})
            for stream in {*self.streams, *self.outputs}:  # retention of quiet streams
                try:
                    await self.bus.trim(stream)
                except Exception as exc:
                    log.debug("trim failed", extra={"stream": stream, "error": str(exc)})
            await _sleep_or_stop(stop, self.settings.stage.lag_every_s)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass
