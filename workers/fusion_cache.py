"""Visual cues waiting for their text: a bounded TTL cache keyed by utterance, with waiters and counters.

Every outcome is counted (``counts`` and the ``emostream_fusion_visual`` Prometheus counter), so no visual
result disappears silently:

``received``   a description arrived (duplicates from redelivery are not counted twice)
``used`` / ``absent`` / ``no_face`` / ``unreliable`` / ``disabled``   how each utterance was decided
``late``       a description arrived after its utterance was decided without it
``unmatched``  a description whose utterance never showed up within the TTL (or was evicted unmatched)
``stale``      a description published longer than the TTL ago (a replayed stream, a reused room id):
               never matched to a new utterance
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass

from prometheus_client import Counter as PromCounter

from emostream.schema import VisualDescription

log = logging.getLogger("emostream.fusion")
VISUAL = PromCounter("emostream_fusion_visual", "Visual cues at the fusion stage by outcome", ["outcome"])


@dataclass
class _Entry:
    visual: VisualDescription
    arrived: float
    matched: bool = False


class VisualCache:
    def __init__(self, ttl_s: float = 30.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.decisions: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.waiters: dict[str, asyncio.Event] = {}
        self.counts: Counter[str] = Counter()

    def count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        VISUAL.labels(outcome).inc()

    def put(self, visual: VisualDescription) -> None:
        key = visual.key
        if key in self.entries:
            return  # redelivered description
        published = max(visual.trace.values(), default=0.0)
        if published and time.time() - published >= self.ttl_s:
            self.count("stale")  # read back from the stream long after it was made: not this utterance's
            return
        decided = self.decisions.get(key)
        if decided is not None:
            if decided[0] != "used":
                self.count("late")
                log.info("visual cue arrived after its utterance was decided", extra={"key": key})
            return
        self.count("received")
        self.entries[key] = _Entry(visual, time.monotonic())
        while len(self.entries) > self.max_entries:
            _, old = self.entries.popitem(last=False)
            if not old.matched:
                self.count("unmatched")
        waiter = self.waiters.get(key)
        if waiter is not None:
            waiter.set()

    def get(self, key: str) -> VisualDescription | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        entry.matched = True
        return entry.visual

    async def wait(self, key: str, timeout_s: float) -> VisualDescription | None:
        """The cue for ``key``, waiting at most ``timeout_s`` for it to arrive."""
        found = self.get(key)
        if found is not None or timeout_s <= 0:
            return found
        waiter = self.waiters.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(waiter.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            if self.waiters.get(key) is waiter:
                del self.waiters[key]
        return self.get(key)

    def decided(self, key: str, status: str) -> None:
        """Record how ``key`` was decided (later cues for it then count as late)."""
        if key not in self.decisions:
            self.count(status)
        self.decisions[key] = (status, time.monotonic())
        self.decisions.move_to_end(key)
        while len(self.decisions) > self.max_entries:
            self.decisions.popitem(last=False)

    def expire(self, now: float | None = None) -> int:
        """Drop cues and decisions older than the TTL; returns how many unmatched cues were dropped."""
        now = time.monotonic() if now is None else now
        dropped = 0
        while self.entries:
            key, entry = next(iter(self.entries.items()))
            if now - entry.arrived < self.ttl_s:
                break
            del self.entries[key]
            if not entry.matched:
                dropped += 1
                self.count("unmatched")
                log.info("visual cue dropped: no text for its utterance", extra={"key": key})
        while self.decisions and now - next(iter(self.decisions.values()))[1] >= self.ttl_s:
            self.decisions.popitem(last=False)
        return dropped
