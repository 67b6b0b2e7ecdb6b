"""``emostream bench call``: N aiortc WHIP publishers speak real prompts (with pauses) and show a face at
wall-clock pace into a real ``emostream serve`` (started in-process: embedded bus, every stage, the WHIP
routes and the SSE API), in a private network.

Latency is measured from the **last voiced sample** of each prompt (known from the source audio, sent
at wall-clock pace) to the arrival of its EmotionEvent at the subscriber: what a person waits for, VAD
hangover included. ``stages`` splits it: ``vad`` (last voiced sample -> the segmenter's end of speech,
WebRTC transport and hangover), each pipeline stage's output after end of speech (the event's
``latency_ms``), and ``delivery`` (event emitted -> received).

The subscriber is an SSE client (``emostream.client.subscribe``) of the server's room API, so
``delivery`` includes the room fan-out and the HTTP hop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from emostream.bench import serve_proc
from emostream.bench.call_media import (
    DEFAULT_PROMPTS,
    PORTRAITS,
    FaceTrack,
    Program,
    SpeechTrack,
    load_prompt,
    transcripts,
)
from emostream.client import Subscription, subscribe
from emostream.config import Settings, load_settings
from emostream.evaluation.scores import edit_distance
from emostream.ingest.segmenter import close_delay_s
from emostream.progress import Steps
from emostream.runtime.topology import PIPELINE, build
from emostream.schema import EmotionEvent, Utterance, decode
from emostream.server import auth, serve
from emostream.server.whip_client import WhipPublisher

HELP = "Live-call latency: N WHIP publishers (real speech + face) -> pipeline -> events; speech end -> event."
SECRET = "bench-call-secret-of-at-least-32-bytes"


def publish_token(room: str, name: str, secret: str = SECRET, ttl_s: int = 3600) -> str:
    """A publish token for ``name`` in ``room`` (what ``emostream token create --role publish`` mints)."""
    return auth.create(secret, room, "publish", name=name, ttl_s=ttl_s)


@dataclass
class Spoken:
    speaker: str
    prompt: str
    text: str
    voiced_end: float
    """Wall-clock second of the prompt's last voiced sample."""
    send_lag: float = 0.0
    """Seconds the publisher sent that sample later than its wall-clock slot (a busy bench process)."""

    @property
    def sent(self) -> float:
        """Wall-clock second the last voiced sample actually left the publisher."""
        return self.voiced_end + self.send_lag


@dataclass
class CallRun:
    spoken: list[Spoken]
    events: list[tuple[float, EmotionEvent]]
    utterances: list[Utterance]
    matched: list[dict[str, Any]] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)
    """The server process's own figures, read from its ``/metrics`` (:func:`server_figures`)."""
    decide_after_s: float = 0.0
    """Media seconds from an utterance's audio end to the window that closes it (hangover - tail)."""

    def match(self) -> None:
        """Each event -> the prompt of its speaker whose last voiced sample lies in its span."""
        eos = {(u.speaker, u.utterance): u.eos_at for u in self.utterances}
        for arrived, ev in self.events:
            cands = [
                s
                for s in self.spoken
                if s.speaker == ev.speaker and ev.start - 0.3 <= s.voiced_end <= ev.end + 0.3
            ]
            if not cands:
                continue
            s = min(cands, key=lambda c: abs(c.voiced_end - ev.end))
            # end of speech: the utterance's own eos_at when this process saw it, else the event's
            # emit time less its eos -> emit latency (a subprocess server's utterances are not here)
            end = eos.get((ev.speaker, ev.utterance)) or ev.emitted_at - ev.latency_ms.get("total", 0) / 1000
            stages = {"vad": (end - s.voiced_end) * 1000}
            # the vad stage split (server clock: first sample arrival + samples since): the wait for
            # the closing window, then how late it was processed (ingest lag, the publisher's own
            # send lag included: a late sample is late for the server too)
            decided = ev.end + self.decide_after_s
            stages["vad_send_lag"] = s.send_lag * 1000
            stages["vad_ingest_lag"] = (end - decided) * 1000
            stages["vad_wait"] = (decided - s.voiced_end) * 1000  # vad = vad_wait + vad_ingest_lag
            stages |= {k: v for k, v in ev.latency_ms.items() if k != "total"}
            stages["delivery"] = (arrived - ev.emitted_at) * 1000 if ev.emitted_at else 0.0
            ref, hyp = words(s.text), words(ev.transcript)
            self.matched.append(
                {
                    "speaker": ev.speaker,
                    "prompt": s.prompt,
                    "latency_ms": (arrived - s.voiced_end) * 1000,
                    "stages": stages,
                    "errors": edit_distance(ref, hyp),
                    "words": len(ref),
                    "transcript": ev.transcript,
                    "label": ev.label,
                    "visual": ev.visual_status,
                }
            )

    def summary(self, participants: int) -> dict[str, Any]:
        lat = [m["latency_ms"] for m in self.matched]
        names = sorted({k for m in self.matched for k in m["stages"]})
        words = sum(m["words"] for m in self.matched)
        return {
            "participants": participants,
            "utterances": len(self.spoken),
            "events": len(self.events),
            "matched": len(self.matched),
            "speech_end_to_event_p50_ms": pct(lat, 50),
            "speech_end_to_event_p95_ms": pct(lat, 95),
            "stages": {n: pct([m["stages"][n] for m in self.matched if n in m["stages"]], 50) for n in names},
            "wer": round(sum(m["errors"] for m in self.matched) / words, 4) if words else None,
            "visual": dict(Counter(m["visual"] for m in self.matched)),
            "server": self.server,
        }


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c.isspace() else " " for c in text).split()


def pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


async def run_call(
    settings: Settings,
    participants: int = 2,
    prompts: tuple[str, ...] = DEFAULT_PROMPTS,
    pause_s: float = 1.5,
    room: str = "bench",
    drain_s: float = 4.0,
    subprocess: bool = False,
    config: str | None = None,
    redis: str | None = None,
    settle_s: float = 30.0,
    bar: Steps | None = None,
    encoded: bool = True,
) -> CallRun:
    """Run one call against ``emostream serve`` (embedded bus, every stage): in-process, or with
    ``subprocess`` a child process of its own (events still missing after the call are waited for up
    to ``settle_s``, so a slow server's latencies are measured, not cut off); with ``redis`` (a bus
    URL) that child only runs the API and the call ingest, and every stage is an ``emostream worker``
    process. Its events are read by an SSE subscriber (``emostream.client``). With ``encoded`` the
    publishers send Opus and VP8 encoded once at start (a remote client's encoder costs this machine
    nothing); without it they encode every frame as they send it. Call inside
    ``netns.private_network()``."""
    bar = bar or Steps("", show=False)
    bar.update(description="bench call: starting emostream serve (every stage)")
    child = None
    workers: list[serve_proc.WorkerProcess] = []
    if redis:
        workers = await serve_proc.start_workers(PIPELINE, redis, config)
    if subprocess or redis:
        try:
            child = await serve_proc.start_serve(SECRET, config, redis=redis)
        except BaseException:
            await serve_proc.stop_workers(workers)
            raise
        url = child.url
    else:
        settings = msgspec.structs.replace(
            settings, bus=msgspec.structs.replace(settings.bus, url="memory://")
        )
        server = await serve.start(settings, "127.0.0.1", 0, build(settings), SECRET)
        await asyncio.wait_for(server.state.ready.wait(), 120)
        url = server.url
    events: list[tuple[float, EmotionEvent]] = []
    viewer = auth.create(SECRET, room, "subscribe", name="bench", ttl_s=3600)
    tail = asyncio.create_task(follow(subscribe(url, room, viewer), events))
    await asyncio.sleep(0.3)  # the subscriber is connected before anyone speaks
    try:
        spoken = await _speak(
            f"{url}/whip/{room}", room, participants, prompts, pause_s, drain_s, bar, encoded
        )
        # a slow server's last events still count (late, not lost): wait for one per prompt, bounded
        deadline = time.monotonic() + settle_s
        while len(events) < len(spoken) and time.monotonic() < deadline:  # noqa: ASYNC110 - a count
            await asyncio.sleep(0.1)
    finally:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail
        figures = await server_figures(url, [w.metrics_url for w in workers])
        utts: list[Utterance] = []
        if child is not None:
            await child.stop()
            await serve_proc.stop_workers(workers)
        else:
            bus = server.state.bus
            utts = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 10_000, 10)]
            await server.close(settings.api.drain_s)
    result = CallRun(spoken, events, utts, server=figures)
    result.decide_after_s = close_delay_s(settings.vad)
    result.match()
    return result


async def server_figures(url: str, workers: list[str] | None = None) -> dict[str, Any]:
    """From the server's ``/metrics`` (and its workers'): the serve process's event-loop lag (mean,
    share over 50 ms, max) and each stage's mean handler time (decode -> outputs published, the first
    call's model warm-up included), so queue waits show as stage latency minus these."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    texts = []
    async with aiohttp.ClientSession() as http:
        for u in [url, *(workers or [])]:
            try:
                async with http.get(u + "/metrics") as r:
                    texts.append(await r.text())
            except aiohttp.ClientError as exc:
                return {"error": f"{u}/metrics unreadable: {exc}"}
    serve_samples = [s for fam in text_string_to_metric_families(texts[0]) for s in fam.samples]
    samples = [s for t in texts for fam in text_string_to_metric_families(t) for s in fam.samples]

    def value(name: str, **labels: str) -> float:
        return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())

    def serve_value(name: str, **labels: str) -> float:
        return sum(s.value for s in serve_samples if s.name == name and labels.items() <= s.labels.items())

    out: dict[str, Any] = {}
    n = serve_value("emostream_loop_lag_seconds_count")
    if n:
        over = n - serve_value("emostream_loop_lag_seconds_bucket", le="0.05")
        out["loop_lag_mean_ms"] = round(serve_value("emostream_loop_lag_seconds_sum") / n * 1000, 1)
        out["loop_lag_over_50ms"] = round(over / n, 3)
        out["loop_lag_max_ms"] = round(serve_value("emostream_loop_lag_max_seconds") * 1000, 1)
    handle = {}
    for st in sorted({s.labels["stage"] for s in samples if s.name == "emostream_handle_seconds_count"}):
        c = value("emostream_handle_seconds_count", stage=st)
        if c:
            handle[st] = round(value("emostream_handle_seconds_sum", stage=st) / c * 1000, 1)
    out["handler_mean_ms"] = handle
    asr = {
        f"utterances_{how}": value("emostream_asr_utterances_total", how=how)
        for how in ("speculative", "fresh")
    }
    asr |= {
        f"partials_{r}": value("emostream_asr_partials_total", result=r)
        for r in ("transcribed", "superseded", "late")
    }
    passes = value("emostream_asr_model_seconds_count")
    if passes:
        asr |= {
            "passes": passes,
            "pass_mean_ms": round(value("emostream_asr_model_seconds_sum") / passes * 1000, 1),
        }
    out["asr"] = asr
    out["vlm_embeddings"] = {
        h: value("emostream_vlm_embeddings_total", how=h) for h in ("encoded", "remembered")
    }
    return out


async def _speak(
    url: str,
    room: str,
    participants: int,
    prompts: tuple[str, ...],
    pause_s: float,
    drain_s: float,
    bar: Steps,
    encoded: bool,
) -> list[Spoken]:
    """N publishers say their prompts (rotated, staggered starts); the prompts' last voiced samples."""
    texts = transcripts()
    loaded = [load_prompt(n, texts) for n in prompts]
    portraits = sorted(PORTRAITS.glob("*.jpg"))
    pubs, tracks = [], []
    try:
        for i in range(participants):
            order = loaded[i % len(loaded) :] + loaded[: i % len(loaded)]
            speech = SpeechTrack(Program(order, pause_s=pause_s, lead_s=1.0 + 0.37 * i), encoded=encoded)
            name = f"speaker{i + 1}"
            face = FaceTrack(portraits[i % len(portraits)], encoded=encoded)
            pub = WhipPublisher(url, publish_token(room, name), [speech, face])
            await pub.start()
            pubs.append(pub)
            tracks.append((name, speech))
        program_s = max(t.program.duration for _, t in tracks)
        bar.update(
            completed=0,
            total=round(program_s + drain_s),
            description=f"bench call: {participants} publishers speaking (s)",
        )
        t0 = time.monotonic()
        while (left := t0 + program_s - time.monotonic()) > 0:
            await asyncio.sleep(min(0.5, left))
            bar.update(completed=round(min(program_s, time.monotonic() - t0)))
        # a publisher starved of CPU sends late: stop only once every program has really been sent
        deadline = time.monotonic() + 60.0
        while not all(t.finished for _, t in tracks) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(drain_s)
        bar.update(completed=round(program_s + drain_s))
    finally:
        for pub in pubs:
            await pub.stop()
    await asyncio.sleep(1.0)
    return [
        Spoken(name, p.name, p.text, end, lag)
        for name, t in tracks
        for p, end, lag in zip(t.program.prompts, t.voiced_end_walls(), t.send_lags(), strict=True)
    ]


async def follow(sub: Subscription, out: list[tuple[float, EmotionEvent]]) -> None:
    """(Shared with ``bench soak``.) Arrival time at the SSE subscriber of each event."""
    async for event in sub:
        out.append((time.time(), event))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--participants", type=int, default=2, metavar="N", help="publishers (default 2)")
    parser.add_argument("--pause", type=float, default=1.5, metavar="S", help="silence between prompts")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run `emostream serve` in this process (default: a child process, so the publishers "
        "running here do not share the server's event loop and GIL)",
    )
    parser.add_argument("--details", action="store_true", help="also print one JSON line per event")
    parser.add_argument(
        "--live-encode",
        action="store_true",
        help="publishers encode every audio and video frame as they send it, as a real client does on "
        "its own machine (default: Opus and VP8 encoded once at start, so the publishers sharing this "
        "machine do not take the server's CPU)",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="the Redis topology: a private redis-server, `emostream serve --redis` (API + call ingest "
        "only) and one `emostream worker` process per stage",
    )


def run(args: argparse.Namespace) -> int:
    from emostream.bench.netns import private_network
    from emostream.errors import UserError
    from emostream.testing.redis_server import redis_server

    if args.participants < 1:
        raise UserError("--participants must be at least 1", exit_code=2)
    settings = load_settings(getattr(args, "config", None))
    if args.redis and args.in_process:
        raise UserError("--redis runs the server and the stages as processes: drop --in-process", exit_code=2)
    with private_network("emo-bench"), contextlib.ExitStack() as stack, Steps("bench call") as bar:
        config = getattr(args, "config", None)
        redis = stack.enter_context(redis_server()) if args.redis else None
        result = asyncio.run(
            run_call(
                settings,
                args.participants,
                pause_s=args.pause,
                subprocess=not args.in_process,
                config=config,
                bar=bar,
                redis=redis,
                encoded=not args.live_encode,
            )
        )
    if args.details:
        for m in result.matched:
            print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in m.items()}))
    line = result.summary(args.participants) | {
        "topology": "redis" if args.redis else "embedded",
        "publishers": "live-encode" if args.live_encode else "pre-encoded",
    }
    print(json.dumps(line) if args.json else "\n".join(f"{k}: {v}" for k, v in line.items()))
    return 0
