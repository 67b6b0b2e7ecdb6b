"""`emostream bench bus`: publish-to-consume latency and throughput of a 3-stage toy pipeline.

Per bus (memory, then Redis) it runs ``toy.0 -> hop1 -> hop2 -> hop3 -> toy.3`` with 1 KB messages and a
sink consumer group on ``toy.3``, and measures (1) saturation: ``--messages`` published as fast as the
producer can, messages/s from first publish to last consumed; (2) latency at a paced ``--rate``:
p50/p95 of publish -> consumed at the sink over ``--seconds``. Stages run in this process
(``--workers`` runs them as ``emostream worker toy`` processes instead, Redis only). Without
``--redis`` it starts its own redis-server on a free loopback port (no persistence).

Besides the wall-clock figures it reports CPU per message (this process, and redis-server from INFO)
for both phases: on a shared machine the wall figures swing with load, the CPU cost does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from emostream.bus import Bus, open_bus
from emostream.config import BusSettings, Settings, StageSettings
from emostream.errors import UserError
from emostream.progress import Steps
from emostream.runtime.errors import GroupMissing
from emostream.runtime.pipeline import Pipeline
from emostream.schema import decode, encode
from emostream.testing.redis_server import redis_server
from emostream.testing.toy import Ping, pipeline_stages, stream_of

HELP = "Bus throughput and publish-to-consume latency through a 3-stage pipeline (memory and Redis)."
HOPS = 3
SINK = "bench-sink"
WARMUP = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON line per bus")
    parser.add_argument(
        "--redis", metavar="URL", help="use this Redis (default: start a private redis-server)"
    )
    parser.add_argument("--messages", type=int, default=5000, metavar="N", help="saturation run size (5000)")
    parser.add_argument("--rate", type=float, default=1000.0, metavar="R", help="paced rate, msg/s (1000)")
    parser.add_argument("--seconds", type=float, default=3.0, metavar="S", help="paced run length (3 s)")
    parser.add_argument("--concurrency", type=int, default=32, metavar="N", help="handlers per stage (32)")
    parser.add_argument("--bus", choices=["memory", "redis", "both"], default="both", help="which bus (both)")
    parser.add_argument("--workers", action="store_true", help="Redis: run the stages as worker processes")


def run(args: argparse.Namespace) -> int:
    kinds = ["memory", "redis"] if args.bus == "both" else [args.bus]
    total = WARMUP + args.messages + max(1, int(args.rate * args.seconds))
    for kind in kinds:
        with Steps(f"bench bus {kind}: messages through 3 hops", total) as bar:
            if kind == "memory":
                result = asyncio.run(_bench_url("memory://", args, False, bar))
            elif args.redis:
                result = asyncio.run(_bench_url(args.redis, args, args.workers, bar))
            else:
                with redis_server() as url:
                    result = asyncio.run(_bench_url(url, args, args.workers, bar))
        result = {"bus": kind, **result}
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(
                f"{kind:6s} {result['messages_per_s']:8.0f} msg/s saturated | at {args.rate:g} msg/s: "
                f"p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms",
                flush=True,
            )
    return 0


class _Sink:
    """Consumes ``toy.3`` through its own group; records publish -> consume latency per message."""

    def __init__(self, bus: Bus, bar: Steps) -> None:
        self.bus, self.seen, self.bar = bus, 0, bar
        self.latencies: list[float] = []
        self.last_at = 0.0
        self._changed = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        out = stream_of(HOPS)
        while not stop.is_set():
            got = await self.bus.read_group([out], SINK, "sink", 1000, 50)
            at = time.time()
            for d in got:
                self.latencies.append(at - decode(d.data, Ping).sent_at)
            if got:
                await self.bus.ack(out, SINK, [d.id for d in got])
                self.seen += len(got)
                self.bar.update(completed=self.seen)
                self.last_at = time.perf_counter()
                self._changed.set()

    async def wait_for(self, total: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.seen < total:
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise UserError(f"bench stalled: {self.seen}/{total} messages arrived in {timeout_s:g} s")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass


def _ping(n: int, payload: bytes) -> bytes:
    return encode(Ping(id=f"m{n}", n=n, sent_at=time.time(), payload=payload))


async def _bench_url(url: str, args: argparse.Namespace, workers: bool, bar: Steps) -> dict[str, Any]:
    bus = open_bus(url, BusSettings(url=url, maxlen=max(10_000, args.messages * 2)))
    settings = Settings(
        bus=BusSettings(url=url, block_ms=100, maxlen=max(10_000, args.messages * 2)),
        stage=StageSettings(concurrency=args.concurrency, lag_every_s=60),
    )
    stop = asyncio.Event()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await bus.ping()
        stage_task: asyncio.Task[Any] | None = None
        if workers:
            procs = _start_workers(url, args.concurrency)
            await _wait_groups(bus)
        else:
            pipeline = Pipeline(bus, settings)
            for i, stage in enumerate(pipeline_stages(HOPS)):
                pipeline.add(stage, consumer=f"bench-{i + 1}")
            ready = asyncio.Event()
            stage_task = asyncio.create_task(pipeline.run(stop, ready))
            await ready.wait()
        await bus.ensure_group(stream_of(HOPS), SINK, "$")
        sink = _Sink(bus, bar)
        sink_task = asyncio.create_task(sink.run(stop))
        payload = os.urandom(1024)
        n = 0
        for n in range(WARMUP):  # warm-up: connections, code paths
            await bus.publish(stream_of(0), _ping(n, payload))
        await sink.wait_for(WARMUP, 30)

        base = sink.seen
        cpu0, server0 = time.process_time(), await _server_cpu(bus)
        t0 = time.perf_counter()
        for start in range(0, args.messages, 250):
            items = [_ping(n + 1 + i, payload) for i in range(start, min(args.messages, start + 250))]
            await bus.publish_many(stream_of(0), items)
        n += args.messages
        await sink.wait_for(base + args.messages, 120)
        throughput = args.messages / (sink.last_at - t0)
        cpu_us = 1e6 * (time.process_time() - cpu0) / args.messages
        server_us = 1e6 * (await _server_cpu(bus) - server0) / args.messages

        sink.latencies.clear()
        base = sink.seen
        paced = max(1, int(args.rate * args.seconds))
        cpu0, server0 = time.process_time(), await _server_cpu(bus)
        t0 = time.perf_counter()
        sent = 0
        while sent < paced:  # every tick publishes all messages due by now (one round trip)
            due = min(paced, int((time.perf_counter() - t0) * args.rate) + 1)
            if due > sent:
                items = [_ping(n + 1 + i, payload) for i in range(sent, due)]
                await bus.publish_many(stream_of(0), items)
                sent = due
            await asyncio.sleep(max(0.0, t0 + sent / args.rate - time.perf_counter()))
        achieved = paced / (time.perf_counter() - t0)
        await sink.wait_for(base + paced, 60)
        paced_cpu_us = 1e6 * (time.process_time() - cpu0) / paced
        paced_server_us = 1e6 * (await _server_cpu(bus) - server0) / paced
        lat = sorted(sink.latencies)
        stop.set()
        await sink_task
        if stage_task is not None:
            await stage_task
        return {
            "messages_per_s": round(throughput, 1),
            "p50_ms": round(1000 * statistics.median(lat), 3),
            "p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 3),
            "paced_rate": round(achieved, 1),
            "paced_messages": paced,
            "saturation_messages": args.messages,
            "stages": "workers" if workers else "in-process",
            "message_bytes": len(_ping(0, payload)),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "client_cpu_us_per_msg": round(cpu_us, 1),
            "server_cpu_us_per_msg": round(server_us, 1),
            "paced_client_cpu_us_per_msg": round(paced_cpu_us, 1),
            "paced_server_cpu_us_per_msg": round(paced_server_us, 1),
        }
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)
        await bus.close()


async def _server_cpu(bus: Bus) -> float:
    """CPU seconds redis-server has used so far (0 for the in-memory bus)."""
    info = getattr(bus, "info", None)
    if info is None:
        return 0.0
    cpu = await info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _start_workers(url: str, concurrency: int) -> list[subprocess.Popen[bytes]]:
    procs = []
    for hop in range(1, HOPS + 1):
        env = {**os.environ, "TOY_HOP": str(hop), "EMOSTREAM_STAGE_LOG_LEVEL": "warning"}
        cmd = [sys.executable, "-m", "emostream", "worker", "toy", "--redis", url]
        cmd += ["--concurrency", str(concurrency), "--consumer", f"bench-{hop}"]
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


async def _wait_groups(bus: Bus, timeout_s: float = 30) -> None:
    """Wait until every worker process created its consumer group (so no message is published early)."""
    deadline = time.monotonic() + timeout_s
    for hop in range(1, HOPS + 1):
        while True:
            try:
                await bus.pending_count(stream_of(hop - 1), f"toy{hop}")
                break
            except GroupMissing:  # until the worker is up
                if time.monotonic() > deadline:
                    raise UserError(
                        f"toy worker for hop {hop} did not start within {timeout_s:g} s"
                    ) from None
                await asyncio.sleep(0.1)
