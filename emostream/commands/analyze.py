"""`emostream analyze FILE...`: emotion events of recordings, one participant per file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from emostream import schema
from emostream.commands import settings_of
from emostream.errors import UserError

HELP = "Analyse recordings (one participant per file): print each emotion event, then a per-speaker summary."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio or video files, one speaker each")
    parser.add_argument(
        "--speaker",
        action="append",
        default=[],
        metavar="NAME",
        help="name of the next file's speaker (repeatable)",
    )
    parser.add_argument("--room", metavar="R", help="room id (default: analyze-<random>)")
    parser.add_argument(
        "--redis", metavar="URL", help="feed a Redis topology (stages run as `emostream worker`)"
    )
    parser.add_argument(
        "--json", action="store_true", help="JSON lines: one per event, then one summary line"
    )
    parser.add_argument(
        "--realtime", action="store_true", help="feed the media at its own pace (like a live call)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="longest wait for the last events (default 120)",
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if len(args.speaker) > len(args.files):
        raise UserError(f"{len(args.speaker)} --speaker names for {len(args.files)} files", exit_code=2)
    from emostream.analyze import analyze, speaker_names, summary
    from emostream.log import setup_logging
    from emostream.progress import Steps

    setup_logging("warning", settings.stage.log_format)
    files = [Path(f) for f in args.files]
    speakers = speaker_names(files, args.speaker)
    room = args.room or f"analyze-{uuid.uuid4().hex[:8]}"
    from emostream.server.rooms import room_error

    if why := room_error(room):
        raise UserError(f"--room: {why}", exit_code=2)

    def on_event(e: schema.EmotionEvent) -> None:
        if args.json:
            line = schema.to_json(e).decode()
        else:
            line = f"{e.speaker:<12} {e.start:7.2f}-{e.end:7.2f}  {e.label:<8} {e.confidence:.2f}  {e.transcript.strip()}"
        print(line, flush=True)

    def on_error(line: str) -> None:
        print(f"emostream analyze: {line}", file=sys.stderr, flush=True)

    with Steps("analyze: starting the stages (models)") as bar:

        def on_progress(phase: str, events: int, utterances: int) -> None:
            bar.update(completed=events, total=utterances or None, description=f"analyze: {phase}")

        result = asyncio.run(
            analyze(
                files,
                speakers,
                settings,
                room,
                realtime=args.realtime,
                timeout_s=args.timeout,
                on_event=on_event,
                on_error=on_error,
                on_progress=on_progress,
            )
        )
    if result.missing:
        on_error(f"{result.missing} utterance(s) got no event within {args.timeout:g} s")
    stats = summary(result.events)
    if args.json:
        print(
            json.dumps({"summary": stats, "room": room, "failed": result.failed, "missing": result.missing})
        )
    else:
        print(f"\nroom {room}: {len(result.events)} event(s)")
        for speaker, s in stats.items():
            labels = ", ".join(f"{k} {v}" for k, v in s["labels"].items())  # type: ignore[attr-defined]
            print(
                f"  {speaker:<12} {s['utterances']} utterance(s), mean confidence {s['mean_confidence']}: {labels}"
            )
    if len(result.failed) == len(files):
        return 1
    return 0
