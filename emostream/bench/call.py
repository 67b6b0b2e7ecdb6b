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
from emostream.runtime.topology import build
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


@dataclass
class CallRun:
    spoken: list[Spoken]
    events: list[tuple[float, EmotionEvent]]
    utterances: list[Utterance]
    matched: list[dict[str, Any]] = field(default_factory=list)

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
) -> CallRun:
    """Run one call against ``emostream serve`` (embedded bus, every stage): in-process, or with
    ``subprocess`` a child process of its own; its events are read by an SSE subscriber
    (``emostream.client``). Call inside ``netns.private_network()``."""
    child = None
    if subprocess:
        child = await serve_proc.start_serve(SECRET, config)
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
        spoken = await _speak(f"{url}/whip/{room}", room, participants, prompts, pause_s, drain_s)
    finally:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail
        utts: list[Utterance] = []
        if child is not None:
            await child.stop()
        else:
            bus = server.state.bus
            utts = [decode(e.data, Utterance) for e in await bus.tail({"utterances": "0"}, 10_000, 10)]
            await server.close(settings.api.drain_s)
    result = CallRun(spoken, events, utts)
    result.match()
    return result


async def _speak(
    url: str, room: str, participants: int, prompts: tuple[str, ...], pause_s: float, drain_s: float
) -> list[Spoken]:
    """N publishers say their prompts (rotated, staggered starts); the prompts' last voiced samples."""
    texts = transcripts()
    loaded = [load_prompt(n, texts) for n in prompts]
    portraits = sorted(PORTRAITS.glob("*.jpg"))
    pubs, tracks = [], []
    try:
        for i in range(participants):
            order = loaded[i % len(loaded) :] + loaded[: i % len(loaded)]
            speech = SpeechTrack(Program(order, pause_s=pause_s, lead_s=1.0 + 0.37 * i))
            name = f"speaker{i + 1}"
            pub = WhipPublisher(
                url, publish_token(room, name), [speech, FaceTrack(portraits[i % len(portraits)])]
            )
            await pub.start()
            pubs.append(pub)
            tracks.append((name, speech))
        await asyncio.sleep(max(t.program.duration for _, t in tracks) + drain_s)
    finally:
        for pub in pubs:
            await pub.stop()
    await asyncio.sleep(1.0)
    return [
        Spoken(name, p.name, p.text, end)
        for name, t in tracks
        for p, end in zip(t.program.prompts, t.voiced_end_walls(), strict=True)
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


def run(args: argparse.Namespace) -> int:
    from emostream.bench.netns import private_network
    from emostream.errors import UserError

    if args.participants < 1:
        raise UserError("--participants must be at least 1", exit_code=2)
    settings = load_settings(getattr(args, "config", None))
    with private_network("emo-bench"):
        config = getattr(args, "config", None)
        result = asyncio.run(
            run_call(
                settings, args.participants, pause_s=args.pause, subprocess=not args.in_process, config=config
            )
        )
    if args.details:
        for m in result.matched:
            print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in m.items()}))
    line = result.summary(args.participants)
    print(json.dumps(line) if args.json else "\n".join(f"{k}: {v}" for k, v in line.items()))
    return 0
