"""`emostream analyze` on real recorded speech (Debian's Asterisk prompts, installed by `make`): two
speakers -> one event per prompt with its speaker, transcripts within 10 % WER; bad files get one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jiwer

from emostream.bench.prompts import two_speaker_recording


def _norm(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip()


def test_analyze_two_speakers_real_speech(tmp_path: Path) -> None:
    tracks = two_speaker_recording(tmp_path, per_speaker=4)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file" * 10)
    missing = tmp_path / "missing.wav"
    cmd = [
        sys.executable,
        "-m",
        "emostream",
        "analyze",
        "--json",
        *(str(t.path) for t in tracks),
        str(garbage),
        str(missing),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    events, summary = lines[:-1], lines[-1]
    errors = [line for line in out.stderr.splitlines() if line.startswith("emostream analyze:")]
    assert any("garbage.wav" in e for e in errors) and any("missing.wav" in e for e in errors)
    assert "Traceback" not in out.stderr
    for t in tracks:
        mine = sorted((e for e in events if e["speaker"] == t.path.stem), key=lambda e: e["start"])
        assert len(mine) == len(t.texts), (t.speaker, [e["transcript"] for e in mine])
        wer = jiwer.wer([_norm(x) for x in t.texts], [_norm(e["transcript"]) for e in mine])
        assert wer <= 0.10, (t.speaker, wer, [e["transcript"] for e in mine])
        assert summary["summary"][t.path.stem]["utterances"] == len(t.texts)
    assert set(summary["failed"]) == {"garbage", "missing"}
