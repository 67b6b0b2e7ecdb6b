"""Message buses: the Bus interface, the embedded in-memory bus and Redis Streams.

``open_bus(url)`` picks the implementation from the URL scheme: ``memory://`` (embedded, in-process),
``redis://`` or ``rediss://`` (TLS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emostream.bus.base import Bus, BusFull, Delivery, Entry, TooLarge, dead_stream
from emostream.errors import UserError

if TYPE_CHECKING:
    from emostream.config import BusSettings

__all__ = ["Bus", "BusFull", "Delivery", "Entry", "TooLarge", "dead_stream", "open_bus"]


def open_bus(url: str, settings: BusSettings | None = None) -> Bus:
    """A bus for ``url``; raise a one-line UserError for an unsupported or malformed URL.

    Connections are lazy: call ``await bus.ping()`` to fail fast when Redis is unreachable. Every
    ``memory://`` bus is a new, independent one: stages share it by being handed the same object.
    """
    from emostream.config import BusSettings

    opts = settings or BusSettings(url=url)
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise UserError(f"bad bus URL {url!r}: use memory:// or redis://[:password@]HOST:PORT[/DB]")
    if scheme == "memory":
        from emostream.bus.memory import MemoryBus

        bus: Bus = MemoryBus(maxlen=opts.maxlen, publish_timeout_s=opts.publish_timeout_s)
        bus.configure(opts)
        return bus
    if scheme in ("redis", "rediss", "unix"):
        from emostream.bus.redis import RedisBus

        bus = RedisBus(url, maxlen=opts.maxlen, prefix=opts.prefix)
        bus.configure(opts)
        return bus
    raise UserError(f"bad bus URL scheme {scheme!r}: use memory://, redis:// or rediss:// (TLS)")
