"""report.md reads as prose: n/a for absent classes, the fallback note, the ASR-loop flag, `total` last."""

from __future__ import annotations

import re
from pathlib import Path

from emostream.replay.metrics import RowResult, repeated_ngram, summarize
from emostream.replay.report import write_report


def _row(i: int, true: str, pred: str, source: str, transcript: str, text: str = "") -> RowResult:
    event = {
        "label": pred,
        "transcript": transcript,
        "modalities": ["text"] if source != "clip" else ["text", "visual"],
        "visual_status": "disabled" if source != "clip" else "used",
        # dict order deliberately alphabetical, as a JSON round trip may leave it
        "latency_ms": {
            "asr": 40.0 + i,
            "context": 60.0,
            "fec": 20.0,
            "fusion": 70.0,
            "total": 71.0,
            "vlm": 30.0,
        },
    }
    return RowResult(
        dialogue=i // 3,
        index=i % 3,
        speaker=("Ross", "Rachel")[i % 2],
        text=text or transcript,
        true=true,
        pred=pred,
        source=source,
        event=event,
    )


def _rows() -> list[RowResult]:
    return [
        _row(0, "neutral", "neutral", "clip", "How are you?"),
        _row(1, "joy", "joy", "clip", "Well... Well... Well... Well...", text="Well, look who's here!"),
        _row(2, "joy", "neutral", "fallback", "Oh my God."),
        _row(3, "anger", "anger", "clip", "Get out."),
        _row(4, "neutral", "surprise", "csv", "Really?"),
    ]


def test_report_wording(tmp_path: Path) -> None:
    rows = _rows()
    metrics = summarize(rows, {"split": "dev", "text": "asr", "utterances_per_s": 2.5, "wall_s": 2.0})
    report = write_report(rows, metrics, tmp_path, timelines=2).read_text()

    # classes with neither samples nor predictions read n/a and stay out of the mean's explanation
    for absent in ("fear", "sadness", "disgust"):
        assert re.search(rf"^\| {absent} \| n/a \| 0 \| 0 \|$", report, re.M), absent
    assert re.search(r"^\| joy \| \d+\.\d\d \| 2 \| 1 \|$", report, re.M)
    why = next(line for line in report.splitlines() if line.startswith("weighted-F1 is the mean"))
    mean_over = why.split(";")[0]
    assert "neutral (2)" in mean_over and "joy (2)" in mean_over and "anger (1)" in mean_over
    assert "fear" not in mean_over and "sadness" not in mean_over
    assert "surprise" in why and "predicted" in why  # predicted but never true: said, not n/a
    assert re.search(r"^\| surprise \| 0\.00 \| 0 \| 1 \|$", report, re.M)

    # the text-only fallback row is explained
    assert "text-only fallback: 1 row(s) had an unusable clip" in report
    assert "1 text-only fallback" in report

    # the ASR loop is flagged with the offending phrase; the gold text did not loop
    assert "**ASR loop**: 1 transcript(s)" in report and '("well" x4)' in report

    # latency in pipeline order, total last
    stages = re.findall(r"^\| (\w+) \| [\d.]+ \| [\d.]+ \|$", report, re.M)
    stages = [s for s in stages if s in {"asr", "context", "fec", "vlm", "fusion", "total"}]
    assert stages == ["asr", "context", "fec", "vlm", "fusion", "total"]

    # no Python reprs anywhere
    assert not re.search(r"[{}]|\[\]|'\w+':", report), report
    assert "modalities per event: 3 text+visual, 2 text" in report
    assert "visual branch per event: 3 used, 2 disabled" in report
    assert "throughput: 2.50 utterances/s" in report
    for name in ("confusion.png", "timelines/dia0.png", "timelines/dia1.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_rerun_without_work_keeps_no_fake_throughput(tmp_path: Path) -> None:
    rows = _rows()
    metrics = summarize(rows, {"split": "dev", "text": "gold", "throughput_note": "already complete"})
    report = write_report(rows, metrics, tmp_path, timelines=0).read_text()
    assert "utterances/s" not in report and "already complete" in report


def test_repeated_ngram_tells_loops_from_speech() -> None:
    assert repeated_ngram("Well... Well... Well... Well...") == ("well", 4)
    assert repeated_ngram("you know what you know what you know what") == ("you know what", 3)
    assert repeated_ngram("No, no, no, I said it.") is None  # a word three times is speech
    assert repeated_ngram("I know, I know.") is None
    assert repeated_ngram("") is None
