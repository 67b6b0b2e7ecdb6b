"""Replay outputs people read: events JSONL, metrics JSON, confusion-matrix and timeline PNGs, Markdown.

Plots use matplotlib's Agg backend (no display). Timelines are drawn for the first ``timelines``
dialogues only (a full split has hundreds; each PNG costs ~0.1 s).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emostream.evaluation.plots import plot_confusion, pyplot
from emostream.replay.metrics import RowResult
from emostream.schema import EMOTIONS

COLOURS = {
    "neutral": "#9e9e9e",
    "surprise": "#ff9800",
    "fear": "#7b1fa2",
    "sadness": "#1565c0",
    "joy": "#fbc02d",
    "disgust": "#2e7d32",
    "anger": "#c62828",
}


def write_events(rows: list[RowResult], path: Path) -> int:
    """One JSON line per answered row: the EmotionEvent plus the MELD row it answers."""
    n = 0
    with path.open("w") as fh:
        for r in rows:
            if r.event is None:
                continue
            record = {
                **r.event,
                "meld": {"dialogue": r.dialogue, "utterance_id": r.index, "true": r.true, "text": r.text},
            }
            fh.write(json.dumps(record) + "\n")
            n += 1
    return n


def plot_timeline(dialogue: int, rows: list[RowResult], path: Path) -> None:
    """One lane per speaker: true emotion (square) and prediction (dot) per utterance, in speaking order."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    speakers = list(dict.fromkeys(r.speaker for r in rows))
    fig, axes = plt.subplots(
        len(speakers), 1, figsize=(max(6.0, 0.45 * len(rows) + 2), 1.5 * len(speakers) + 0.8), sharex=True
    )
    axes = np.atleast_1d(axes)
    for ax, speaker in zip(axes, speakers, strict=True):
        mine = [(i, r) for i, r in enumerate(rows) if r.speaker == speaker]
        xs = [i for i, _ in mine]
        ax.scatter(
            xs,
            [EMOTIONS.index(r.true) for _, r in mine],
            marker="s",
            s=90,
            facecolors="none",
            edgecolors=[COLOURS[r.true] for _, r in mine],
            linewidths=2,
            label="true",
        )
        answered = [(i, r) for i, r in mine if r.pred in EMOTIONS]
        ax.scatter(
            [i for i, _ in answered],
            [EMOTIONS.index(str(r.pred)) for _, r in answered],
            marker="o",
            s=30,
            c=[COLOURS[str(r.pred)] for _, r in answered],
            label="predicted",
        )
        ax.set_yticks(range(len(EMOTIONS)), EMOTIONS, fontsize=7)
        ax.set_ylim(-0.5, len(EMOTIONS) - 0.5)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # The speaker's name heads the lane, clear of the class labels on the y axis.
        ax.set_title(speaker, loc="left", fontsize=9, fontweight="bold", pad=2)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"dialogue {dialogue}: true (square) vs predicted (dot)", fontsize=10)
    axes[0].legend(loc="upper right", fontsize=7, ncols=2, bbox_to_anchor=(1.0, 1.35), frameon=False)
    axes[-1].set_xlabel("utterance (speaking order)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


STAGE_ORDER = ("ingest", "segmenter", "asr", "context", "fec", "vlm", "fusion")
"""Latency rows in pipeline order (text branch, then visual branch, then fusion); ``total`` comes last."""

SOURCES = {
    "clip": "from clips",
    "csv": "text-only from the CSV (no clip)",
    "fallback": "text-only fallback (clip unusable, CSV text used)",
}


def counted(counts: dict[str, int], names: dict[str, str] | None = None) -> str:
    """``{'text': 20, 'text+visual': 4}`` -> ``20 text, 4 text+visual`` (largest first, readable names)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    label = names or {}
    return ", ".join(f"{v} {label.get(k, k.replace('_', ' ') or 'unknown')}" for k, v in items) or "none"


def stage_order(stages: list[str]) -> list[str]:
    """Pipeline order for known stages, then any others alphabetically, ``total`` last."""
    known = [s for s in STAGE_ORDER if s in stages]
    rest = sorted(s for s in stages if s not in STAGE_ORDER and s != "total")
    return known + rest + (["total"] if "total" in stages else [])


def _class_lines(metrics: dict[str, Any]) -> list[str]:
    """Per-class table; a class with no samples and no predictions reads n/a (it has no F1 to speak of)."""
    true, predicted = metrics["counts"]["true"], metrics["counts"]["predicted"]
    lines = ["", "| class | F1 | true | predicted |", "|---|---:|---:|---:|"]
    for e in EMOTIONS:
        f1 = "n/a" if not true[e] and not predicted[e] else f"{metrics['per_class_f1'][e]:.2f}"
        lines.append(f"| {e} | {f1} | {true[e]} | {predicted[e]} |")
    present = [e for e in EMOTIONS if true[e]]
    absent = [e for e in EMOTIONS if not true[e] and not predicted[e]]
    spurious = [e for e in EMOTIONS if not true[e] and predicted[e]]
    why = (
        "weighted-F1 is the mean of the per-class F1 weighted by each class's true count, over "
        + ", ".join(f"{e} ({true[e]})" for e in present)
    )
    if spurious:
        why += f"; {', '.join(spurious)} never occur but were predicted (F1 0 with weight 0)"
    if absent:
        why += f"; {', '.join(absent)} neither occur nor were predicted (n/a)"
    return lines + ["", why + "."]


def _loop_lines(metrics: dict[str, Any]) -> list[str]:
    loops = metrics.get("asr_loops") or []
    if not loops:
        return []
    first = loops[0]
    return [
        f"- **ASR loop**: {len(loops)} transcript(s) repeat a phrase the CSV text does not (a decoding "
        f'loop), e.g. dia{first["dialogue"]} #{first["utterance_id"]} "{first["transcript"]}" '
        f'("{first["ngram"]}" x{first["repeats"]}); their word errors and labels are suspect'
    ]


def markdown(metrics: dict[str, Any], images: list[str]) -> str:
    """The short report: headline numbers, per-class table, latency, modality use, replay notes."""
    lines = [
        f"# MELD replay: {metrics.get('split', '?')} split, text = {metrics.get('text', '?')}",
        "",
        f"- utterances: {metrics['utterances']} in {metrics['dialogues']} dialogues "
        f"(answered {metrics['answered']})",
        f"- **weighted-F1 {metrics['weighted_f1']:.2f}**, accuracy {metrics['accuracy']:.2f}",
    ]
    if metrics.get("utterances_per_s"):
        lines.append(
            f"- throughput: {metrics['utterances_per_s']:.2f} utterances/s "
            f"({metrics.get('wall_s', 0):.1f} s wall)"
        )
    if metrics.get("throughput_note"):
        lines.append(f"- {metrics['throughput_note']}")
    if metrics.get("asr_wer") is not None:
        lines.append(f"- ASR word error rate vs the CSV text: {metrics['asr_wer']:.2f}%")
    lines += _loop_lines(metrics)
    if metrics.get("mode_note"):
        lines.append(f"- {metrics['mode_note']}")
    fallback = metrics.get("sources", {}).get("fallback", 0)
    if fallback:
        lines.append(
            f"- text-only fallback: {fallback} row(s) had an unusable clip and were replayed from the CSV "
            "text (no audio or video for them)"
        )
    lines += _class_lines(metrics)
    if metrics["latency_ms"]:
        lat = metrics["latency_ms"]
        lines += ["", "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
        lines += [f"| {s} | {lat[s]['p50']:.1f} | {lat[s]['p95']:.1f} |" for s in stage_order(list(lat))]
        lines += [
            "",
            "Latencies are milliseconds from the end of the utterance's speech to each stage's output.",
        ]
    if metrics.get("per_speaker"):
        lines += ["", "| speaker | utterances | accuracy |", "|---|---:|---:|"]
        lines += [
            f"| {k} | {v['utterances']} | {v['accuracy']:.2f} |" for k, v in metrics["per_speaker"].items()
        ]
    lines += [
        "",
        f"- modalities per event: {counted(metrics['modalities'])}",
        f"- visual branch per event: {counted(metrics['visual_status'])}",
        *face_lines(metrics.get("face")),
        f"- rows replayed: {counted(metrics['sources'], SOURCES)}",
    ]
    for note in metrics.get("notes", []):
        lines.append(f"- {note}")
    lines.append("")
    lines += [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def face_lines(face: dict[str, Any] | None) -> list[str]:
    """The face's effect in the report: decisions changed and text-only scores on the same rows."""
    if not face:
        return []
    return [
        f"- decisions the face changed: {face['decisions_changed']} "
        f"({face['changed_to_right']} to right, {face['changed_from_right']} from right); text alone: "
        f"weighted-F1 {face['text_only_weighted_f1']:.2f}, accuracy {face['text_only_accuracy']:.2f}",
        f"- decided by: {counted(face['drivers'])}",
    ]


def write_report(rows: list[RowResult], metrics: dict[str, Any], out: Path, timelines: int = 12) -> Path:
    """Write events.jsonl, metrics.json, confusion.png, timelines/*.png and report.md; return the report."""
    write_events(rows, out / "events.jsonl")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    images = ["confusion.png"]
    title = f"weighted-F1 {metrics['weighted_f1']:.2f}  acc {metrics['accuracy']:.2f}"
    plot_confusion(metrics["confusion"]["matrix"], out / "confusion.png", title)
    by_dialogue: dict[int, list[RowResult]] = {}
    for r in rows:
        by_dialogue.setdefault(r.dialogue, []).append(r)
    (out / "timelines").mkdir(exist_ok=True)
    for d in list(by_dialogue)[: max(0, timelines)]:
        name = f"timelines/dia{d}.png"
        plot_timeline(d, by_dialogue[d], out / name)
        images.append(name)
    report = out / "report.md"
    report.write_text(markdown(metrics, images))
    return report
