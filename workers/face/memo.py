"""What the face expert already read, by frame content: the pause partial's frames are the utterance's.

At a pause the ingest hands fec the frames so far (``PartialAudio.frames``); if the pause ends the
utterance, the Utterance's frames are those same JPEGs plus the newest few. Remembering each frame's
detection and the speaker crop's reading by a hash of its bytes lets the end-of-speech pass skip the
work done during the hangover, with results identical to a fresh pass (a frame is its bytes).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

MISSING: Any = object()
"""Returned by :meth:`Memo.get` for a key never stored (``None`` is a valid, remembered result)."""


def digest(raw: object) -> bytes | None:
    """The memo key of a frame: a hash of its JPEG bytes (None for decoded arrays and missing frames)."""
    if isinstance(raw, bytes | bytearray):
        return hashlib.blake2b(raw, digest_size=16).digest()
    return None


class Memo:
    """A bounded, thread-safe LRU map (the analyzer's landmarker pool threads share it)."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._items: OrderedDict[object, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: object) -> Any:
        if key is None or self.size == 0:
            return MISSING
        with self._lock:
            value = self._items.get(key, MISSING)
            if value is MISSING:
                self.misses += 1
            else:
                self.hits += 1
                self._items.move_to_end(key)
            return value

    def put(self, key: object, value: object) -> None:
        if key is None or self.size == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
