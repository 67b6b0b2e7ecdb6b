"""`emostream replay`: replay MELD episodes through the live pipeline and write an evaluation report.

``replay meld`` runs a MELD split (real MELD.Raw or a ``replay synth`` folder) through the in-process
pipeline and writes events, metrics, plots and a Markdown report; ``--json`` makes the last stdout line
the metrics JSON. ``replay synth`` builds a MELD-layout folder of spoken, face-video clips from MELD text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emostream.errors import UserError

HELP = "Replay MELD episodes through the live pipeline and write an evaluation report."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="replay_command", metavar="{meld,synth}", required=True)
    meld = sub.add_parser("meld", help="replay a MELD split (MELD.Raw layout) and report weighted-F1")
    meld.add_argument("--root", required=True, type=Path, help="folder with {split}_sent_emo.csv (+ clips)")
    meld.add_argument("--split", default="dev", choices=("train", "dev", "test"))
    meld.add_argument("--dialogues", default="", help="dialogue ids and ranges, e.g. 0-9,12 (default: all)")
    meld.add_argument(
        "--text",
        default="gold",
        choices=("gold", "asr"),
        help="gold: CSV text replaces ASR; asr: transcribe the clips' audio (default gold)",
    )
    meld.add_argument(
        "--realtime", action="store_true", help="feed media at its own pace (default: as fast as possible)"
    )
    meld.add_argument(
        "--out", type=Path, default=None, help="output folder (default out/replay-<root>-<split>-<text>)"
    )
    meld.add_argument("--json", action="store_true", help="print the metrics JSON as the last stdout line")
    meld.add_argument("--jobs", type=int, default=2, help="dialogues replayed at once (default 2)")
    meld.add_argument("--no-media", action="store_true", help="ignore clips: text-only replay from the CSV")
    meld.add_argument(
        "--timelines", type=int, default=12, help="dialogues to draw timeline PNGs for (default 12)"
    )
    meld.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one utterance's event")
    meld.add_argument(
        "--fresh", action="store_true", help="discard finished dialogues in --out instead of resuming"
    )
    meld.add_argument("--quiet", action="store_true", help="no per-speaker event lines")
    synth = sub.add_parser(
        "synth", help="build a MELD-layout folder of spoken face-video clips from MELD text"
    )
    synth.add_argument("--csv", required=True, type=Path, help="MELD CSV to take rows from")
    synth.add_argument("--dialogues", type=int, default=3, help="how many dialogues (the first N ids)")
    synth.add_argument("--out", required=True, type=Path, help="folder to create (MELD.Raw layout)")
    synth.add_argument(
        "--split",
        default="",
        choices=("", "train", "dev", "test"),
        help="split name for the folder (default: from the CSV name, else dev)",
    )


def run(args: argparse.Namespace) -> int:
    if args.replay_command == "synth":
        return _synth(args)
    from emostream.replay.cli import replay_meld

    metrics = replay_meld(args)
    if args.json:
        sys.stdout.write(json.dumps(metrics) + "\n")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from emostream.evaluation.meld import read_meld
    from emostream.replay.synth import synth

    console = Console(stderr=True)
    meld = read_meld(args.csv)
    total = sum(len(meld.dialogues[d]) for d in list(meld.dialogues)[: max(1, args.dialogues)])
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("synthesizing clips", total=total)
        manifest = synth(
            args.csv, args.out, args.dialogues, split=args.split, on_clip=lambda _: bar.advance(task)
        )
    if not manifest["clips"]:
        raise UserError(f"no clips synthesized from {args.csv}")
    print(
        f"synthesized {manifest['clips']} clips ({manifest['seconds_synthesized']} s of speech) of dialogues "
        f"{', '.join(map(str, manifest['dialogues']))} (split {manifest['split']}) into {args.out}"  # type: ignore[call-overload]
    )
    return 0
