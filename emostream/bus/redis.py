"""Redis Streams bus (redis-py asyncio): consumer groups, XAUTOCLAIM, blobs as keys with a TTL.

Each message is one stream entry with a single field ``d`` (the encoded message); an entry without it
(written by something else) is handed on with ``error`` set, so readers dead-letter or skip it instead
of stalling. Every key is ``<bus.prefix><stream>`` (default ``emostream:``). Streams are trimmed by a
Lua script at every publish (:data:`emostream.bus.redis_lua.LUA_ROOM`): never past an entry a consumer group has not acked, so
a full stream makes producers wait (backpressure) instead of dropping work. ``redis://[:password@]
host:port/db`` and ``rediss://`` (TLS, with redis-py's ``ssl_*`` query options) are accepted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from emostream.bus.base import Bus, Delivery, Entry, blob_refs
from emostream.bus.redis_fast import fast_connection
from emostream.bus.redis_lua import (
    ACK_SCRIPT,
    ADVANCE_SCRIPT,
    COMMIT_SCRIPT,
    PUBLISH_SCRIPT,
    PUT_SCRIPT,
    RENEW_SCRIPT,
    TRIM_SCRIPT,
)
from emostream.config import redact_url
from emostream.errors import UserError
from emostream.runtime.errors import GroupMissing

FIELD = b"d"
REFS = b"b"
"""The entry field listing the blob refs its message holds (a msgpack array), for the ack script."""
BLOB_REF = "blob:"
"""Blob refs in messages are ``blob:<key>``; the Redis key is ``<prefix>blob:<key>``, a hash of the
bytes (``d``) and the reference count (``n``)."""
_IDLE_RELEASED_MS = 10**12
"""Idle time given to released entries so any consumer's claim_stale takes them at once."""

LAG_SCAN_CAP = 1000
"""When Redis cannot report a group's lag, at most this many newer entries are counted."""

T = TypeVar("T")


class BusUnavailable(UserError):
    """Redis cannot be reached or refused us; the message says where and what to do."""


def describe(url: str) -> str:
    """``host:port`` of a Redis URL, for error messages (never the password)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        return f"{host}:{parts.port or 6379}"
    except ValueError:  # a port that is not a number
        return f"{host}:{parts.netloc.rpartition(':')[2]}"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBus(Bus):
    """Redis Streams consumer groups behind the Bus interface; every key carries ``prefix``."""

    def __init__(
        self, url: str, maxlen: int = 10_000, max_connections: int = 64, prefix: str = "emostream:"
    ) -> None:
        self.url = url
        self.maxlen = maxlen
        self.prefix = prefix
        self.where = describe(url)
        if urlsplit(url).hostname is None and not url.startswith("unix"):
            raise UserError(f"bad Redis URL {redact_url(url)!r}: use redis://[:password@]HOST:PORT[/DB]")
        try:
            urlsplit(url).port  # noqa: B018 - validates the port
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                decode_responses=False,
                max_connections=max_connections,
                timeout=None,
                # A connection that died with a restarted Redis is reopened on the next command.
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                retry_on_error=[rexc.ConnectionError, rexc.TimeoutError],
            )
            pool.connection_class = fast_connection(pool.connection_class)
        except ValueError as exc:
            raise UserError(f"bad Redis URL {self.where}: {exc}") from None
        self._r: aioredis.Redis = aioredis.Redis.from_pool(pool)
        # The serial hot paths (the commit flusher, each consumer's read loop) keep a connection of
        # their own: a pool checkout per call cost ~15% of the client CPU per message.
        self._committer = aioredis.Redis(connection_pool=pool, single_connection_client=True)
        self._commit = self._committer.register_script(COMMIT_SCRIPT)
        self._publish = self._r.register_script(PUBLISH_SCRIPT)
        self._trim = self._r.register_script(TRIM_SCRIPT)
        self._advance = self._r.register_script(ADVANCE_SCRIPT)
        self._ack = self._r.register_script(ACK_SCRIPT)
        self._renew = self._r.register_script(RENEW_SCRIPT)
        self._put = self._r.register_script(PUT_SCRIPT)
        self._readers: dict[tuple[str, str], aioredis.Redis] = {}
        self._outbox: list[_Commit] = []
        self._flusher: asyncio.Task[None] | None = None

    def _k(self, stream: str) -> str:
        return self.prefix + stream

    def _name(self, key: bytes | str) -> str:
        return _s(key).removeprefix(self.prefix)

    def _ret_ms(self, stream: str) -> int:
        return int(self.retention_of(stream) * 1000)

    @property
    def _hold_ms(self) -> int:
        return max(1, int(self.blob_hold_s * 1000))

    async def _call(self, command: Awaitable[T]) -> T:
        """Await a command, turning connection/auth failures into one-line BusUnavailable errors and
        a missing stream or group (Redis ``NOGROUP``, e.g. after FLUSHALL) into GroupMissing."""
        try:
            return await command
        except rexc.NoPermissionError as exc:  # an ACL user limited to other keys or commands
            raise UserError(
                f"Redis at {self.where} refused (NOPERM: {exc}): the URL's user may not use these keys "
                f"or commands; its ACL needs ~{self.prefix}* (bus.prefix = {self.prefix!r}) and the "
                "stream, string and scripting commands (see docs/operations.md)"
            ) from None
        except rexc.ResponseError as exc:
            if _code(exc) == "NOGROUP":
                raise GroupMissing(f"Redis at {self.where}: {exc}") from None
            raise
        except rexc.AuthenticationError as exc:
            raise BusUnavailable(
                f"Redis at {self.where} refused the credentials ({exc}): fix the password in the URL"
            ) from None
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            raise BusUnavailable(
                f"cannot reach Redis at {self.where} ({exc}): start redis-server there or fix the "
                "address (it comes from --redis, else EMOSTREAM_BUS_URL, else bus.url)"
            ) from None

    async def ping(self) -> None:
        await self._call(self._r.ping())

    async def open_to_anyone(self) -> bool:
        """Whether this Redis answers a client that presents no credentials (no requirepass/ACL)."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix" or parts.password is None and parts.username is None:
            anonymous = self._r
        else:
            netloc = parts.netloc.rpartition("@")[2]
            anonymous = aioredis.Redis.from_url(parts._replace(netloc=netloc).geturl())
        try:
            await anonymous.ping()
            return True
        except (rexc.AuthenticationError, rexc.ResponseError):
            return False
        except (rexc.ConnectionError, OSError):
            return False
        finally:
            if anonymous is not self._r:
                await anonymous.aclose()

    async def publish(self, stream: str, data: bytes) -> str:
        return (await self.publish_many(stream, [data]))[0]

    async def publish_many(self, stream: str, items: list[bytes]) -> list[str]:
        """Append in order; when the stream is full of un-acked entries wait (with backoff) for room,
        at most ``publish_timeout_s``, then raise BusFull (counted, logged)."""
        for data in items:
            self.check_size(stream, data)
        ids: list[str] = []
        deadline = time.monotonic() + self.publish_timeout_s
        pause = 0.01
        while len(ids) < len(items):
            args: list[Any] = [self.maxlen, self._ret_ms(stream), self.prefix, self._hold_ms]
            for data in items[len(ids) :]:
                args += [data, _refs(data)]
            added = await self._call(self._publish(keys=[self._k(stream)], args=args))
            ids += [_s(i) for i in added]
            if len(ids) < len(items):
                if time.monotonic() >= deadline:
                    raise self.full(stream)
                await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
                pause = min(0.5, pause * 2)
        return ids

    async def trim(self, stream: str) -> None:
        await self._call(self._trim(keys=[self._k(stream)], args=[self.maxlen, self._ret_ms(stream)]))

    async def publish_and_ack(
        self, outputs: list[tuple[str, bytes]], stream: str, group: str, entry_id: str
    ) -> None:
        """Publish outputs and ack the input atomically (one Lua script: a crash cannot leave outputs
        published but the input un-acked). Group commit: commits of concurrent handlers that arrive
        while one script call is in flight go together in the next (one round trip for many)."""
        for target, data in outputs:
            self.check_size(target, data)
        commit = _Commit(outputs, stream, group, entry_id, asyncio.get_running_loop().create_future())
        self._outbox.append(commit)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await commit.done

    async def _flush(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            targets = [t for c in batch for t, _ in c.outputs]
            keys: list[str] = [self._k(t) for t in targets]
            args: list[Any] = [self.maxlen, len(keys), self.prefix, self._hold_ms]
            args += [self._ret_ms(t) for t in targets]
            for c in batch:
                for _, d in c.outputs:
                    args += [d, _refs(d)]
            acks: dict[tuple[str, str], list[str]] = {}
            for c in batch:
                acks.setdefault((c.stream, c.group), []).append(c.entry_id)
            for (stream, group), ids in acks.items():
                keys.append(self._k(stream))
                args += [group, len(ids), *ids]
            error: BaseException | None = None
            try:
                await self._commit_with_room(keys, args)
            except Exception as exc:
                error = exc
            for c in batch:
                if c.done.done():
                    continue
                if error is None:
                    c.done.set_result(None)
                else:
                    c.done.set_exception(error)

    async def _commit_with_room(self, keys: list[str], args: list[Any]) -> None:
        """Run the commit script; while an output stream is full, wait for room (bounded)."""
        deadline = time.monotonic() + self.publish_timeout_s
        pause = 0.01
        while True:
            reply = await self._call(self._commit(keys=keys, args=args))
            if int(reply[0]) >= 0:
                return
            if time.monotonic() >= deadline:
                raise self.full(self._name(reply[1]))
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(0.5, pause * 2)

    async def group_cursor(self, stream: str, group: str) -> str:
        for g in await self._call(self._r.xinfo_groups(self._k(stream))):
            if _s(g["name"]) == group:
                return _s(g["last-delivered-id"])
        raise GroupMissing(f"Redis at {self.where}: no consumer group {group} on stream {stream}")

    async def advance_group(
        self, stream: str, group: str, expected: str, last: str, outputs: list[tuple[str, bytes]]
    ) -> str | None:
        """One Lua script (ADVANCE_SCRIPT); while an output stream is full, wait for room (bounded)."""
        for target, data in outputs:
            self.check_size(target, data)
        keys = [self._k(stream), *[self._k(t) for t, _ in outputs]]
        args: list[Any] = [group, expected, last, self.maxlen, *[self._ret_ms(t) for t, _ in outputs]]
        args += [d for _, d in outputs]
        deadline = time.monotonic() + self.publish_timeout_s
        pause = 0.01
        while True:
            reply = await self._call(self._advance(keys=keys, args=args))
            if int(reply[0]) == 1:
                return None
            if int(reply[0]) == 0:
                return _s(reply[1])
            if time.monotonic() >= deadline:
                raise self.full(self._name(reply[1]))
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(0.5, pause * 2)

    async def ensure_group(self, stream: str, group: str, start: str = "0") -> None:
        try:
            await self._call(self._r.xgroup_create(self._k(stream), group, id=start, mkstream=True))
        except rexc.ResponseError as exc:
            if _code(exc) != "BUSYGROUP":
                raise

    async def read_group(
        self, streams: list[str], group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        reply = await self._call(
            self._reader(group, consumer).xreadgroup(
                group,
                consumer,
                {self._k(s): ">" for s in streams},
                count=count,
                block=max(1, block_ms),
            )
        )
        out: list[Delivery] = []
        for name, entries in _items(reply):
            for entry_id, fields in entries:
                if fields:
                    data, error = _payload(fields)
                    out.append(Delivery(self._name(name), _s(entry_id), data, 1, error))
        return out

    async def ack(self, stream: str, group: str, ids: list[str]) -> None:
        if ids:
            await self._call(self._ack(keys=[self._k(stream)], args=[group, self.prefix, *ids]))

    async def claim_stale(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[Delivery]:
        """XAUTOCLAIM from cursor 0-0 until the cursor wraps to 0-0 or ``count`` are claimed."""
        claimed: list[tuple[str, bytes, str]] = []
        refs: list[bytes] = []
        cursor = "0-0"
        key = self._k(stream)
        while len(claimed) < count:
            start = cursor
            reply = await self._call(
                self._r.xautoclaim(
                    key, group, consumer, min_idle_ms, start_id=start, count=count - len(claimed)
                )
            )
            cursor = _s(reply[0])
            for entry_id, fields in reply[1]:
                if fields:  # trimmed entries come back empty (and leave the PEL)
                    claimed.append((_s(entry_id), *_payload(fields)))
                    if REFS in fields:
                        refs.append(fields[REFS])
            if cursor == "0-0":
                break
        if not claimed:
            return []
        if refs:  # a retry still needs the media: renew its lease
            await self._call(self._renew(args=[self.prefix, self._hold_ms, *refs]))
        counts = await self._delivery_counts(key, group, consumer, [i for i, _, _ in claimed])
        return [Delivery(stream, i, data, counts.get(i, 1), err) for i, data, err in claimed]

    async def _delivery_counts(self, key: str, group: str, consumer: str, ids: list[str]) -> dict[str, int]:
        rows: list[dict[str, Any]] = await self._call(
            self._r.xpending_range(
                key, group, min=ids[0], max=ids[-1], count=len(ids) * 2 + 16, consumername=consumer
            )
        )
        return {_s(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def release(self, stream: str, group: str, ids: list[str]) -> None:
        """Make un-acked entries immediately claimable by others (XCLAIM IDLE, count unchanged)."""
        if not ids:
            return
        await self._call(
            self._r.xclaim(
                self._k(stream), group, "released", 0, list(ids), idle=_IDLE_RELEASED_MS, justid=True
            )
        )

    async def pending_ids(self, stream: str, group: str, consumer: str, count: int) -> list[str]:
        rows: list[dict[str, Any]] = await self._call(
            self._r.xpending_range(self._k(stream), group, "-", "+", count, consumername=consumer)
        )
        return [_s(r["message_id"]) for r in rows]

    async def prune_consumers(self, stream: str, group: str, idle_ms: int) -> int:
        pruned = 0
        key = self._k(stream)
        for c in await self._call(self._r.xinfo_consumers(key, group)):
            if int(c["pending"]) == 0 and int(c["idle"]) >= idle_ms:
                await self._call(self._r.xgroup_delconsumer(key, group, _s(c["name"])))
                pruned += 1
        return pruned

    async def pending_count(self, stream: str, group: str) -> int:
        info = await self._call(self._r.xpending(self._k(stream), group))
        return int(info["pending"])

    async def pending_of(self, stream: str, group: str, consumer: str) -> int:
        info = await self._call(self._r.xpending(self._k(stream), group))
        for row in info.get("consumers") or []:
            if _s(row["name"]) == consumer:
                return int(row["pending"])
        return 0

    async def lag(self, stream: str, group: str) -> int:
        key = self._k(stream)
        groups = await self._call(self._r.xinfo_groups(key))
        for g in groups:
            if _s(g["name"]) != group:
                continue
            if g.get("lag") is not None:
                return int(g["lag"])
            # Redis < 7 or lag unknown after deletions: count what is newer (capped, it is a gauge)
            last = _s(g["last-delivered-id"])
            newer = await self._call(self._r.xrange(key, min=f"({last}", max="+", count=LAG_SCAN_CAP))
            return len(newer or [])
        return 0

    async def tail(self, streams: dict[str, str], count: int, block_ms: int) -> list[Entry]:
        keys: dict[Any, Any] = {self._k(s): last for s, last in streams.items()}
        reply = await self._call(self._r.xread(keys, count=count, block=max(1, block_ms)))
        return [
            Entry(self._name(name), _s(entry_id), *_payload(fields))
            for name, entries in _items(reply)
            for entry_id, fields in entries
            if fields
        ]

    async def last_id(self, stream: str) -> str:
        rows = await self._call(self._r.xrevrange(self._k(stream), count=1))
        return _s(rows[0][0] or b"0-0") if rows else "0-0"

    async def streams(self, prefix: str) -> list[str]:
        full = self._k(prefix)
        glob = full.replace("[", "\\[").replace("*", "\\*").replace("?", "\\?") + "*"
        try:
            names = [self._name(k) async for k in self._r.scan_iter(match=glob, count=1000, _type="stream")]
        except (rexc.ConnectionError, rexc.TimeoutError, OSError) as exc:
            raise BusUnavailable(
                f"cannot reach Redis at {self.where} ({exc}): start redis-server there"
            ) from None
        return sorted(names)

    async def length(self, stream: str) -> int:
        return int(await self._call(self._r.xlen(self._k(stream))))

    async def put_blob(self, key: str, data: bytes, ttl_s: float) -> str:
        self.check_blob(key, data)
        ref = BLOB_REF + key
        await self._call(self._put(keys=[self.prefix + ref], args=[data, max(1, int(ttl_s * 1000))]))
        return ref

    async def get_blob(self, ref: str) -> bytes | None:
        value = await self._call(self._r.hget(self.prefix + ref, "d"))
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def info(self, section: str) -> dict[str, Any]:
        """Redis INFO of one section (used by ``bench bus`` for server CPU)."""
        return dict(await self._call(self._r.info(section)))

    def _reader(self, group: str, consumer: str) -> aioredis.Redis:
        client = self._readers.get((group, consumer))
        if client is None:
            client = aioredis.Redis(connection_pool=self._r.connection_pool, single_connection_client=True)
            self._readers[(group, consumer)] = client
        return client

    async def close(self) -> None:
        for client in [*self._readers.values(), self._committer]:
            await client.aclose()
        self._readers.clear()
        await self._r.aclose()


def _refs(data: bytes) -> bytes:
    """The ``b`` field of a message's entry: its blob refs as a msgpack array (empty: none)."""
    refs = blob_refs(data)
    return msgspec.msgpack.encode(refs) if refs else b""


def _payload(fields: dict[bytes, bytes]) -> tuple[bytes, str]:
    """The message bytes of an entry, or why there are none (an entry written by something else)."""
    data = fields.get(FIELD)
    if data is None:
        names = ", ".join(_s(k) for k in list(fields)[:5])
        return b"", f"undecodable: entry has no 'd' field (fields: {names})"
    return data, ""


@dataclass(slots=True)
class _Commit:
    outputs: list[tuple[str, bytes]]
    stream: str
    group: str
    entry_id: str
    done: asyncio.Future[None]


def _items(reply: Any) -> list[tuple[Any, list[tuple[Any, dict[bytes, bytes]]]]]:
    """XREAD/XREADGROUP replies are a list of [stream, entries] (RESP2) or a dict (RESP3)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(name, entries) for name, entries in reply]


def _code(exc: rexc.ResponseError) -> str:
    """The Redis error code: the first word of the error reply (``NOGROUP``, ``BUSYGROUP``, ...)."""
    return str(exc).split(" ", 1)[0]
