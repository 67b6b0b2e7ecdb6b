"""Event-loop lag of this process: how late a timer callback runs (what every coroutine waits on top).

One task sleeps ``every_s`` in a loop and records how much later than asked it woke up. On a process that
decodes WebRTC media and runs model stages, a large lag means something holds the loop (or the GIL):
every packet, bus hop and SSE write waits that long. Exported as ``emostream_loop_lag_seconds``.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Gauge, Histogram

LOOP_LAG = Histogram(
    "emostream_loop_lag_seconds",
    "How late the event loop ran a timer callback (sampled every 50 ms)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LOOP_LAG_MAX = Gauge("emostream_loop_lag_max_seconds", "Largest event-loop lag seen by this process")


async def monitor(stop: asyncio.Event, every_s: float = 0.05) -> None:
    """Sample the loop lag until ``stop`` is set."""
    worst = 0.0
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(every_s)
        lag = max(0.0, time.perf_counter() - t0 - every_s)
        LOOP_LAG.observe(lag)
        if lag > worst:
            worst = lag
            LOOP_LAG_MAX.set(lag)
