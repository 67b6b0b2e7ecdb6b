"""`emostream bench visual --json` prints one JSON line with the latency figures."""

from __future__ import annotations

import json

import pytest

from emostream.cli import main


def test_bench_visual_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "visual", "--json", "--runs", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["frames"] == 11 and result["runs"] == 2 and result["key_frames"] >= 1
    assert 0 < result["p50_ms"] <= result["p95_ms"] < 10_000
    assert result["frames_per_s"] > 0
