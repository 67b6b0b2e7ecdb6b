"""A faster command packer for redis-py's asyncio connections (hiredis' C packer)."""

from __future__ import annotations

from typing import Any


def fast_connection(cls: type[Any]) -> type[Any]:
    """The connection class with hiredis' C command packer (redis-py's asyncio one is pure Python and
    was the largest client-side cost per message); unchanged when hiredis is missing."""
    try:
        import hiredis
    except ImportError:
        return cls

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # a type hiredis does not pack: redis-py's encoder knows it
            return cls.pack_command(self, *args)

    return type(f"Fast{cls.__name__}", (cls,), {"pack_command": pack_command})
