"""`emostream bench events`: the event API under load. A server (memory bus, API only) takes events
into one room at a steady rate, from the pipeline's output stream through the room fan-out, and N SSE
subscribers in a separate process measure publish -> delivery latency and count what they lost.

One JSON line: subscribers, published_per_s, delivered_per_s, p50_ms, p95_ms, lost. Target on the
2-core dev box: 1,000 events/s, 50 subscribers, p95 <= 50 ms, lost 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from typing import Any

from emostream.progress import Steps

HELP = "Event API load: N SSE subscribers of one room at a steady publish rate (p50/p95 latency, lost)."
ROOM = "bench"
PROCS = 4
"""Subscriber processes."""


_STAMP = re.compile(rb'"utterance":(\d+),.*?"emitted_at":([0-9.eE+-]+)')
"""Utterance number and publish time of each event in an SSE chunk (fields in EmotionEvent order)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--subscribers", type=int, default=50, metavar="N", help="SSE subscribers (50)")
    parser.add_argument("--rate", type=float, default=1000.0, metavar="R", help="events per second (1000)")
    parser.add_argument("--seconds", type=float, default=5.0, metavar="S", help="publishing time (5 s)")


def run(args: argparse.Namespace) -> int:
    from emostream.errors import UserError

    if args.subscribers < 1 or args.rate <= 0 or args.seconds <= 0:
        raise UserError("--subscribers, --rate and --seconds must be above 0", exit_code=2)
    with Steps(f"bench events: {args.subscribers} subscribers, events published") as bar:
        row = asyncio.run(_bench(args.subscribers, args.rate, args.seconds, bar))
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"{row['subscribers']} subscribers, {row['published_per_s']:.0f} events/s published, "
            f"{row['delivered_per_s']:.0f} deliveries/s: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, "
            f"lost {row['lost']}"
        )
    return 0


async def _bench(n_subs: int, rate: float, seconds: float, bar: Steps | None = None) -> dict[str, Any]:
    import secrets

    from emostream import schema
    from emostream.config import ApiSettings, BusSettings, Settings
    from emostream.server import auth
    from emostream.server.serve import start

    settings = Settings(
        bus=BusSettings(url="memory://", maxlen=100_000, block_ms=200), api=ApiSettings(buffer=4096)
    )
    secret = secrets.token_urlsafe(32)
    server = await start(settings, "127.0.0.1", 0, [], secret)
    children: list[asyncio.subprocess.Process] = []
    try:
        await server.state.ready.wait()
        total = int(rate * seconds)
        tok = auth.create(secret, ROOM, "subscribe", ttl_s=3600)
        # subscribers spread over a few processes, so the measuring side is not the bottleneck
        groups = [n_subs // PROCS + (1 if k < n_subs % PROCS else 0) for k in range(min(PROCS, n_subs))]
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "emostream.bench.events",
                server.url,
                ROOM,
                tok,
                str(g),
                str(total),
                stdout=asyncio.subprocess.PIPE,
            )
            for g in groups
        ]
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), 60)
            if line.strip() != b"ready":
                raise RuntimeError(f"subscriber process failed to start: {line!r}")
        bus = server.state.bus
        probs = {k: 1 / 7 for k in schema.EMOTIONS}
        if bar is not None:
            bar.update(completed=0, total=total)
        t0 = time.perf_counter()
        for i in range(total):
            if bar is not None and i % 100 == 0:
                bar.update(completed=i)
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = schema.EmotionEvent(
                room=ROOM,
                speaker=f"s{i % 4}",
                utterance=i,
                id=schema.event_id(ROOM, f"s{i % 4}", i),
                start=0.0,
                end=1.0,
                label="neutral",
                probabilities=probs,
                confidence=0.5,
                modalities=["text"],
                transcript="a short sentence of about this length",
                emitted_at=time.time(),
            )
            await bus.publish(schema.EmotionEvent.stream, schema.encode(event))
        published_s = time.perf_counter() - t0
        parts = []
        for child in children:
            out, _ = await asyncio.wait_for(child.communicate(), seconds + 60)
            parts.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
        await server.close(1.0)
    latencies = sorted(x for p in parts for x in p["latencies"])
    return {
        "subscribers": n_subs,
        "published_per_s": round(total / published_s, 1),
        "delivered_per_s": round(len(latencies) / published_s, 1),
        "p50_ms": _pct(latencies, 0.5),
        "p95_ms": _pct(latencies, 0.95),
        "lost": n_subs * total - len(latencies),
    }


async def _subscribers(url: str, room: str, tok: str, n: int, total: int) -> dict[str, Any]:
    """The subscriber side (its own process): n SSE connections, latency of every delivery."""
    import aiohttp

    latencies: list[float] = []
    counts = [0] * n
    ready = [asyncio.Event() for _ in range(n)]

    async def one(k: int, session: aiohttp.ClientSession) -> None:
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {tok}"}
        seen: set[str] = set()
        async with session.get(f"{url}/v1/rooms/{room}/events", headers=headers) as resp:
            buf = b""
            async for chunk in resp.content.iter_any():
                now = time.time()
                buf += chunk
                cut = buf.rfind(b"\n\n") + 2
                if cut < 2:
                    continue
                frames, buf = buf[:cut], buf[cut:]
                if not ready[k].is_set() and b"event: ready" in frames:
                    ready[k].set()
                # one C-speed scan per chunk: the measuring side must not be what is measured
                for utt, emitted in _STAMP.findall(frames):
                    if utt in seen:
                        continue
                    seen.add(utt)
                    latencies.append(now - float(emitted))
                    counts[k] += 1
                if counts[k] >= total:
                    return

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(one(k, session)) for k in range(n)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
        print("ready", flush=True)
        done, pending = await asyncio.wait(tasks, timeout=total / 100 + 30)
        for t in pending:
            t.cancel()
    return {"latencies": [round(x, 5) for x in latencies]}


def _pct(latencies: list[float], q: float) -> float:
    """Percentile in ms of sorted seconds (-1 when nothing arrived)."""
    if not latencies:
        return -1.0
    return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)


if __name__ == "__main__":
    url, room, tok, n, total = sys.argv[1:6]
    print(json.dumps(asyncio.run(_subscribers(url, room, tok, int(n), int(total)))), flush=True)
