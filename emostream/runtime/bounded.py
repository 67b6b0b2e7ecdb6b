"""Per-utterance bookkeeping that forgets the oldest keys: stages see an endless stream of utterances."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

V = TypeVar("V")


def remember(cache: OrderedDict[str, V], key: str, value: V, limit: int) -> None:
    """Set ``cache[key]`` as the newest entry and drop the oldest beyond ``limit``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)
