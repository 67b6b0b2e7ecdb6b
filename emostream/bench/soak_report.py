"""The soak's account: every utterance spoken -> exactly one event, or a stated reason, or a silent
loss; per fault, per minute and per process; written as JSON, a per-utterance JSONL and a PNG.

An event belongs to the spoken prompt of its speaker whose last voiced sample, at its slot on the
sender's timeline (which the server's pts-following clock keeps to through lost media), lies in the
event's span (``bench call``'s rule), else the prompt its transcript reads as, shortly before (a server
clock anchored late). Latency runs from the moment that sample actually left the publisher to the
event's arrival at the subscriber. A prompt without an event is *stated* when the pipeline said why: a
``Dropped`` record for the utterance the segmenter published over it (the dead letter's reason).
Anything else is a silent loss: no utterance was published for it, or one was and nothing came back.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

from emostream.bench.call import Spoken, pct, words
from emostream.bench.call_media import PTIME
from emostream.bench.soak import SoakRun
from emostream.evaluation.scores import edit_distance
from emostream.schema import EmotionEvent

SLACK_S = 0.3
DRIFT_S = 20.0


def _by_text(ev: EmotionEvent, free: list[Spoken]) -> Spoken | None:
    """The not yet matched prompt an event is about when its span misses every voiced end (a server
    clock anchored late, or a bench process too starved to keep its slots: up to ``DRIFT_S``). Among
    prompts ending in that window, the one its transcript reads as (word error rate under 0.5),
    nearest first."""
    hyp = words(ev.transcript)
    best: tuple[float, float, Spoken] | None = None
    for s in free:
        if not ev.start - SLACK_S <= s.voiced_end <= ev.end + DRIFT_S:
            continue
        ref = words(s.text)
        wer = edit_distance(ref, hyp) / max(1, len(ref))
        key = (wer, abs(s.voiced_end - ev.end), s)
        if wer < 0.5 and (best is None or key[:2] < best[:2]):
            best = key
    return best[2] if best else None


def _covers(start: float, end: float, t: float) -> bool:
    return start - SLACK_S <= t <= end + SLACK_S


def account(run: SoakRun) -> tuple[list[dict[str, Any]], int, int]:
    """Per spoken prompt: its status and latency; plus repeated deliveries and unmatched events."""
    first: dict[str, tuple[float, EmotionEvent]] = {}
    for arrived, ev in run.events:
        first.setdefault(ev.id, (arrived, ev))
    repeats = len(run.events) - len(first)
    by_speaker: dict[str, list[Spoken]] = {}
    for s in run.spoken:
        by_speaker.setdefault(s.speaker, []).append(s)
    got: dict[int, list[tuple[float, EmotionEvent]]] = {}
    late: list[tuple[float, EmotionEvent]] = []
    for arrived, ev in first.values():
        cands = [s for s in by_speaker.get(ev.speaker, []) if _covers(ev.start, ev.end, s.voiced_end)]
        if not cands:
            late.append((arrived, ev))
            continue
        s = min(cands, key=lambda c: abs(c.voiced_end - ev.end))
        got.setdefault(id(s), []).append((arrived, ev))
    unmatched, by_text = 0, set()
    for arrived, ev in late:  # media clock behind wall time: packets lost before the server
        hit = _by_text(ev, [c for c in by_speaker.get(ev.speaker, []) if id(c) not in got])
        if hit is None:
            unmatched += 1
        else:
            got[id(hit)] = [(arrived, ev)]
            by_text.add(id(hit))
    dropped = {(d.speaker, d.utterance): d for d in run.dropped if d.room}
    rows = []
    for s in sorted(run.spoken, key=lambda x: x.sent):
        evs = sorted(got.get(id(s), []), key=lambda x: x[0])
        row: dict[str, Any] = {
            "speaker": s.speaker,
            "prompt": s.prompt,
            "t": round(s.sent - run.started, 2),
            "events": [e.id for _, e in evs],
        }
        if evs and id(s) in by_text:  # its wall time is unknown (media lost): no latency
            row["status"] = "event"
            row["matched"] = "by transcript"
        elif evs:
            row["status"] = "event"
            row["latency_ms"] = round((evs[0][0] - s.sent) * 1000, 1)
        else:
            utts = [
                u for u in run.utterances if u.speaker == s.speaker and _covers(u.start, u.end, s.voiced_end)
            ]
            reasons = [
                dropped[(u.speaker, u.utterance)].reason for u in utts if (u.speaker, u.utterance) in dropped
            ]
            transit = "" if utts else _transit(run, s)
            if reasons:
                row["status"] = "stated"
                row["reason"] = reasons[0]
            elif transit:
                row["status"] = "transit"
                row["reason"] = transit
            else:
                row["status"] = "silent"
                row["reason"] = "utterance published, no event" if utts else "no utterance published"
        rows.append(row)
    return rows, repeats, unmatched


def _transit(run: SoakRun, s: Spoken) -> str:
    """Why the server never heard a prompt, when the transport says so: the server's RTCP receiver
    reports counted audio packets of that speaker lost around it, or its call died (ICE consent
    expired) soon after it, so what was sent in between never arrived."""
    lo, hi = s.sent - 6.0, s.sent + 2.0
    rtp = [(t, lost) for t, kind, _, lost in run.rtp.get(s.speaker, []) if kind == "audio"]
    for (t0, l0), (t1, l1) in zip(rtp, rtp[1:], strict=False):
        if t1 >= lo and t0 <= hi and l1 > l0:
            return f"audio lost before the server (RTCP receiver report: +{l1 - l0} packets)"
    for t, what in run.calls.get(s.speaker, []):
        at = run.started + t
        if "unplanned" in what and s.sent - 6.0 <= at <= s.sent + 36.0:
            return "call lost (ICE consent expired): media sent before it never arrived"
    return ""


def _window(rows: list[dict[str, Any]], lo: float, hi: float) -> dict[str, Any]:
    mine = [r for r in rows if lo <= r["t"] < hi]
    stated = Counter(r["reason"] for r in mine if r["status"] in ("stated", "transit"))
    silent = Counter(r["reason"] for r in mine if r["status"] == "silent")
    return {
        "spoken": len(mine),
        "events": sum(len(r["events"]) for r in mine),
        "duplicates": sum(max(0, len(r["events"]) - 1) for r in mine),
        "lost": {"stated": dict(stated), "silent": dict(silent)},
    }


def per_fault(rows: list[dict[str, Any]], run: SoakRun) -> list[dict[str, Any]]:
    """Each fault with the utterances spoken before it (since the previous fault) and what became of
    them, and the p95 latency of the utterances in the minute after it."""
    out, lo = [], float("-inf")
    for f in run.faults:
        at = f.started - run.started
        after = [r["latency_ms"] for r in rows if at <= r["t"] < at + 60 and "latency_ms" in r]
        out.append(
            {
                "fault": f.kind,
                "target": f.target,
                "at_s": round(at, 1),
                "took_s": round(f.ended - f.started, 1),
                "before": _window(rows, lo, at),
                "p95_ms_next_60s": pct(after, 95),
            }
        )
        lo = at
    out.append({"fault": "none (after the last fault)", "before": _window(rows, lo, float("inf"))})
    return out


def per_minute(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    minutes: dict[int, list[float]] = {}
    for r in rows:
        if "latency_ms" in r:
            minutes.setdefault(int(r["t"] // 60), []).append(r["latency_ms"])
    return [
        {"minute": m, "n": len(v), "p50_ms": pct(v, 50), "p95_ms": pct(v, 95)}
        for m, v in sorted(minutes.items())
    ]


def rss(run: SoakRun) -> dict[str, dict[str, Any]]:
    """Per process: RSS after warm-up and at the end, and the growth; a restarted process is measured
    from warm-up after its (last) restart when the run lasted that long, else over the life before it
    (``measured`` says which)."""
    out = {}
    names = sorted({n for _, n, _ in run.rss})
    first = run.started + run.warmup_s
    for name in names:
        series = [(t, mb) for t, n, mb in run.rss if n == name]
        restarted = run.restarted_at.get(name)
        row: dict[str, Any] = {"start_mb": None, "end_mb": round(series[-1][1], 1), "growth_pct": None}
        lives = [("whole run", [(t, mb) for t, mb in series if t >= first])]
        if restarted is not None:
            row["restarted_at_s"] = round(restarted - run.started, 1)
            after = [(t, mb) for t, mb in series if t >= max(first, restarted + run.warmup_s)]
            before = [(t, mb) for t, mb in series if first <= t < restarted]
            lives = [("after its restart", after), ("before its restart", before)]
        for how, life in lives:
            if len(life) >= 2:
                (_, base), (_, end) = life[0], life[-1]
                row.update(start_mb=round(base, 1), end_mb=round(end, 1), measured=how)
                row["growth_pct"] = round((end - base) / base * 100, 1)
                break
        out[name] = row
    return out


def video_frames(metrics: str) -> dict[str, float]:
    """The server's video-frame counters: received, dropped by reason, frame-buffer outcomes."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(metrics):
        for s in fam.samples:
            if not s.name.endswith("_total"):
                continue
            if s.name == "emostream_call_frames_total" and s.labels.get("kind") == "video":
                out["received"] = s.value
            elif s.name == "emostream_call_dropped_total" and s.labels.get("kind") == "video":
                out[f"dropped_{s.labels.get('reason')}"] = s.value
            elif s.name == "emostream_call_dropped_total":
                out[f"audio_dropped_{s.labels.get('reason')}"] = s.value
            elif s.name == "emostream_ingest_frames_total":
                out[f"buffer_{s.labels.get('outcome')}"] = s.value
    out["dropped"] = sum(v for k, v in out.items() if k.startswith("dropped_"))
    return out


def summarize(run: SoakRun, rows: list[dict[str, Any]], repeats: int, unmatched: int) -> dict[str, Any]:
    lat = [r["latency_ms"] for r in rows if "latency_ms" in r]
    events = sum(len(r["events"]) for r in rows) + unmatched
    return {
        "bench": "soak",
        "participants": run.participants,
        "minutes": round(run.talk_s / 60, 2),
        "load": run.load,
        "spoken": len(rows),
        "events": events,
        "events_per_s": round(events / run.talk_s, 3),
        "with_event": sum(1 for r in rows if r["status"] == "event"),
        "stated_losses": sum(1 for r in rows if r["status"] == "stated"),
        "lost_in_transit": sum(1 for r in rows if r["status"] == "transit"),
        "silent_losses": sum(1 for r in rows if r["status"] == "silent"),
        "duplicates": repeats + sum(max(0, len(r["events"]) - 1) for r in rows),
        "unmatched_events": unmatched,
        "speech_end_to_event_p50_ms": pct(lat, 50),
        "speech_end_to_event_p95_ms": pct(lat, 95),
        "per_minute": per_minute(rows),
        "faults": per_fault(rows, run),
        "rss_mb": rss(run),
        "video_frames": video_frames(run.serve_metrics),
        "dead_letters": run.dead_letters,
        "dropped_records": dict(Counter(d.reason for d in run.dropped)),
        "subscriber_reconnects": run.reconnects,
        "unexpected_exits": run.crashes,
        "calls_lost_unplanned": sum(1 for log in run.calls.values() for _, w in log if "unplanned" in w),
        "calls": run.calls,
        "bench_errors": run.bench_errors[:20],
        "bench_loop_lag_ms": {
            "p50": pct(run.loop_lag_ms, 50),
            "p99": pct(run.loop_lag_ms, 99),
            "max": pct(run.loop_lag_ms, 100),
        },
        "face_fps": run.fps,
        "audio_send_pace": audio_pace(run),
    }


def audio_pace(run: SoakRun) -> dict[str, float | None]:
    """Per participant, seconds of audio sent per wall second while connected (RTP packets x 20 ms;
    1.0 = real time). Below 1 the bench's own process could not make its participants' media in real
    time: they spoke less than planned, and later, which the latencies (from the moment each last
    voiced frame actually left) include."""
    out: dict[str, float | None] = {}
    for name, rows in run.rtp.items():
        audio = [(t, n) for t, kind, n, _ in rows if kind == "audio"]
        sent = secs = 0.0
        for (t0, n0), (t1, n1) in itertools.pairwise(audio):
            if n1 >= n0 and t1 - t0 < 30:  # a new session restarts the counter
                sent, secs = sent + (n1 - n0) * PTIME, secs + (t1 - t0)
        out[name] = round(sent / secs, 3) if secs else None
    return out


def plot(run: SoakRun, rows: list[dict[str, Any]], path: Path) -> None:
    """Latency per utterance and RSS per process over the run, the faults as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    ok = [r for r in rows if "latency_ms" in r]
    top.scatter([r["t"] / 60 for r in ok], [r["latency_ms"] / 1000 for r in ok], s=6, alpha=0.6)
    bad = [r for r in rows if r["status"] != "event"]
    if bad:
        top.scatter([r["t"] / 60 for r in bad], [0] * len(bad), marker="x", color="red", label="no event")
        top.legend(loc="upper left")
    top.set_ylabel("speech end -> event (s)")
    top.set_title(f"soak: {run.participants} participants, {run.talk_s / 60:.1f} min, load {run.load}")
    for name in sorted({n for _, n, _ in run.rss}):
        series = [(t, mb) for t, n, mb in run.rss if n == name]
        bottom.plot([(t - run.started) / 60 for t, _ in series], [mb for _, mb in series], label=name)
    bottom.set_ylabel("RSS (MiB)")
    bottom.set_xlabel("minutes since talk started")
    bottom.legend(fontsize=7, ncol=4, loc="upper left")
    for f in run.faults:
        x = (f.started - run.started) / 60
        for ax in (top, bottom):
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
        top.text(
            x,
            1.0,
            f" {f.kind} {f.target}",
            rotation=90,
            va="top",
            fontsize=7,
            transform=top.get_xaxis_transform(),
        )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(run: SoakRun, out: Path) -> dict[str, Any]:
    """soak.json, utterances.jsonl and soak.png in ``out``; the summary (also the JSON line)."""
    rows, repeats, unmatched = account(run)
    summary = summarize(run, rows, repeats, unmatched)
    summary["report"] = {"json": str(out / "soak.json"), "png": str(out / "soak.png")}
    (out / "soak.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "serve_metrics.txt").write_text(run.serve_metrics)
    (out / "utterances.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot(run, rows, out / "soak.png")
    return summary
