"""`emostream demo` (what `make demo` runs): real two-speaker speech through analyze, then the way live."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_decides_every_prompt_of_both_speakers(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "emostream", "demo", "--out", str(tmp_path), "--prompts", "2", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    events, summary = lines[:-1], lines[-1]
    assert sorted(e["speaker"] for e in events) == ["alice", "alice", "bob", "bob"]
    assert all(e["transcript"].strip() for e in events)
    assert set(summary["summary"]) == {"alice", "bob"} and summary["room"] == "demo"
    assert "emostream serve" in proc.stdout and "/rooms/demo" in proc.stdout
    assert "Traceback" not in proc.stderr
