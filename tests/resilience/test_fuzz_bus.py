"""Fuzzing the message decoders where they run: a stage with a handler for every bus message type
(the real stage runtime: consumer group, decode, dead-letter, ack) and a side-input follower, fed
mutated encodings of valid messages, random msgpack and bytes, and, on a real redis-server, entries of
any shape (no ``d`` field, extra fields, empty values).

Each entry ends up exactly once as handled (when ``decode_checked`` accepts it) or in ``<stream>:dead``
with a one-line reason, counted in ``emostream_dead_lettered``; the follower skips what it cannot
decode, counted in ``emostream_skipped``; nothing stays pending and nothing crashes.
tests/runtime/test_schema.py covers ``decode_checked`` alone (round trips, garbage); this drives it
through the runtime on both buses.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from emostream.bus import dead_stream, open_bus
from emostream.config import BusSettings
from emostream.runtime import metrics
from emostream.runtime.follow import Follower
from emostream.runtime.stage import Emit, Stage, StageContext, run_stage
from emostream.schema import (
    MESSAGE_TYPES,
    DeadLetter,
    Dropped,
    Message,
    SchemaError,
    decode,
    decode_checked,
    encode,
)
from emostream.testing.harness import fast_settings
from tests.runtime.test_schema import struct_strategy

# no shrinking: an example starts a stage on a bus (a second), and a failure prints its example as is
FUZZ = settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
_RUN = itertools.count()
KINDS = tuple(k for k in MESSAGE_TYPES if k is not Dropped)
"""Every type a stage consumes (``dropped`` is where the runtime itself announces dead-lettered
utterances, so a handler there would count the runtime's own announcements)."""
STREAMS = {kind: kind.stream for kind in KINDS}
"""Each type on its own stream, as in the pipeline (a per-example key prefix keeps examples apart)."""


class Everything(Stage):
    """One handler per message type, each on its stream; records what it was handed."""

    def __init__(self) -> None:
        super().__init__("fuzz")
        self.handled: list[Message] = []
        for kind, stream in STREAMS.items():
            self.on(kind, self.record, stream=stream)

    async def record(self, message: Message, ctx: StageContext) -> list[Emit]:
        self.handled.append(message)
        return []


@st.composite
def payloads(draw: st.DrawFn, kind: type[Message]) -> bytes:
    """Bytes a producer could put on ``kind``'s stream: valid, mutated, or foreign."""
    valid = encode(draw(struct_strategy(kind)))
    how = draw(st.sampled_from(["valid", "truncate", "flip", "insert", "msgpack", "bytes", "other-type"]))
    if how == "truncate":
        return valid[: draw(st.integers(0, len(valid)))]
    if how == "flip":
        i = draw(st.integers(0, len(valid) - 1))
        return valid[:i] + bytes([valid[i] ^ draw(st.integers(1, 255))]) + valid[i + 1 :]
    if how == "insert":
        i = draw(st.integers(0, len(valid)))
        return valid[:i] + draw(st.binary(min_size=1, max_size=8)) + valid[i:]
    if how == "msgpack":
        value = draw(
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
                | st.floats()
                | st.text(max_size=8)
                | st.binary(max_size=8),
                lambda inner: (
                    st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
                ),
                max_leaves=10,
            )
        )
        return msgspec.msgpack.encode(value)
    if how == "bytes":
        return draw(st.binary(max_size=80))
    if how == "other-type":
        return encode(draw(struct_strategy(draw(st.sampled_from(MESSAGE_TYPES)))))
    return valid


ENTRIES = st.lists(
    st.sampled_from(KINDS).flatmap(lambda kind: st.tuples(st.just(kind), payloads(kind))),
    min_size=1,
    max_size=12,
)
SHAPES = st.lists(
    st.dictionaries(
        st.sampled_from(["d", "D", "x", "data", ""]) | st.text(min_size=1, max_size=4),
        st.binary(max_size=20),
        min_size=1,
        max_size=3,
    ),
    max_size=4,
)


def _accepts(data: bytes, kind: type[Message]) -> bool:
    try:
        decode_checked(data, kind)
    except SchemaError:
        return False
    return True


def _dead_count() -> float:
    children: dict[Any, Any] = dict(metrics.DEAD_LETTERED._metrics)
    return sum(float(m._value.get()) for key, m in children.items() if key[0] == "fuzz")


async def _run(url: str, entries: list[tuple[type[Message], bytes]], shapes: list[dict[str, bytes]]) -> None:
    prefix = f"fz{next(_RUN)}:"
    bus = open_bus(url, BusSettings(url=url, prefix=prefix, maxlen=10_000))
    stage = Everything()
    settings = fast_settings(url)
    stop, ready = asyncio.Event(), asyncio.Event()
    seen: list[Message] = []
    kind0 = KINDS[0]
    follower = Follower(kind0, seen.append, from_start=True, block_ms=50)
    skipped_before = float(metrics.SKIPPED.labels(STREAMS[kind0])._value.get())
    dead_before = _dead_count()
    task = asyncio.create_task(run_stage(stage, bus, settings, consumer="fz", stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        follower.start(bus)
        for kind, data in entries:
            await bus.publish(STREAMS[kind], data)
        if shapes:  # entries of any shape, as another Redis client could add them
            raw = aioredis.Redis.from_url(url)
            for fields in shapes:
                await raw.xadd(f"{prefix}{STREAMS[kind0]}", fields)  # type: ignore[arg-type]
            await raw.aclose()
        good = [(k, d) for k, d in entries if _accepts(d, k)]
        n_shapes_good = sum(1 for f in shapes if set(f) == {"d"} and _accepts(f["d"], kind0))
        want_dead = len(entries) - len(good) + len(shapes) - n_shapes_good
        for _ in range(400):
            if len(stage.handled) >= len(good) + n_shapes_good and _dead_count() - dead_before >= want_dead:
                break
            assert not task.done(), task.exception() if task.done() else ""
            await asyncio.sleep(0.025)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await follower.stop()
    assert len(stage.handled) == len(good) + n_shapes_good
    shaped = [f["d"] for f in shapes if set(f) == {"d"} and _accepts(f["d"], kind0)]
    want = [encode(decode(d, k)) for k, d in good] + [encode(decode(d, kind0)) for d in shaped]
    assert sorted(encode(m) for m in stage.handled) == sorted(want)
    assert _dead_count() - dead_before == want_dead, "every undecodable entry dead-lettered, counted once"
    dead: list[DeadLetter] = []
    for stream in STREAMS.values():
        entries_ = await bus.tail({dead_stream(stream): "0-0"}, 1000, 10)
        dead += [decode(e.data, DeadLetter) for e in entries_]  # type: ignore[type-var]
        assert await bus.pending_count(stream, "fuzz") == 0, f"{stream}: an entry stayed pending"
    assert len(dead) == want_dead
    assert all(d.reason and "\n" not in d.reason for d in dead), [d.reason for d in dead]
    n_first = sum(1 for k, _ in entries if k is kind0) + len(shapes)
    first_good = sum(1 for k, d in good if k is kind0) + n_shapes_good
    skipped = float(metrics.SKIPPED.labels(STREAMS[kind0])._value.get()) - skipped_before
    assert len(seen) == first_good and skipped == n_first - first_good, "the follower skips and counts"
    await bus.close()


@FUZZ
@given(entries=ENTRIES)
def test_every_message_type_is_handled_or_dead_lettered_memory(
    entries: list[tuple[type[Message], bytes]],
) -> None:
    asyncio.run(_run("memory://", entries, []))


@pytest.fixture(scope="module")
def redis_for_fuzz(redis_url: str) -> str:
    return redis_url


@FUZZ
@given(entries=ENTRIES, shapes=SHAPES)
def test_every_entry_shape_is_handled_or_dead_lettered_redis(
    redis_for_fuzz: str, entries: list[tuple[type[Message], bytes]], shapes: list[dict[str, bytes]]
) -> None:
    asyncio.run(_run(redis_for_fuzz, entries, shapes))
