"""``replay meld`` glue: arguments -> layout, plan, resume state, progress bars, printed events, report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from emostream.config import ConfigError, load_settings
from emostream.errors import UserError
from emostream.late_fusion import driver_of
from emostream.replay.layout import count_mojibake, describe_missing, load_split, open_layout, parse_dialogues
from emostream.replay.metrics import RowResult, summarize
from emostream.replay.report import write_report
from emostream.replay.run import ReplayPlan, TextSource, default_out, run_replay
from emostream.replay.state import RunState, write_descriptions, write_transcripts


def _event_line(r: RowResult) -> str:
    ev = r.event or {}
    label = r.pred or "-"
    mark = "ok" if r.pred == r.true else "  "
    conf = f"{ev.get('confidence', 0.0):.2f}" if ev else "    "
    mods = ("+".join(ev.get("modalities") or []) or "none") + (f" by {driver_of(ev)}" if ev else "")
    said = (ev.get("transcript") or r.text)[:60]
    return (
        f"dia{r.dialogue:<4} {r.speaker[:12]:<12} #{r.index:<3} {label:<8} {conf} {mark} true {r.true:<8} "
        f"[{mods}] {said}"
    )


def _throughput(out: Path, wall: float, replayed: int, resumed: int) -> dict[str, Any]:
    """Throughput figures of this run; a rerun that replayed nothing keeps those of the run that did."""
    figures: dict[str, Any] = {"replayed_now": replayed, "resumed": resumed}
    if replayed and wall > 0:
        figures |= {"wall_s": round(wall, 2), "utterances_per_s": round(replayed / wall, 2)}
        if resumed:
            figures["throughput_note"] = (
                f"throughput of the {replayed} utterances replayed now ({resumed} resumed)"
            )
        return figures
    try:
        before = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        before = {}
    kept = {k: before[k] for k in ("wall_s", "utterances_per_s") if before.get("utterances_per_s")}
    note = "already complete: nothing replayed by this run"
    if kept:
        note += "; throughput from the run that replayed it"
    return figures | kept | {"throughput_note": note}


def replay_meld(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``replay meld`` and return its metrics (the command prints them with --json)."""
    err = Console(stderr=True, highlight=False)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    from emostream.log import setup_logging

    setup_logging("warning")
    layout = open_layout(args.root, args.split)
    split = load_split(layout)
    wanted = parse_dialogues(args.dialogues) if args.dialogues else None
    dialogues = {d: rows for d, rows in split.dialogues.items() if wanted is None or d in wanted}
    notes: list[str] = []
    if wanted is not None and (absent := sorted(wanted - set(split.dialogues))):
        msg = f"dialogues not in {layout.csv.name}: {', '.join(map(str, absent[:10]))}"
        err.print(f"[yellow]warning:[/] {msg}")
        notes.append(msg)
    if not dialogues:
        raise UserError(f"no dialogues to replay from {layout.csv} (check --dialogues)")
    for reason, count in sorted(split.skipped.items()):
        msg = f"{layout.csv.name}: skipped {count} row(s): {reason.replace('_', ' ')}"
        err.print(f"[yellow]warning:[/] {msg}")
        notes.append(msg)
    repaired = count_mojibake(layout.csv)
    if repaired:
        msg = f"{layout.csv.name}: repaired mis-decoded characters (e.g. â€™ -> ') in {repaired} row(s)"
        err.print(msg, markup=False, highlight=False)
        notes.append(msg)
    rows = [r for d in dialogues.values() for r in d]
    media = bool(layout.clips) and not args.no_media
    if not media:
        why = "--no-media" if args.no_media else f"no clips found for split {args.split} under {layout.root}"
        mode_note = f"text-only replay ({why}): CSV text, no audio or video"
        if args.text == "asr":
            mode_note += "; --text asr needs clips, so the CSV (gold) text was used instead of ASR"
        err.print(f"[bold yellow]warning:[/] {mode_note}" if args.text == "asr" else f"[bold]{mode_note}[/]")
    else:
        mode_note = f"clips from {layout.clip_dir}, text {args.text}"
        missing = layout.missing(rows)
        if missing:
            msg = describe_missing(missing, len(rows)) + " (those rows replay text-only from the CSV)"
            err.print(f"[yellow]warning:[/] {msg}")
            notes.append(msg)
    text: TextSource = "asr" if media and args.text == "asr" else "gold"
    out = args.out or default_out(layout.root, args.split, text)
    params = {"csv": str(layout.csv.resolve()), "split": args.split, "text": text, "media": media}
    state = RunState(out, params, fresh=args.fresh)
    order = list(dialogues)
    done = state.done() & set(order)
    if done:
        err.print(f"resuming: {len(done)} of {len(order)} dialogues already finished in {out}")
    todo = [d for d in order if d not in done]
    plan = ReplayPlan(
        layout=layout,
        dialogues=dialogues,
        text=text,
        realtime=args.realtime,
        jobs=args.jobs,
        timeout_s=args.timeout,
        media=media,
        notes=notes,
    )

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        redirect_stdout=False,  # event lines piped to a file stay on stdout (say() puts them above the bars)
    )
    tasks: dict[str, TaskID] = {}
    overall = progress.add_task("dialogues", total=len(todo))

    def on_progress(name: str, doneness: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(f"  {name}", total=total)
        progress.update(tasks[name], completed=doneness)

    def on_finished(dialogue: int, results: list[RowResult]) -> None:
        progress.advance(overall)
        task = tasks.pop(f"dia{dialogue}", None)
        if task is not None:
            progress.remove_task(task)
        if not args.quiet:
            for r in results:
                say(_event_line(r))

    def on_warn(message: str) -> None:
        progress.console.print(f"[yellow]warning:[/] {message}")

    def say(line: str) -> None:
        """Event lines go to stdout (above the live bars when stdout is the terminal); with ``--json``
        stdout holds the JSON alone, so they go to stderr."""
        stream = sys.stderr if args.json else sys.stdout
        if stream.isatty():
            progress.console.print(line, markup=False, soft_wrap=True, highlight=False)
        else:
            print(line, file=stream, flush=True)

    with progress:
        if not args.quiet:
            say("dialog speaker      row pred     conf    true          [modalities] transcript")
        wall = run_replay(plan, settings, state, todo, on_progress, on_warn, on_finished)
    results = state.load(order)
    replayed = sum(len(dialogues[d]) for d in todo)
    extra: dict[str, Any] = {
        "split": args.split,
        "text": text,
        "media": media,
        "mode_note": mode_note,
        **_throughput(out, wall, replayed, sum(len(dialogues[d]) for d in done)),
        "notes": notes,
        "out": str(out),
    }
    metrics = summarize(results, extra)
    features = state.merge_features(order)
    metrics["features"] = str(features)
    if media:
        metrics["descriptions"] = write_descriptions(features, out / "descriptions.jsonl")
    if media and text == "asr":
        metrics["transcripts"] = write_transcripts(features, out / "transcripts.jsonl")
    report = write_report(results, metrics, out, timelines=args.timelines)
    stream = sys.stderr if args.json else sys.stdout
    speed = (
        f"{metrics['utterances_per_s']:.2f} utt/s"
        if metrics.get("utterances_per_s")
        else "already complete, nothing replayed now"
    )
    print(
        f"weighted-F1 {metrics['weighted_f1']:.2f}  accuracy {metrics['accuracy']:.2f}  "
        f"{metrics['utterances']} utterances  {speed}",
        file=stream,
    )
    print(f"report: {report}", file=stream)
    return metrics
