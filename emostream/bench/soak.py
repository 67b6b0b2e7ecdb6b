"""``emostream bench soak``: a long call under faults, and an account of every utterance spoken.

N aiortc WHIP participants say the [call] prompts (``bench call``'s media, looped) and show a face at
wall-clock pace into ``emostream serve --redis``; the five stages run as separate ``emostream worker``
processes (two asr replicas) over a real redis-server with AOF, all started like ``emostream up``
(:mod:`emostream.bench.soak_stack`). While they talk, a fault schedule spread over the run kills -9
each worker type once (restarted at once), restarts Redis (kill -9, AOF reload), drops one
participant's peer connection and rejoins it, SIGSTOPs one worker for 30 s, and stalls the whole host
(every process of the stack and every participant SIGSTOPped together, as a paused VM or a starved
machine does; on resume each publisher sends what it owes in a burst).

Every utterance spoken must end as exactly one EmotionEvent at the SSE subscriber or a stated reason
(a ``Dropped`` record / dead letter); anything else is a silent loss. The report
(:mod:`emostream.bench.soak_report`) is one JSON line plus a folder with the JSON, a per-utterance
account and a PNG of latency and RSS over time with the faults marked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from emostream.bench.call import SECRET, Spoken, follow
from emostream.bench.call_media import PORTRAITS
from emostream.bench.soak_participant import ParticipantProc
from emostream.bench.soak_stack import SoakStack
from emostream.client import subscribe
from emostream.errors import UserError
from emostream.schema import STREAM_TYPES, Dropped, EmotionEvent, Utterance, decode
from emostream.server import auth

HELP = (
    "Soak: N WHIP participants talk for M minutes into serve --redis + worker processes while workers "
    "are killed, Redis restarts, a peer drops and a worker hangs; every utterance accounted for."
)
ROOM = "soak"
KINDS = ("kill9", "redis_restart", "rejoin", "sigstop", "stall")


@dataclass
class Fault:
    kind: str
    """``kill9``, ``redis_restart``, ``rejoin``, ``sigstop`` or ``stall``."""
    target: str
    at: float = 0.0
    """Planned offset (s) from the start of talk; ``started``/``ended`` are wall seconds."""
    started: float = 0.0
    ended: float = 0.0


def schedule(
    talk_s: float, warmup_s: float, stop_s: float, participants: int, only: frozenset[str] | None = None
) -> list[Fault]:
    """Every fault once (or those of the kinds in ``only``), spread evenly between the end of warm-up
    and 85 % of the talk."""
    faults = [
        Fault("kill9", "asr-1"),
        Fault("kill9", "fec-1"),
        Fault("redis_restart", "redis"),
        Fault("kill9", "vlm-1"),
        Fault("rejoin", f"speaker{min(2, participants)}"),
        Fault("stall", "host"),
        Fault("kill9", "context-1"),
        Fault("sigstop", "asr-2"),
        Fault("kill9", "fusion-1"),
    ]
    faults = [f for f in faults if only is None or f.kind in only]
    span = max(talk_s * 0.85 - warmup_s - stop_s, 1.0)
    for i, f in enumerate(faults):
        f.at = warmup_s + span * i / max(1, len(faults) - 1)
    return faults


@dataclass
class SoakRun:
    """What happened, for :mod:`emostream.bench.soak_report`."""

    participants: int
    started: float
    talk_s: float
    warmup_s: float
    faults: list[Fault]
    spoken: list[Spoken]
    events: list[tuple[float, EmotionEvent]]
    utterances: list[Utterance]
    dropped: list[Dropped]
    dead_letters: dict[str, int]
    serve_metrics: str
    rss: list[tuple[float, str, float]]
    restarted_at: dict[str, float]
    crashes: list[str]
    reconnects: int
    load: str
    calls: dict[str, list[tuple[float, str]]]
    """Per participant: (second of the talk, connection state / drop / unplanned loss)."""
    bench_errors: list[str]
    loop_lag_ms: list[float]
    """The participant processes' event-loop lag samples (their ICE/RTP run on those loops)."""
    fps: float
    rtp: dict[str, list[tuple[float, str, int, int]]] = field(default_factory=dict)


class Tail:
    """Follows ``utterances`` and ``dropped`` on Redis (no group), riding out its restart."""

    def __init__(self, redis_url: str) -> None:
        from emostream.bus import open_bus

        self.bus = open_bus(redis_url)
        self.last = {"utterances": "0", "dropped": "0"}
        self.utterances: list[Utterance] = []
        self.dropped: list[Dropped] = []

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                entries = await self.bus.tail(dict(self.last), 500, 500)
            except Exception:  # noqa: BLE001 - Redis is restarting (a scheduled fault): try again
                await asyncio.sleep(0.5)
                continue
            for e in entries:
                self.last[e.stream] = e.id
                if e.error:
                    continue
                if e.stream == "utterances":
                    self.utterances.append(decode(e.data, Utterance))
                else:
                    self.dropped.append(decode(e.data, Dropped))

    async def in_flight(self) -> int:
        """Entries the pipeline's consumer groups hold un-acked or have not read yet: while there are
        any, events may still come (-1 while Redis does not answer)."""
        from emostream.runtime.errors import GroupMissing
        from emostream.runtime.topology import STAGES, TAILED

        n = 0
        try:
            for spec in STAGES.values():
                for stream in spec.inputs if spec.public else ():
                    if (spec.name, stream) in TAILED or not await self.bus.length(stream):
                        continue  # tailed (no group), or empty: nothing held
                    with contextlib.suppress(GroupMissing):  # a stream nobody wrote: nothing held
                        n += await self.bus.pending_count(stream, spec.name)
                        n += await self.bus.lag(stream, spec.name)
        except Exception:  # noqa: BLE001 - Redis is restarting: not settled
            return -1
        return n

    async def dead_letters(self) -> dict[str, int]:
        out = {}
        for s in STREAM_TYPES:
            with contextlib.suppress(Exception):
                n = await self.bus.length(f"{s}:dead")
                if n:
                    out[f"{s}:dead"] = n
        return out


async def _apply(
    fault: Fault, stack: SoakStack, people: dict[str, ParticipantProc], stop_s: float, stall_s: float
) -> None:
    fault.started = time.time()
    if fault.kind == "kill9":
        await stack.kill9(fault.target)
    elif fault.kind == "redis_restart":
        await stack.restart_redis()
    elif fault.kind == "sigstop":
        await stack.pause(fault.target, stop_s)
    elif fault.kind == "rejoin":
        await people[fault.target].drop()  # offline for a moment, then the same participant is back
    elif fault.kind == "stall":
        await stack.stall([p.proc.pid for p in people.values() if p.proc is not None], stall_s)
    fault.ended = time.time()


@dataclass(frozen=True)
class Options:
    participants: int = 8
    minutes: float = 10.0
    warmup_s: float = 60.0
    stop_s: float = 30.0
    drain_s: float = 180.0
    only: frozenset[str] | None = None
    """Fault kinds to run (None: all)."""
    fps: float = 15.0
    quiet_s: float = 60.0
    """After the talk, stop waiting once no event came for this long."""
    pause_s: float = 1.5
    """Silence between one participant's prompts."""
    retention_s: float = 120.0
    """``bus.retention_s`` (and ``context.room_idle_s``) of the stack: Redis holds that much of every
    stream, so its memory only levels off once the talk is longer than this (warm-up past it)."""
    stall_s: float = 20.0
    """How long the ``stall`` fault freezes the host (under ``bus.claim_idle_ms`` and ICE consent's
    30 s, which a real stall that long would also trip)."""


async def run_soak(out: Path, opts: Options) -> SoakRun:
    from emostream.bench import soak_stack

    stack = soak_stack.start(out / "stack", SECRET, retention_s=opts.retention_s)
    try:
        await stack.ready()
        return await _talk(stack, opts, out)
    finally:
        await asyncio.to_thread(stack.stop)


async def _talk(stack: SoakStack, opts: Options, out: Path) -> SoakRun:
    participants, talk_s, warmup_s, stop_s, drain_s = (
        opts.participants, opts.minutes * 60, opts.warmup_s, opts.stop_s, opts.drain_s
    )  # fmt: skip
    portraits = sorted(PORTRAITS.glob("*.jpg"))
    url = f"{stack.api_url}/whip/{ROOM}"
    people = {
        f"speaker{i + 1}": ParticipantProc(
            f"speaker{i + 1}", i, portraits[i % len(portraits)], url, opts.pause_s, opts.fps
        )
        for i in range(participants)
    }
    faults = schedule(talk_s, warmup_s, stop_s, participants, opts.only)
    events: list[tuple[float, EmotionEvent]] = []
    sub = subscribe(stack.api_url, ROOM, auth.create(SECRET, ROOM, "subscribe", name="soak", ttl_s=86_400))
    tail = Tail(stack.redis_url)
    errors: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _, ctx: errors.append(str(ctx.get("exception") or ctx["message"]))
    )
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(follow(sub, events)),
        asyncio.create_task(tail.run(stop)),
    ]
    await asyncio.sleep(0.5)
    started = time.time()
    try:
        for p in people.values():
            await p.join(ROOM, out / "bench.log")
        for fault in faults:
            while time.time() < started + fault.at:
                await _tick(stack, 1.0)
            await _apply(fault, stack, people, stop_s, opts.stall_s)
        while time.time() < started + talk_s:
            await _tick(stack, 1.0)
        accounts = {p.name: await p.leave() for p in people.values()}
        spoken = [s for a in accounts.values() for s in a.spoken]
        ended = time.time()
        while not _settled(
            ended, drain_s, opts.quiet_s, events, len(tail.dropped), len(spoken), await tail.in_flight()
        ):
            await _tick(stack, 1.0)
        await _tick(stack, 3.0)  # late duplicates, if any, arrive too
        stack.sample()
        metrics = await _scrape(stack.api_url)
        dead = await tail.dead_letters()
    finally:
        for p in people.values():
            p.kill()
        stop.set()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await tail.bus.close()
    return SoakRun(
        participants, started, talk_s, warmup_s, faults, spoken, events, tail.utterances, tail.dropped,
        dead, metrics, stack.rss, stack.restarted_at, stack.crashes, sub.reconnects, _load(),
        {n: [(round(t - started, 1), what) for t, what in a.log] for n, a in accounts.items()},
        errors + [f"{n}: {e}" for n, a in accounts.items() for e in a.errors],
        [ms for a in accounts.values() for ms in a.loop_lag_ms], opts.fps,
        {n: a.rtp for n, a in accounts.items()},
    )  # fmt: skip


def _settled(
    ended: float,
    drain_s: float,
    quiet_s: float,
    events: list[tuple[float, EmotionEvent]],
    dropped: int,
    spoken: int,
    in_flight: int,
) -> bool:
    """Stop waiting for late events once ``drain_s`` passed, or once the pipeline holds nothing
    (``in_flight``: entries pending or unread in a group) and either every prompt may be accounted for
    or none came for ``quiet_s``. Counts alone are not enough: a split utterance makes an extra event,
    and an entry waiting for a reclaim would be cut off."""
    now = time.time()
    if now > ended + drain_s:
        return True
    last = max([ended, *(t for t, _ in events[-1:])])
    counted = len({e.id for _, e in events}) + dropped >= spoken
    return in_flight == 0 and (counted or now > last + quiet_s)


async def _tick(stack: SoakStack, seconds: float) -> None:
    """Sample RSS (every 5 s) and restart crashed processes while waiting (each participant process
    redials a call that ended unasked itself, logged: a real client would)."""
    if not stack.rss or time.time() - stack.rss[-1][0] >= 5.0:
        stack.sample()
    stack.watch()
    await asyncio.sleep(seconds)


async def _scrape(api_url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"{api_url}/metrics") as r:
        return await r.text()


def _load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--minutes", type=float, default=10.0, metavar="M", help="talk time (default 10)")
    parser.add_argument("--participants", type=int, default=8, metavar="N", help="publishers (default 8)")
    parser.add_argument("--out", default="out/soak", metavar="DIR", help="report folder (default out/soak)")
    parser.add_argument(
        "--warmup", type=float, default=150.0, metavar="S", help="before faults and RSS start (default 150)"
    )
    parser.add_argument(
        "--pause", type=float, default=1.5, metavar="S", help="silence between one speaker's prompts (1.5)"
    )
    parser.add_argument(
        "--retention",
        type=float,
        default=120.0,
        metavar="S",
        help="the stack's bus.retention_s: Redis keeps this much of each stream (default 120)",
    )
    parser.add_argument("--stop-s", type=float, default=30.0, metavar="S", help="SIGSTOP length (default 30)")
    parser.add_argument(
        "--stall-s", type=float, default=20.0, metavar="S", help="host stall length (default 20)"
    )
    parser.add_argument("--drain", type=float, default=180.0, metavar="S", help="wait for late events")
    parser.add_argument(
        "--faults", metavar="KINDS", help=f"only these fault kinds, comma-separated ({', '.join(KINDS)})"
    )
    parser.add_argument(
        "--quiet", type=float, default=60.0, metavar="S", help="stop draining after S without events"
    )
    parser.add_argument("--fps", type=float, default=15.0, metavar="F", help="face video rate (default 15)")
    parser.add_argument("--report", metavar="DIR", help="only rebuild the report of an earlier soak's DIR")
    parser.add_argument("--json", action="store_true", help="one JSON line")


def run(args: argparse.Namespace) -> int:
    from emostream.bench import soak_report
    from emostream.bench.netns import private_network

    if args.report:
        raw = Path(args.report) / "run.json"
        if not raw.is_file():
            raise UserError(f"{raw} not found: --report takes the folder of an earlier soak", exit_code=2)
        earlier = msgspec.json.decode(raw.read_bytes(), type=SoakRun)
        summary: dict[str, Any] = soak_report.write(earlier, Path(args.report))
        print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))
        return 0 if summary["silent_losses"] == 0 and summary["duplicates"] == 0 else 1
    if args.participants < 1 or args.minutes <= 0:
        raise UserError("--participants must be >= 1 and --minutes > 0", exit_code=2)
    only = frozenset(k.strip() for k in args.faults.split(",")) if args.faults else None
    if only is not None and not only <= set(KINDS):
        raise UserError(f"--faults {args.faults!r}: choose from {', '.join(KINDS)}", exit_code=2)
    opts = Options(
        args.participants, args.minutes, args.warmup, args.stop_s, args.drain, only, args.fps, args.quiet,
        args.pause, args.retention, args.stall_s,
    )  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with private_network("emo-soak"):
        result = asyncio.run(run_soak(out, opts))
    (out / "run.json").write_bytes(msgspec.json.encode(result))
    summary = soak_report.write(result, out)
    print(json.dumps(summary) if args.json else json.dumps(summary, indent=1))
    return 0 if summary["silent_losses"] == 0 and summary["duplicates"] == 0 else 1
