"""Bad input gives clear one-line messages and the run continues; CSV-only roots run text-only; resume."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emostream.cli import main

# Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime
MOJIBAKE = ["90", "Itâ€™s fine, Iâ€™m okayâ€¦", "Joey", "joy", "positive", "2", "6", "6", "4", "", ""]
UNKNOWN = ["91", "Whatever.", "Estelle", "confused", "neutral", "2", "7", "6", "4", "", ""]


def test_csv_only_root_replays_text_only_like_eval_meld(
    tmp_path: Path, make_csv: Callable[..., Path], replay: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = make_csv(tmp_path / "root" / "dev_sent_emo.csv", (0, 1, 2, 3, 4))
    metrics, err = replay("--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"))
    assert "text-only replay (no clips found for split dev" in err
    assert metrics["media"] is False and metrics["sources"] == {"csv": 42}
    assert metrics["utterances"] == metrics["answered"] == 42
    assert metrics["modalities"] == {"text": 42}
    # the live path (bus, context worker, fusion) scores exactly what `emostream eval meld` scores
    assert main(["eval", "meld", "--csv", str(csv), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["utterances"] == 42
    assert metrics["weighted_f1"] == evaluated["weighted_f1"]
    assert metrics["per_class_f1"] == evaluated["per_class_f1"]


def test_json_stdout_holds_the_json_alone_and_event_lines_go_to_stderr(
    tmp_path: Path, make_csv: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    make_csv(tmp_path / "root" / "dev_sent_emo.csv", (0, 1))
    args = ["replay", "meld", "--root", str(tmp_path / "root"), "--out", str(tmp_path / "out"), "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    metrics = json.loads(captured.out)  # the whole of stdout, not its last line
    assert metrics["utterances"] == metrics["answered"] > 0
    assert "dialog speaker" in captured.err
    events = [line for line in captured.err.splitlines() if re.match(r"dia\d", line)]
    assert len(events) == metrics["utterances"]


def test_asr_without_clips_says_so_and_a_finished_rerun_keeps_its_figures(
    tmp_path: Path, make_csv: Callable[..., Path], replay: Any
) -> None:
    make_csv(tmp_path / "root" / "dev_sent_emo.csv", (0, 3))
    args = ("--root", str(tmp_path / "root"), "--text", "asr", "--out", str(tmp_path / "out"))
    first, err = replay(*args)
    assert "--text asr needs clips" in err and first["text"] == "gold"
    report = (tmp_path / "out" / "report.md").read_text()
    assert "--text asr needs clips, so the CSV (gold) text was used" in report
    assert first["utterances_per_s"] > 0
    again, err = replay(*args)
    assert again["replayed_now"] == 0 and again["resumed"] == first["utterances"]
    assert again["utterances_per_s"] == first["utterances_per_s"] and again["wall_s"] == first["wall_s"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "0.00 utterances/s" not in report and "already complete" in report


def test_bad_clips_and_csv_rows_are_reported_and_skipped(
    copy_root: Path, make_csv: Callable[..., Path], replay: Any
) -> None:
    clips = copy_root / "dev_splits_complete"
    (clips / "dia2_utt3.mp4").unlink()  # missing clip
    (clips / "dia2_utt4.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))  # corrupt mp4
    make_csv(copy_root / "dev_sent_emo.csv", (0, 2), [MOJIBAKE, UNKNOWN])
    out = copy_root.parent / "out"
    metrics, err = replay("--root", str(copy_root), "--text", "gold", "--out", str(out))
    lines = err.splitlines()
    assert any("skipped 1 row(s): unknown label" in x for x in lines), err
    assert any("repaired mis-decoded characters" in x and "in 1 row(s)" in x for x in lines), err
    assert any("clips missing: dia2_utt3.mp4" in x for x in lines), err
    assert any("dia2_utt4.mp4: cannot decode" in x for x in lines), err
    assert any("dia2_utt6.mp4" in x for x in lines), err  # the mojibake row has no clip either
    assert "Traceback" not in err
    # 2 + 6 fixture rows + the repaired mojibake row; the unknown label row is skipped
    assert metrics["utterances"] == metrics["answered"] == 9
    assert metrics["sources"] == {"clip": 6, "fallback": 1, "csv": 2}
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert events[-1]["transcript"] == "It's fine, I'm okay..."


def test_resume_after_kill_skips_finished_dialogues(tmp_path: Path, make_csv: Callable[..., Path]) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    make_csv(root / "dev_sent_emo.csv", (0, 1, 3))
    cmd = [
        sys.executable,
        "-m",
        "emostream",
        "replay",
        "meld",
        "--root",
        str(root),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--quiet",
    ]
    # real time paces rows by their CSV durations: dialogue 0 takes ~5 s, dialogue 1 over a minute
    proc = subprocess.Popen([*cmd, "--realtime"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not (out / "dialogues" / "dia0.jsonl").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "dialogue 0 never finished"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert not (out / "metrics.json").exists()
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resuming: 1 of 3 dialogues already finished" in done.stderr
    metrics = json.loads(done.stdout.strip().splitlines()[-1])
    assert metrics["resumed"] == 2 and metrics["replayed_now"] == 16 + 3
    assert metrics["utterances"] == metrics["answered"] == 21
