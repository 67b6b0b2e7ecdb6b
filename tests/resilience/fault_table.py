"""Re-run issue 13's fault table on the Redis topology and print it (not a test: takes minutes).

What runs is what docker-compose.yml runs, as real processes: a password-protected redis-server with
AOF (``appendfsync everysec``) and the five ``emostream worker`` processes (asr, fec, vlm, context,
fusion). This script plays the ingest: it publishes utterances with real espeak-ng speech as audio
blobs and two face frames (skimage's astronaut) each, applies one fault per scenario, and counts what
came out as events, what was announced as dropped (dead-lettered with a reason), what came twice and
what was lost (neither). ``recovery`` is the time from the end of the fault to the scenario's last
output.

    PYTHONPATH=. .venv/bin/python tests/resilience/fault_table.py [--n 12] [--only kill-asr,redis-restart]

Workers run with ``EMOSTREAM_BUS_CLAIM_IDLE_MS=5000`` (reclaim after 5 s instead of 30 s) so the table
takes minutes, not half an hour.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from emostream import schema  # noqa: E402
from emostream.bench.speech_data import speak  # noqa: E402
from emostream.bus import Bus, BusFull, TooLarge, open_bus  # noqa: E402
from emostream.bus.redis import BusUnavailable  # noqa: E402
from emostream.config import BusSettings  # noqa: E402
from emostream.ingest.frames import encode_jpeg  # noqa: E402
from emostream.schema import Dropped, EmotionEvent, FrameRef, Transcript, Utterance  # noqa: E402
from emostream.testing.redis_server import free_port, start_redis  # noqa: E402

STAGES = ("asr", "fec", "vlm", "context", "fusion")
PASSWORD = "fault-table-secret"
LINES = ["I just got the job!", "Are you kidding me?", "This is terrible.", "Okay, fine."]
WORKER_ENV = {
    "EMOSTREAM_BUS_CLAIM_IDLE_MS": "5000",
    "EMOSTREAM_FUSION_DEADLINE_MS": "1000",
    "EMOSTREAM_STAGE_LOG_FORMAT": "json",
}


@dataclass
class Row:
    scenario: str
    sent: int = 0
    refused: int = 0
    out: int = 0
    dropped: int = 0
    duplicates: int = 0
    lost: int = 0
    recovery_s: float = 0.0
    media_left: int = 0
    """Blob keys of the scenario's room still in Redis once its work is done (should be 0)."""


class Topology:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.redis: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: Counter[str] = Counter()

    def start_redis(self) -> None:
        self.redis = start_redis(
            self.port, "--requirepass", PASSWORD, "--appendonly", "yes", "--appendfsync", "everysec",
            "--dir", str(self.tmp),
        )  # fmt: skip

    def start_worker(self, name: str) -> None:
        self.starts[name] += 1
        log = open(self.tmp / f"{name}-{self.starts[name]}.log", "wb")  # noqa: SIM115 - child owns it
        cmd = [sys.executable, "-m", "emostream", "worker", name, "--redis", self.url]
        cmd += ["--consumer", f"{name}-{self.starts[name]}"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **WORKER_ENV}
        self.workers[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)

    def signal(self, name: str, sig: signal.Signals) -> None:
        self.workers[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.workers[name].wait(10)

    def stop(self) -> None:
        for p in self.workers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.workers.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(10)


class Feeder:
    """Publishes utterances (audio blob + two frames) of one room and counts what comes back."""

    def __init__(self, bus: Bus, audio: list[np.ndarray], jpeg: bytes) -> None:
        self.bus, self.audio, self.jpeg = bus, audio, jpeg

    async def utterance(self, room: str, n: int, ttl_s: float = 600.0, text: str = "") -> Utterance:
        """Speech and two frames; with ``text`` (gold text, ASR passes it through) no media at all."""
        audio = self.audio[n % len(self.audio)]
        key = schema.utterance_key(room, "alice", n)
        ref = "" if text else await self.bus.put_blob(f"{key}.f32", audio.tobytes(), ttl_s)
        frames = (
            []
            if text
            else [
                FrameRef(t=t, blob=await self.bus.put_blob(f"{key}/f{t}", self.jpeg, ttl_s))
                for t in (0.2, 0.6)
            ]
        )
        end = len(audio) / 16_000
        return Utterance(
            room=room, speaker="alice", utterance=n, start=n * 3.0, end=n * 3.0 + end, audio=ref,
            frames=frames, text=text, eos_at=schema.now(),
        )  # fmt: skip


async def _outputs(bus: Bus, room: str, last: dict[str, str]) -> tuple[list[str], set[int]]:
    """New event ids and dropped utterance indices of ``room`` since ``last`` (tail, no group)."""
    events: list[str] = []
    dropped: set[int] = set()
    while True:
        try:
            entries = await bus.tail(last, 500, 10)
        except Exception:  # Redis restarting: the caller retries
            return events, dropped
        if not entries:
            return events, dropped
        for e in entries:
            last[e.stream] = e.id
            if e.error:
                continue
            if e.stream == EmotionEvent.stream:
                ev = schema.decode(e.data, EmotionEvent)
                if ev.room == room:
                    events.append(ev.id)
            elif e.stream == Dropped.stream:
                d = schema.decode(e.data, Dropped)
                if d.room == room:
                    dropped.add(d.utterance)
                    print(
                        f"  dropped {d.key} (from {d.source}, {d.group}): {d.reason[:200]}", file=sys.stderr
                    )


Fault = Callable[[Topology, Bus], Awaitable["asyncio.Task[None] | None"]]


async def run_scenario(
    topo: Topology,
    bus: Bus,
    feeder: Feeder,
    name: str,
    n: int,
    fault: Fault | None,
    *,
    ttl_s: float = 600.0,
    text: str = "",
    poison: bool = False,
    timeout_s: float = 150.0,
    producer: Bus | None = None,
) -> Row:
    room = f"{name}-{int(time.time())}"
    row = Row(name)
    last = {
        EmotionEvent.stream: await bus.last_id(EmotionEvent.stream),
        Dropped.stream: await bus.last_id(Dropped.stream),
    }
    sent: list[int] = []
    fault_end = time.monotonic()
    ending: asyncio.Task[None] | None = None
    for i in range(n):
        if fault is not None and i == n // 3:
            ending = await fault(topo, bus)
            fault_end = time.monotonic()
        if poison and i == n // 2:
            raw = aioredis.Redis.from_url(topo.url)
            for stream in (
                Utterance.stream,
                Transcript.stream,
                schema.VisualDescription.stream,
                EmotionEvent.stream,
            ):
                await raw.xadd(f"emostream:{stream}", {"x": b"poison"})
            await raw.aclose()
        for attempt in range(40):  # an ingest waits for a restarting Redis
            try:
                msg = await feeder.utterance(room, i, ttl_s, text)
                await (producer or bus).publish(Utterance.stream, schema.encode(msg))
                sent.append(i)
            except (BusFull, TooLarge):
                row.refused += 1
            except BusUnavailable:
                if attempt == 39:
                    raise
                await asyncio.sleep(0.25)
                continue
            break
        await asyncio.sleep(0.05 if text else 0.4)
    row.sent = len(sent)
    if ending is not None:
        await ending
        fault_end = time.monotonic()
    ids: list[str] = []
    dropped: set[int] = set()
    last_output = time.monotonic()
    deadline = time.monotonic() + timeout_s
    want = {schema.event_id(room, "alice", i) for i in sent}
    while time.monotonic() < deadline:
        new_ids, new_dropped = await _outputs(bus, room, last)
        if new_ids or new_dropped - dropped:
            last_output = time.monotonic()
        ids += new_ids
        dropped |= new_dropped
        got = set(ids) | {schema.event_id(room, "alice", i) for i in dropped}
        if want <= got:
            await asyncio.sleep(3)  # late duplicates
            more, _ = await _outputs(bus, room, last)
            ids += more
            break
        await asyncio.sleep(0.5)
    unique = set(ids) & want
    row.out = len(unique)
    row.dropped = len({i for i in dropped if schema.event_id(room, "alice", i) not in unique})
    row.duplicates = len(ids) - len(set(ids))
    row.lost = row.sent - row.out - row.dropped
    row.recovery_s = max(0.0, last_output - fault_end) if fault is not None else 0.0
    row.media_left = await _media_left(topo, room)
    return row


async def _media_left(topo: Topology, room: str) -> int:
    """Blobs of ``room`` left after its events came out (the last group's ack deletes each one; give
    the visual branch, which may finish after the event, a few seconds)."""
    raw = aioredis.Redis.from_url(topo.url)
    glob = room.replace("*", "\\*").replace("?", "\\?").replace("[", "\\[") + "/*"
    patterns = [f"emostream:blob:{glob}", f"emostream:blob:face/{glob}"]  # audio and frames, face crops
    try:
        for _ in range(20):
            left = [k for p in patterns async for k in raw.scan_iter(match=p, count=1000)]
            if not left:
                return 0
            await asyncio.sleep(0.5)
        return len(left)
    finally:
        await raw.aclose()


def _kill_restart(name: str) -> Fault:
    async def fault(topo: Topology, bus: Bus) -> None:
        topo.signal(name, signal.SIGKILL)
        topo.start_worker(name)

    return fault


def _pause(name: str, seconds: float) -> Fault:
    """SIGSTOP now, SIGCONT ``seconds`` later; the feeding goes on meanwhile (returns the resume task)."""

    async def fault(topo: Topology, bus: Bus) -> asyncio.Task[None]:
        topo.signal(name, signal.SIGSTOP)
        return asyncio.create_task(_resume_later(topo, name, seconds))

    return fault


async def _redis_restart(topo: Topology, bus: Bus) -> None:
    await asyncio.sleep(1.5)  # past the AOF fsync window
    assert topo.redis is not None
    topo.redis.send_signal(signal.SIGKILL)
    topo.redis.wait(10)
    await asyncio.sleep(1.0)
    topo.start_redis()


async def _warm_up(bus: Bus, feeder: Feeder) -> None:
    """One utterance through the whole pipeline: every worker has loaded its models."""
    room = f"warmup-{int(time.time())}"
    last = {EmotionEvent.stream: await bus.last_id(EmotionEvent.stream), Dropped.stream: "0-0"}
    await bus.publish(Utterance.stream, schema.encode(await feeder.utterance(room, 0)))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ids, _ = await _outputs(bus, room, last)
        if ids:
            return
        await asyncio.sleep(0.5)
    raise SystemExit("the topology produced no event in 300 s: see the worker logs")


async def main(n: int, only: set[str]) -> list[Row]:
    from skimage import data

    tmp = Path(tempfile.mkdtemp(prefix="emostream-faults-"))
    topo = Topology(tmp)
    topo.start_redis()
    bus = open_bus(topo.url, BusSettings(url=topo.url, publish_timeout_s=30))
    capped = open_bus(topo.url, BusSettings(url=topo.url, maxlen=50, publish_timeout_s=0.5))
    hostile = open_bus(topo.url, BusSettings(url=topo.url, max_message_bytes=64 << 20))
    """A producer that ignores the message cap (another program): the workers must still cope."""
    audio = [speak(line).astype(np.float32) for line in LINES]
    feeder = Feeder(bus, audio, encode_jpeg(data.astronaut()[::2, ::2].copy(), 85))
    for name in STAGES:
        topo.start_worker(name)
    rows: list[Row] = []
    try:
        t0 = time.monotonic()
        await _warm_up(bus, feeder)
        print(f"topology warm after {time.monotonic() - t0:.0f} s; logs in {tmp}", file=sys.stderr)
        plan: list[tuple[str, dict[str, object]]] = [
            ("baseline", {"fault": None}),
            ("kill -9 asr", {"fault": _kill_restart("asr")}),
            ("kill -9 context", {"fault": _kill_restart("context")}),
            ("kill -9 fusion", {"fault": _kill_restart("fusion")}),
            ("SIGSTOP asr 20 s", {"fault": _pause("asr", 20)}),
            ("redis kill -9 + restart (AOF)", {"fault": _redis_restart}),
            ("poison entries (no d field)", {"fault": None, "poison": True}),
            ("blob TTL 5 s, asr paused 15 s", {"fault": _pause("asr", 15), "ttl_s": 5.0}),
            ("20 MB text utterance", {"fault": None, "text": "x" * (20 << 20), "n": 1, "producer": hostile}),
            ("maxlen 50, asr stalled, 120 in", {"fault": None, "text": "Fine.", "n": 120, "cap": True}),
        ]
        for name, opts in plan:
            if only and name not in only and name.split()[0] not in only:
                continue
            print(f"running: {name}", file=sys.stderr)
            count = int(opts.pop("n", n))  # type: ignore[call-overload]
            if opts.pop("cap", False):
                topo.signal("asr", signal.SIGSTOP)
                stall = asyncio.create_task(_resume_later(topo, "asr", 15))
                row = await run_scenario(topo, bus, feeder, name, count, producer=capped, **opts)  # type: ignore[arg-type]
                await stall
            else:
                row = await run_scenario(topo, bus, feeder, name, count, **opts)  # type: ignore[arg-type]
            print(_line(row), file=sys.stderr)
            rows.append(row)
    finally:
        await bus.close()
        await capped.close()
        await hostile.close()
        topo.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


async def _resume_later(topo: Topology, name: str, seconds: float) -> None:
    await asyncio.sleep(seconds)
    topo.signal(name, signal.SIGCONT)


HEADER = (
    "| scenario | in | refused | out | dropped (announced) | duplicates | lost | recovery | media left |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _line(r: Row) -> str:
    rec = f"{r.recovery_s:.1f} s" if r.recovery_s else "-"
    return (
        f"| {r.scenario} | {r.sent} | {r.refused} | {r.out} | {r.dropped} | {r.duplicates} | {r.lost} | {rec} "
        f"| {r.media_left} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="utterances per scenario")
    parser.add_argument("--only", default="", help="comma-separated scenario names (or first words)")
    args = parser.parse_args()
    result = asyncio.run(main(args.n, {s.strip() for s in args.only.split(",") if s.strip()}))
    print(HEADER)
    for r in result:
        print(_line(r))
