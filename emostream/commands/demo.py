"""`emostream demo`: the product's main job on real speech, with nothing to set up.

Builds a two-speaker conversation from Debian's recorded Asterisk prompts (real studio speech,
CC-BY-SA-3.0, installed by `make`; never committed), runs it through `emostream analyze` (the same
participant ingest and stages as a live call, embedded bus), then says how to try it live.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Analyse a real two-speaker recording (Asterisk prompts) end to end, then show how to go live."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", metavar="DIR", help="where the recordings go")
    parser.add_argument("--prompts", type=int, default=4, metavar="N", help="prompts per speaker")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of the table")


def run(args: argparse.Namespace) -> int:
    from emostream.bench.prompts import two_speaker_recording
    from emostream.commands import analyze

    out = Path(args.out)
    tracks = two_speaker_recording(out, per_speaker=args.prompts)
    print(f"demo: {len(tracks)} speakers, {sum(len(t.texts) for t in tracks)} recorded prompts in {out}/")
    for t in tracks:
        print(f"  {t.speaker}: {t.path}")
    sub = argparse.ArgumentParser(prog="emostream analyze")
    analyze.add_arguments(sub)
    argv = [str(t.path) for t in tracks]
    for t in tracks:
        argv += ["--speaker", t.speaker]
    argv += ["--room", "demo"] + (["--json"] if args.json else [])
    ns = sub.parse_args(argv)
    ns.config = getattr(args, "config", None)
    rc = analyze.run(ns)
    print(
        "\nTry it live: run `emostream serve`, then open the room page link it prints "
        "(http://127.0.0.1:8765/rooms/demo?token=...) in a browser to join with camera and microphone."
    )
    return rc
